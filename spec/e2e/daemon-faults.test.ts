/**
 * Faults of the coordinator's own machine during real restores: its wall
 * clock jumps mid-session (libfaketime), or its state directory's disk is
 * full. Either way the trees of the session resume together, after the last
 * one was ready, and the checkpoint images are untouched.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  Daemon,
  checkpointTrees,
  hashDir,
  killTree,
  readPidfile,
  readSlots,
  restoreTree,
  sleep,
  type RestoreRun,
  removeFaketimeShm,
} from '../../demo/harness';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** Two checkpointed trees restored through `daemon`; tree t1 starts 1.5 s late, `midway` runs in between. */
async function restoreTwo(
  name: string,
  start: (dir: string, beforeRemoval: (f: () => void) => void) => Promise<Daemon>,
  midway: () => void,
) {
  const dir = mkdtempSync(`/tmp/sg-${name}-`);
  const cp = await checkpointTrees(dir, 2, 3, `/dev/shm/sg-${name}-${process.pid}`);
  const undo: (() => void)[] = [];
  const runs: RestoreRun[] = [];
  const daemon = await start(dir, (f) => undo.push(f));
  cleanups.push(async () => {
    for (const r of runs) {
      const root = readPidfile(r.pidfile);
      if (root) killTree(root);
    }
    await daemon.stop();
    removeFaketimeShm(daemon.child.pid);
    for (const f of undo) f();
    for (const f of cp.shmFiles) rmSync(f, { force: true });
    rmSync(dir, { recursive: true, force: true });
  });
  const restore = (k: number) => {
    const r = restoreTree({ endpoint: daemon.endpoint, session: name, tree: `t${k}`, trees: 2, images: cp.images[k]!, workDir: dir });
    runs.push(r);
    return r;
  };
  const a = restore(0);
  await sleep(700);
  midway();
  await sleep(800);
  const b = restore(1);
  for (const r of await Promise.all([a.done, b.done])) assert.equal(r.code, 0, r.output);
  await sleep(200);
  const lateReady = Number(
    daemon.messages.flatMap((m) =>
      'event' in m && m.event.tree === 't1' && m.event.action === 'post-restore' ? [m.event.wallNs] : [],
    )[0]! / 1_000_000n,
  );
  for (const s of readSlots(cp.shm)) {
    assert.equal(s.gaps, 1);
    assert.ok(s.resumedAtMs >= lateReady, `tree ${s.tree} task ${s.idx} resumed before the late tree was ready`);
  }
  assert.equal(daemon.messages.filter((m) => 'decision' in m && m.decision.kind === 'session-aborted').length, 0);
  cp.images.forEach((d, i) => assert.deepEqual(hashDir(d), cp.hashes[i], `images of tree ${i} changed`));
  return { dir, daemon };
}

describe("faults of the coordinator's machine, on real CRIU", () => {
  for (const jump of ['+2h', '-2h']) {
    it(`its wall clock jumps ${jump} mid-session: the trees still resume together`, async () => {
      let clock = '';
      const { daemon } = await restoreTwo(
        `clock${jump[0] === '+' ? 'f' : 'b'}`,
        (dir) => {
          clock = join(dir, 'faketime');
          writeFileSync(clock, '+0\n');
          return Daemon.start(dir, 20, 'verify', '', [], {
            ...process.env,
            LD_PRELOAD: '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1',
            FAKETIME_TIMESTAMP_FILE: clock,
            FAKETIME_NO_CACHE: '1',
            FAKETIME_DONT_FAKE_MONOTONIC: '1',
          });
        },
        () => writeFileSync(clock, `${jump}\n`),
      );
      const stamps = daemon.logs().map((l) => Date.parse(JSON.parse(l).timestamp));
      assert.ok(Math.max(...stamps) - Math.min(...stamps) > 3_600_000, 'the daemon saw its wall clock jump');
    });
  }

  it('its state directory fills up mid-session: the journal stops, the restore completes', async () => {
    let state = '';
    const { daemon } = await restoreTwo(
      'diskfull',
      (dir, beforeRemoval) => {
        state = join(dir, 'state');
        mkdirSync(state);
        execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'tmpfs', state]);
        beforeRemoval(() => execFileSync('umount', [state]));
        return Daemon.start(dir, 20, 'verify', '', ['--state-dir', state]);
      },
      () => {
        writeFileSync(join(state, 'filler'), Buffer.alloc(56 * 1024));
        try {
          appendFileSync(join(state, 'filler'), Buffer.alloc(16 * 1024));
        } catch {
          // full indeed
        }
      },
    );
    assert.ok(
      daemon.logs().some((l) => /journal write failed: continuing without a journal/.test(l) && /ENOSPC/.test(l)),
      'the daemon logged the full disk',
    );
  });
});
