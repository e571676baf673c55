/**
 * Containers, for real: two podman containers of one application (each a
 * tree of 3 processes; both map one file of a tmpfs bind-mounted into both,
 * a cross-container BO) checkpointed together and restored through stagegate
 * with podman's own commands. runc drives criu over RPC, so the hook comes in
 * through criu's configuration file (/etc/criu/runc.conf) and learns its
 * session and tree from stagegate's containers file, by container id.
 * Neither container resumes before both are restored and their shared
 * mappings verified; if one container's restore fails, the other is not left
 * running.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { Daemon, createShm, readSlots, sleep } from '../../demo/harness';
import { hookPath, projectRoot } from '../../src/paths';
import { fieldsOf } from '../../src/core/model';
import { IMAGE, RUN_LIMITS, ensureImage, podman, replaceFile } from '../support/podman';
import { until } from '../support/coordinator';

const tag = `sg${process.pid % 100000}`;
let dir: string;
let shared: string;
let daemon: Daemon;
const undo: (() => void)[] = [];
const names: string[] = [];

before(async () => {
  await ensureImage();
  dir = mkdtempSync('/tmp/sg-podman-');
  const where = join(dir, 'shared');
  mkdirSync(where);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16m', `${tag}-shared`, where]);
  shared = where;
  daemon = await Daemon.start(dir, 12, 'verify');
});

after(async () => {
  for (const n of names) await podman(['rm', '-f', '-t', '0', n]);
  for (const u of undo.reverse()) u();
  await daemon?.stop();
  if (shared) execFileSync('umount', [shared]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Starts container `name` running tree `k` of the demo workload, its status in the shared tmpfs. */
async function start(name: string, k: number, status: string): Promise<string> {
  const r = await podman([
    'run',
    '-d',
    '--name',
    name,
    '--network',
    'none',
    ...RUN_LIMITS,
    '-v',
    `${resolve(projectRoot, 'build')}:/sg:ro`,
    '-v',
    `${shared}:/shared`,
    IMAGE,
    '/sg/workload',
    '--tree',
    String(k),
    '--procs',
    '3',
    '--shm',
    `/shared/${status}`,
  ]);
  assert.equal(r.code, 0, r.output);
  names.push(name);
  return r.output.trim().split('\n').pop()!;
}

async function ticking(status: string, trees: number[]): Promise<void> {
  const counters = () =>
    readSlots(join(shared, status))
      .filter((s) => trees.includes(s.tree))
      .map((s) => s.counter);
  const before = counters();
  const deadline = Date.now() + 10_000;
  for (;;) {
    await sleep(200);
    const now = counters();
    if (now.length === trees.length * 3 && now.every((c, i) => c > (before[i] ?? 0n))) return;
    if (Date.now() > deadline) assert.fail(`workload not ticking: ${before} -> ${now}`);
  }
}

const decisions = (session: string) =>
  daemon.messages.flatMap((m) => ('decision' in m && m.decision.session === session ? [fieldsOf(m.decision)] : []));

/** criu's configuration for runc: the hook (and any other action scripts, which criu runs before it). */
function runcConf(extra: string[] = []): void {
  undo.push(
    replaceFile('/etc/criu/runc.conf', [`action-script ${hookPath()}`, ...extra.map((s) => `action-script ${s}`)].join('\n') + '\n'),
  );
}

/**
 * Two containers (web: tree 0, db: tree 1) running the workload with their status file STATUS in the shared
 * tmpfs, named in the containers file as the trees of `session`, then checkpointed at once (one committed dump).
 */
async function checkpointedPair(session: string, suffix: string): Promise<string[]> {
  const status = `status${suffix}`;
  createShm(join(shared, status));
  const ids = [await start(`${tag}-web${suffix}`, 0, status), await start(`${tag}-db${suffix}`, 1, status)];
  await ticking(status, [0, 1]);
  const lines = ids.map((id, i) => `${id} session=${session} tree=${i ? 'db' : 'web'} trees=2 endpoint=${daemon.endpoint} timeout=30`);
  undo.push(replaceFile('/etc/stagegate/containers.conf', lines.join('\n') + '\n'));
  runcConf();
  const dumps = await Promise.all(names.slice(-2).map((n) => podman(['container', 'checkpoint', n])));
  for (const d of dumps) assert.equal(d.code, 0, d.output);
  return ids;
}

describe('podman containers through stagegate', () => {
  it('checkpoints two containers together and restores them: neither resumes before both are back and their shared file verified', async () => {
    const session = `${tag}-app`;
    await checkpointedPair(session, '');
    assert.ok(
      await until(() => decisions(session).some((d) => d.kind === 'gate-opened' && d.action === 'post-dump')),
      'the two checkpoints were committed together',
    );

    const restores = await Promise.all(names.slice(-2).map((n) => podman(['container', 'restore', n])));
    for (const r of restores) assert.equal(r.code, 0, r.output);
    // decisions reach the subscriber after the hooks' verdicts: wait for the last one
    await until(() => decisions(session).some((d) => d.kind === 'gate-opened' && d.action === 'pre-resume'));
    const ds = decisions(session);
    const bo = ds.find((d) => d.kind === 'bo-activated' && d.label.includes('/shared/status'));
    assert.ok(bo, `the shared file is a verified BO of both containers: ${JSON.stringify(ds.map((d) => d.kind))}`);
    assert.deepEqual([...new Set(bo.mappers.map((m) => m.tree))].sort(), ['db', 'web']);
    const opened = ds.filter((d) => d.kind === 'gate-opened').map((d) => d.action);
    assert.deepEqual(opened.slice(-2), ['post-restore', 'pre-resume']);
    await ticking('status', [0, 1]);
  });

  it("one container's restore fails: the other is not left running", async () => {
    const session = `${tag}-fail`;
    const ids = await checkpointedPair(session, '2');
    // the db container's restore fails at post-restore (a user action script criu runs before the hook)
    const fail = join(dir, 'fail-db.sh');
    writeFileSync(
      fail,
      `#!/bin/sh\ncase "$(readlink -f "$CRTOOLS_IMAGE_DIR"):$CRTOOLS_SCRIPT_ACTION" in *${ids[1]}*:post-restore) exit 1;; esac\nexit 0\n`,
    );
    chmodSync(fail, 0o755);
    runcConf([fail]);
    const [web, db] = await Promise.all(names.slice(-2).map((n) => podman(['container', 'restore', n])));
    assert.notEqual(db!.code, 0, db!.output);
    assert.notEqual(web!.code, 0, web!.output);
    const running = await podman(['inspect', '-f', '{{.State.Running}}', names.at(-2)!]);
    assert.match(running.output, /false/);
    assert.ok(await until(() => decisions(session).some((d) => d.kind === 'session-aborted')), 'the session was aborted');
    // no process of either container runs: their counters stand still
    const before = readSlots(join(shared, 'status2')).map((s) => s.counter);
    await sleep(500);
    assert.deepEqual(
      readSlots(join(shared, 'status2')).map((s) => s.counter),
      before,
    );
  });
});
