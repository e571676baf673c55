/**
 * Coordinator restart during a restore: the daemon is killed (SIGKILL) while
 * a tree waits at its post-restore gate; a new daemon on the same endpoints
 * and state directory replays its journal, the waiting hook re-sends, and the
 * session completes without an abort.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import {
  Daemon,
  checkpointTrees,
  exited,
  hashDir,
  killTree,
  readPidfile,
  readSlots,
  restoreTree,
  sleep,
  type RestoreRun,
} from '../../demo/harness';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

describe('coordinator restart', () => {
  it('resumes a session from its journal: a restart during a restore does not abort it', async () => {
    const dir = mkdtempSync('/tmp/sg-restart-');
    const cp = await checkpointTrees(dir, 2, 3, `/dev/shm/sg-restart-${process.pid}`);
    const state = ['--state-dir', join(dir, 'state')];
    const first = await Daemon.start(dir, 60, 'verify', '', state);
    let second: Daemon | null = null;
    const runs: RestoreRun[] = [];
    cleanups.push(async () => {
      for (const r of runs) {
        const root = readPidfile(r.pidfile);
        if (root) killTree(root);
      }
      await first.stop();
      await second?.stop();
      for (const f of cp.shmFiles) rmSync(f, { force: true });
      rmSync(dir, { recursive: true, force: true });
    });
    const restore = (k: number) => {
      const r = restoreTree({ endpoint: first.endpoint, session: 'restart', tree: `t${k}`, trees: 2, images: cp.images[k]!, workDir: dir });
      runs.push(r);
      return r;
    };
    const a = restore(0);
    const waiting = () => first.messages.some((m) => 'event' in m && m.event.tree === 't0' && m.event.action === 'post-restore');
    for (let i = 0; i < 100 && !waiting(); i++) await sleep(50);
    assert.ok(waiting(), 'tree t0 reached its post-restore gate');
    await sleep(300);

    first.child.kill('SIGKILL');
    await exited(first.child);
    second = await Daemon.start(dir, 60, 'verify', '', state);
    const replayed =
      second
        .logs()
        .filter((l) => /journal replayed/.test(l))
        .pop() ?? '';
    assert.match(replayed, /"open":\["restart"\]/);

    const b = restore(1);
    for (const r of await Promise.all([a.done, b.done])) assert.equal(r.code, 0, r.output);
    const decisions = second.messages.flatMap((m) => ('decision' in m ? [m.decision] : []));
    assert.equal(decisions.filter((d) => d.kind === 'session-aborted').length, 0);
    assert.deepEqual(
      decisions.filter((d) => d.kind === 'gate-opened').map((d) => d.action),
      ['post-restore', 'pre-resume'],
    );
    const lateReady = Number(
      second.messages.flatMap((m) =>
        'event' in m && m.event.tree === 't1' && m.event.action === 'post-restore' ? [m.event.wallNs] : [],
      )[0]! / 1_000_000n,
    );
    await sleep(200);
    for (const s of readSlots(cp.shm)) {
      assert.equal(s.gaps, 1);
      assert.ok(s.resumedAtMs >= lateReady, `tree ${s.tree} task ${s.idx} resumed before the restart was over`);
    }
    assert.match(readFileSync(join(dir, 'state', 'journal.jsonl'), 'utf8'), /"session":"restart"/);
    cp.images.forEach((d, i) => assert.deepEqual(hashDir(d), cp.hashes[i], `images of tree ${i} changed`));
  });
});
