/**
 * End to end on real CRIU: real process trees in their own pid namespaces,
 * checkpointed and restored concurrently through `stagegate restore` and a
 * real coordinator daemon (`stagegate serve`) over ZeroMQ IPC.
 */
import { describe, it } from 'node:test';
import {
  PROCS,
  actionScript,
  assertImagesUnchanged,
  assertNeverRan,
  assertNothingRunning,
  decisions,
  eventsOf,
  scenario,
  decisionArrived,
} from '../support/scenario';
import { childrenOf, isLive, killTree } from '../../src/proc/tree';
import { criuPath, hookPath } from '../../src/paths';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { type Checkpoint, type Daemon, type Slot, readPidfile, readSlots, run, sleep } from '../../demo/harness';

const resumedAt = (slots: Slot[], tree: number) => slots.filter((s) => s.tree === tree).map((s) => s.resumedAtMs);

describe('coordinated restore on real CRIU', () => {
  it('three trees with skewed arrival: none resumes before the last is ready, all run after', async () => {
    const { cp, daemon, restore } = await scenario('skew', 3);
    const a = restore(0);
    await sleep(300);
    const b = restore(1);
    await sleep(1200);
    const c = restore(2);
    const results = await Promise.all([a.done, b.done, c.done]);
    for (const r of results) assert.equal(r.code, 0, r.output);
    await sleep(200);
    const slots = readSlots(cp.shm);
    const lastPost = eventsOf(daemon).find((e) => e.tree === 't2' && e.action === 'post-restore')!;
    const lastReadyMs = Number(lastPost.wallNs / 1_000_000n);
    for (const t of [0, 1, 2]) {
      assert.equal(resumedAt(slots, t).length, PROCS);
      for (const r of resumedAt(slots, t))
        assert.ok(r >= lastReadyMs, `tree ${t} resumed at ${r}, before the last tree was ready (${lastReadyMs})`);
    }
    const gates = decisions(daemon).filter((d) => d.kind === 'gate-opened');
    assert.deepEqual(
      gates.map((g) => [g.action, g.trees]),
      [
        ['post-restore', ['t0', 't1', 't2']],
        ['pre-resume', ['t0', 't1', 't2']],
      ],
    );
    assert.ok(gates[0]!.waitedMs >= 1400, `first tree waited only ${gates[0]!.waitedMs} ms`);
    assert.ok(slots.every((s) => s.patternOk && s.gaps === 1));
    await sleep(100);
    const later = readSlots(cp.shm);
    assert.ok(
      later.every((s) => s.counter > slots.find((x) => x.tree === s.tree && x.idx === s.idx)!.counter),
      'all processes run',
    );
    assertImagesUnchanged(cp);
  });

  it('a tree whose restore fails before post-restore aborts the others at once', async () => {
    const { dir, cp, daemon, restore } = await scenario('fail', 2);
    // Tree 1's copy of its images lost a task's core image: criu fails while restoring it.
    const broken = join(dir, 'broken');
    cpSync(cp.images[1]!, broken, { recursive: true });
    rmSync(join(broken, 'core-2.img'));
    const a = restore(0);
    await sleep(300);
    const started = Date.now();
    const b = restore(1, { images: broken });
    const [ra, rb] = await Promise.all([a.done, b.done]);
    assert.notEqual(rb.code, 0);
    assert.notEqual(ra.code, 0, 'the healthy tree must be aborted too');
    assert.ok(Date.now() - started < 10_000, 'abort must not wait for the 30 s deadline');
    const abort = (await decisionArrived(daemon, 'session-aborted'))!;
    assert.equal(abort.code, 'E_TREE_FAILED');
    assert.match(abort.reason, /tree t1 failed to restore: criu exited with 1/);
    assert.match(ra.output, /coordinator aborted session fail attempt 1 at tree t0: \[E_TREE_FAILED\]/);
    // said on the wrapper's own terminal too (criu's log may be a file)
    assert.match(
      ra.output,
      /stagegate restore: aborted at (post-restore|pre-resume): coordinator aborted session fail attempt 1 at tree t0: \[E_TREE_FAILED\]/,
    );
    await sleep(200);
    assertNothingRunning([a, b]);
    assertNeverRan(cp, [0, 1]);
    assertImagesUnchanged(cp);
  });

  it('without a coordinator every restore aborts within the hook timeout, nothing runs, and a retry succeeds', async () => {
    const { dir, cp, daemon, restore } = await scenario('absent', 2);
    const nowhere = `ipc://${dir}/nobody-listens.sock`;
    const started = Date.now();
    const runs = [restore(0, { endpoint: nowhere, timeoutS: 1 }), restore(1, { endpoint: nowhere, timeoutS: 1 })];
    const results = await Promise.all(runs.map((r) => r.done));
    const took = Date.now() - started;
    for (const r of results) {
      assert.notEqual(r.code, 0);
      assert.match(r.output, /no verdict from the coordinator at .*nobody-listens.sock within 1s/);
    }
    assert.ok(took < 8000, `aborting took ${took} ms`);
    await sleep(200);
    assertNothingRunning(runs);
    assertNeverRan(cp, [0, 1]);
    assertImagesUnchanged(cp);

    // Retry the same images through the real coordinator.
    const retry = [restore(0, { attempt: 2 }), restore(1, { attempt: 2 })];
    const rr = await Promise.all(retry.map((r) => r.done));
    for (const r of rr) assert.equal(r.code, 0, r.output);
    await sleep(200);
    assert.ok(readSlots(cp.shm).every((s) => s.gaps === 1 && s.patternOk));
    assert.ok(decisions(daemon).some((d) => d.kind === 'gate-opened' && d.action === 'pre-resume' && d.attempt === 2));
  });

  it('a tree late at pre-resume past the deadline: the waiting tree is killed before it runs; a retry succeeds', async () => {
    const { dir, cp, daemon, restore } = await scenario('preresume', 2, { deadlineS: 3 });
    // A user action script of tree 1 that is slow at pre-resume (it runs before the stagegate hook).
    const slow = actionScript(dir, 'slow-pre-resume.sh', '[ "$CRTOOLS_SCRIPT_ACTION" = pre-resume ] && sleep 5');
    const a = restore(0);
    const b = restore(1, { criuArgs: ['--action-script', slow] });
    const [ra, rb] = await Promise.all([a.done, b.done]);
    assert.notEqual(ra.code, 0, `tree 0 must fail: ${ra.output}`);
    assert.notEqual(rb.code, 0, `tree 1 must fail: ${rb.output}`);
    assert.match(ra.output, /\[E_DEADLINE\] deadline of 3000 ms passed at the pre-resume gate; still missing: t1/);
    assert.match(ra.output, /killed \d+ task\(s\) of the restored tree/);
    const gates = decisions(daemon)
      .filter((d) => d.kind === 'gate-opened')
      .map((d) => d.action);
    assert.deepEqual(gates, ['post-restore'], 'the resume barrier must never open');
    await sleep(300);
    assertNothingRunning([a, b]);
    assertNeverRan(cp, [0, 1]);
    assertImagesUnchanged(cp);

    const retry = [restore(0, { attempt: 2 }), restore(1, { attempt: 2 })];
    for (const r of await Promise.all(retry.map((x) => x.done))) assert.equal(r.code, 0, r.output);
    await sleep(200);
    assert.ok(readSlots(cp.shm).every((s) => s.gaps === 1 && s.patternOk));
  });

  /**
   * Restores tree 1 slowly (its own pre-resume script sleeps), tree 0 by
   * `start`; kills tree 0's hook once it waits at pre-resume (and first the
   * guardian the hook forked, with `guardianToo`).
   */
  async function killHookAtPreResume(
    name: string,
    slowS: number,
    start: (sc: Awaited<ReturnType<typeof scenario>>) => Promise<{ code: number | null; output: string }>,
    guardianToo = false,
  ) {
    const sc = await scenario(name, 2, { deadlineS: 30 });
    const slow = actionScript(sc.dir, 'slow-pre-resume.sh', `[ "$CRTOOLS_SCRIPT_ACTION" = pre-resume ] && sleep ${slowS}`);
    const a = start(sc);
    const b = sc.restore(1, { criuArgs: ['--action-script', slow] });
    const atBarrier = () => eventsOf(sc.daemon).find((e) => e.tree === 't0' && e.action === 'pre-resume');
    for (let i = 0; i < 200 && !atBarrier(); i++) await sleep(50);
    assert.ok(atBarrier(), 'tree t0 reached the resume barrier');
    const hook = atBarrier()!.hookPid;
    if (guardianToo) {
      const guardian = childrenOf(hook);
      assert.equal(guardian.length, 1, 'the waiting hook has forked its guardian');
      process.kill(guardian[0]!, 'SIGKILL');
    }
    process.kill(hook, 'SIGKILL');
    const killedAt = Date.now();
    const [ra, rb] = await Promise.all([a, b.done]);
    return { ...sc, ra, rb, killedAt };
  }

  /** Both trees resumed, none before the late tree reached the barrier, and they keep running. */
  async function assertBarrierHeld(cp: Checkpoint, daemon: Daemon) {
    await sleep(300);
    const slots = readSlots(cp.shm);
    const lastArrival = eventsOf(daemon).find((e) => e.tree === 't1' && e.action === 'pre-resume')!;
    const lastMs = Number(lastArrival.wallNs / 1_000_000n);
    for (const t of [0, 1]) {
      assert.equal(resumedAt(slots, t).length, PROCS, `tree ${t} resumed`);
      for (const r of resumedAt(slots, t))
        assert.ok(r >= lastMs, `tree ${t} resumed at ${r}, before the last tree reached the barrier (${lastMs})`);
    }
    await sleep(100);
    const later = readSlots(cp.shm);
    assert.ok(
      later.every((s) => s.counter > slots.find((x) => x.tree === s.tree && x.idx === s.idx)!.counter),
      'every process runs, tree t0 too',
    );
    assert.equal(decisions(daemon).filter((d) => d.kind === 'session-aborted').length, 0);
    assertImagesUnchanged(cp);
  }

  it('a hook killed while it waits at pre-resume (stagegate restore): someone stands in for it and the barrier holds', async () => {
    const { cp, daemon, ra, rb } = await killHookAtPreResume('hookkill', 3, (sc) => sc.restore(0).done);
    assert.equal(ra.code, 0, ra.output);
    assert.equal(rb.code, 0, rb.output);
    // the hook's guardian, and the wrapper once criu has exited, both wait in its place
    assert.match(ra.output, /a new one stands in for it|waiting there in its place/);
    await assertBarrierHeld(cp, daemon);
  });

  /** Runs criu by hand with the hook (no wrapper) for tree 0; `root` receives its root pid. */
  const plainCriu =
    (name: string, root: { pid: number }) =>
    async ({ dir, daemon, cp, track }: Awaited<ReturnType<typeof scenario>>) => {
      const work = join(dir, 'plain-t0');
      mkdirSync(work);
      const pidfile = join(work, 'root.pid');
      track(pidfile); // the scenario's cleanup kills this tree too
      const env = {
        ...process.env,
        STAGEGATE_ENDPOINT: daemon.endpoint,
        STAGEGATE_SESSION: name,
        STAGEGATE_TREE: 't0',
        STAGEGATE_TREES: '2',
        STAGEGATE_TIMEOUT: '30',
      };
      const r = await run(
        criuPath(),
        ['restore', '--action-script', hookPath(), '-D', cp.images[0]!, '-W', work, '-d', '--pidfile', pidfile, '-o', 'restore.log'],
        env,
      );
      root.pid = readPidfile(pidfile) ?? 0;
      return { ...r, output: r.output + readFileSync(join(work, 'restore.log'), 'utf8') };
    };

  it('a hook killed while it waits at pre-resume (plain criu): its guardian stands in and the barrier holds', async () => {
    const root = { pid: 0 };
    const { cp, daemon, dir, ra, rb } = await killHookAtPreResume('hookkill-criu', 3, plainCriu('hookkill-criu', root));
    assert.equal(ra.code, 0, `criu only logs a failed pre-resume script: ${ra.output}`);
    assert.equal(rb.code, 0, rb.output);
    await assertBarrierHeld(cp, daemon);
    assert.match(readFileSync(join(dir, 'plain-t0', 'restore.log'), 'utf8'), /a new one stands in for it/);
  });

  it('a hook and its guardian killed at pre-resume (plain criu): the silence aborts the session, no task of either tree runs', async () => {
    const root = { pid: 0 };
    const { cp, daemon, ra, rb, killedAt } = await killHookAtPreResume('hookkill-all', 6, plainCriu('hookkill-all', root), true);
    assert.equal(ra.code, 0, `criu only logs a failed pre-resume script: ${ra.output}`);
    const abort = (await decisionArrived(daemon, 'session-aborted'))!;
    assert.equal(abort.code, 'E_HOOK_LOST');
    assert.match(abort.reason, /hook of tree t0 went silent while it waited at pre-resume/);
    assert.ok(abort.at - killedAt < 5000, `noticed ${abort.at - killedAt} ms after the kill`);
    assert.notEqual(rb.code, 0, 'the other tree is aborted');
    assertNeverRan(cp, [0, 1]);
    assert.ok(root.pid > 0 && isLive(root.pid), 'tree t0 is held');
    assert.match(readFileSync(`/proc/${root.pid}/status`, 'utf8'), /State:\s+T/, 'tree t0 is held stopped by the SIGSTOP its hook queued');
    killTree(root.pid);
    assertImagesUnchanged(cp);
  });

  it('criu killed after post-restore: the session aborts and the wrapper kills the tasks it left behind', async () => {
    const { dir, cp, daemon, restore } = await scenario('criukill', 2);
    // runs before the stagegate hook at post-restore: kills criu while the tasks sleep in its restorer
    const killer = actionScript(dir, 'kill-criu.sh', '[ "$CRTOOLS_SCRIPT_ACTION" = post-restore ] && kill -9 $PPID');
    const a = restore(0, { criuArgs: ['--action-script', killer] });
    const b = restore(1);
    const [ra, rb] = await Promise.all([a.done, b.done]);
    assert.notEqual(ra.code, 0);
    assert.notEqual(rb.code, 0, 'the other tree is aborted');
    assert.match(ra.output, /criu was killed; killed [1-3] leftover task\(s\) of tree t0 \(root \d+\)/);
    const abort = (await decisionArrived(daemon, 'session-aborted'))!;
    assert.equal(abort.code, 'E_TREE_FAILED');
    assert.match(abort.reason, /tree t0 failed to restore: criu killed by SIGKILL/);
    const root = Number(/root (\d+)/.exec(ra.output)![1]);
    await sleep(300);
    assert.ok(!isLive(root), 'no task of the killed criu is left');
    assertNeverRan(cp, [0, 1]);
    assertImagesUnchanged(cp);
  });

  it('criu killed while its hook waits at pre-resume: its tree stays stopped, then everything is aborted; none ran', async () => {
    const { dir, cp, daemon, restore } = await scenario('criukill2', 2);
    const slow = actionScript(dir, 'slow-pre-resume.sh', '[ "$CRTOOLS_SCRIPT_ACTION" = pre-resume ] && sleep 2');
    const a = restore(0);
    const b = restore(1, { criuArgs: ['--action-script', slow] });
    const waiting = () =>
      daemon.messages.flatMap((m) => ('event' in m && m.event.tree === 't0' && m.event.action === 'pre-resume' ? [m.event] : []))[0];
    for (let i = 0; i < 100 && !waiting(); i++) await sleep(50);
    await sleep(100); // the hook holds its SIGSTOP and waits
    process.kill(waiting()!.criuPid, 'SIGKILL');
    const [ra, rb] = await Promise.all([a.done, b.done]);
    assert.notEqual(ra.code, 0);
    assert.notEqual(rb.code, 0);
    // the hook (still waiting when criu died) and the wrapper clean up the tree between them
    const root = Number(/of tree t0 \(root (\d+)\)|rooted at (\d+)/.exec(ra.output)?.slice(1).find(Boolean) ?? 0);
    assert.ok(root > 0, ra.output);
    await sleep(300);
    assert.ok(!isLive(root), 'no task of the killed criu is left');
    assertNeverRan(cp, [0, 1]);
    assertImagesUnchanged(cp);
  });

  it('criu killed after the trees were released (post-resume): the trees keep running', async () => {
    const { dir, cp, restore } = await scenario('criukill3', 2);
    const killer = actionScript(dir, 'kill-criu.sh', '[ "$CRTOOLS_SCRIPT_ACTION" = post-resume ] && kill -9 $PPID');
    const [ra, rb] = await Promise.all([restore(0, { criuArgs: ['--action-script', killer] }).done, restore(1).done]);
    assert.notEqual(ra.code, 0, 'criu itself was killed');
    assert.equal(rb.code, 0);
    assert.doesNotMatch(ra.output, /leftover/);
    await sleep(300);
    const slots = readSlots(cp.shm);
    await sleep(200);
    const later = readSlots(cp.shm);
    for (const s of later) {
      assert.equal(s.gaps, 1);
      assert.ok(
        s.counter > slots.find((x) => x.tree === s.tree && x.idx === s.idx)!.counter,
        `tree ${s.tree} task ${s.idx} stopped running`,
      );
    }
    assertImagesUnchanged(cp);
  });

  it('criu killed at pre-restore: the session aborts, nothing is left, nothing ran', async () => {
    const { dir, cp, daemon, restore } = await scenario('earlyprerestore', 2);
    const killer = actionScript(dir, 'kill-criu.sh', '[ "$CRTOOLS_SCRIPT_ACTION" = pre-restore ] && kill -9 $PPID');
    const a = restore(0, { criuArgs: ['--action-script', killer] });
    await sleep(300);
    const b = restore(1);
    const [ra, rb] = await Promise.all([a.done, b.done]);
    assert.notEqual(ra.code, 0);
    assert.notEqual(rb.code, 0, 'the other tree is aborted');
    assert.equal((await decisionArrived(daemon, 'session-aborted'))?.code, 'E_TREE_FAILED');
    await sleep(300);
    const root = Number(/\(root (\d+)\)/.exec(ra.output)?.[1] ?? 0);
    if (root) assert.ok(!isLive(root));
    assertNeverRan(cp, [0, 1]);
    assertImagesUnchanged(cp);
  });

  it('criu killed at setup-namespaces: the session aborts, nothing is left, nothing ran', async () => {
    const { dir, cp, daemon, restore } = await scenario('setupns', 2);
    // the script runs in the restored root task here, not in criu: it only
    // holds the restore at this stage while the test kills criu from outside
    const at = join(dir, 'at-setup-namespaces');
    const stall = actionScript(dir, 'stall.sh', `[ "$CRTOOLS_SCRIPT_ACTION" = setup-namespaces ] && { touch ${at}; sleep 3; }`);
    const a = restore(0, { criuArgs: ['--action-script', stall] });
    for (let i = 0; i < 200 && !existsSync(at); i++) await sleep(25);
    assert.ok(existsSync(at), 'tree t0 reached setup-namespaces');
    // the wrapper is a subreaper: the keeper of its criu's hook connection (hooks/keeper.c) is its child too
    const exe = (p: number) => {
      try {
        return readlinkSync(`/proc/${p}/exe`);
      } catch {
        return ''; // gone
      }
    };
    const criu = childrenOf(a.child.pid!).filter((p) => exe(p) !== hookPath());
    assert.equal(criu.length, 1, 'the wrapper runs exactly one criu');
    process.kill(criu[0]!, 'SIGKILL');
    const b = restore(1);
    const [ra, rb] = await Promise.all([a.done, b.done]);
    assert.notEqual(ra.code, 0);
    assert.notEqual(rb.code, 0, 'the other tree is aborted');
    const abort = (await decisionArrived(daemon, 'session-aborted'))!;
    assert.equal(abort.code, 'E_TREE_FAILED');
    assert.match(abort.reason, /tree t0 failed to restore: criu killed by SIGKILL/);
    // its root task was stuck in criu's restore code, which cannot go on without
    // criu; the wrapper, as subreaper, inherited it (and any helper criu forked)
    const roots = [...ra.output.matchAll(/criu was killed; killed \d+ leftover task\(s\) of tree t0 \(root (\d+)\)/g)].map((m) =>
      Number(m[1]),
    );
    assert.ok(roots.length >= 1, ra.output);
    await sleep(300);
    for (const root of roots) assert.ok(!isLive(root), `task ${root} of the killed criu is still there`);
    assertNeverRan(cp, [0, 1]);
    assertImagesUnchanged(cp);
  });

  it('a hook killed while it waits at post-restore: criu kills its tree, the session aborts, nothing ran', async () => {
    const { cp, daemon, restore } = await scenario('hookkill2', 2);
    const a = restore(0);
    const waiting = () =>
      daemon.messages.flatMap((m) => ('event' in m && m.event.tree === 't0' && m.event.action === 'post-restore' ? [m.event] : []))[0];
    for (let i = 0; i < 100 && !waiting(); i++) await sleep(50);
    await sleep(200);
    process.kill(waiting()!.hookPid, 'SIGKILL');
    const ra = await a.done;
    const rb = await restore(1).done;
    assert.notEqual(ra.code, 0);
    assert.notEqual(rb.code, 0, 'the other tree is aborted');
    assert.match((await decisionArrived(daemon, 'session-aborted'))!.reason, /tree t0 failed to restore/);
    await sleep(300);
    assertNeverRan(cp, [0, 1]);
    assertImagesUnchanged(cp);
  });
});
