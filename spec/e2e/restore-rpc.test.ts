/**
 * `stagegate restore` through `criu swrk` (hooks/swrk-restore.c): criu sends
 * each stage as an RPC NOTIFY and the driver forks the hook's code for it,
 * instead of criu running a shell and the hook per stage; what criu's RPC
 * cannot carry goes to `criu restore --action-script` (src/criu/restore.ts).
 * Real CRIU, real coordinator; the fault behaviour of both paths is in
 * criu-restore.test.ts, which now runs through this one.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { actionScript, assertImagesUnchanged, decisionArrived, decisions, eventsOf, scenario } from '../support/scenario';
import { Daemon, STAGEGATE, checkpointTrees, killTree, readPidfile, run, sleep } from '../../demo/harness';
import { isLive } from '../../src/proc/tree';
import { nodeMarked } from '../support/node-probe';

/** The stages criu ran action scripts for, and how ("RPC" or the scripts' paths), from its log. */
function scriptRuns(log: string): { stage: string; how: string }[] {
  const lines = readFileSync(log, 'utf8').split('\n');
  const out: { stage: string; how: string }[] = [];
  lines.forEach((l, i) => {
    const m = /Running (\S+) scripts/.exec(l);
    // the next line says how: "(00.041415) \tRPC", or a script's path
    if (m) out.push({ stage: m[1]!, how: (lines[i + 1] ?? '').replace(/^\([\d.]+\)\s*/, '').trim() });
  });
  return out;
}

const logOf = (runDir: string) => join(runDir, 'restore.log');

describe('stagegate restore over criu RPC', () => {
  it('every stage reaches the coordinator as an RPC notification, none through an action-script process, and the gates hold', async () => {
    const { dir, cp, daemon, restore } = await scenario('rpc', 2);
    const [ra, rb] = await Promise.all([restore(0).done, restore(1).done]);
    assert.equal(ra.code, 0, ra.output);
    assert.equal(rb.code, 0, rb.output);
    const runs = scriptRuns(logOf(join(dir, 'restore-t0.a1')));
    const stages = runs.map((r) => r.stage);
    for (const s of ['pre-restore', 'setup-namespaces', 'post-setup-namespaces', 'post-restore', 'pre-resume', 'post-resume'])
      assert.ok(stages.includes(s), `criu notified ${s} (${stages.join(', ')})`);
    for (const r of runs) assert.equal(r.how, 'RPC', `criu ran no action script for ${r.stage}`);
    // the last stage's event (post-resume, sent as the restore ends) reaches this test's
    // subscriber a moment after the wrapper has exited: wait for it, then look at them all
    const resumed = (tree: string) => eventsOf(daemon).some((e) => e.tree === tree && e.action === 'post-resume');
    for (let i = 0; i < 50 && !(resumed('t0') && resumed('t1')); i++) await sleep(50);
    // one criu swrk per tree named by every event of its tree; a hook process of its own for
    // each gate, while the stages nobody waits on are published by the driver itself
    const gates = ['pre-restore', 'post-restore', 'pre-resume'];
    for (const tree of ['t0', 't1']) {
      const evs = eventsOf(daemon).filter((e) => e.tree === tree && e.action !== 'restore-failed' && !e.resent);
      assert.ok(evs.length >= 6, `${tree}: ${evs.length} events`);
      assert.equal(new Set(evs.map((e) => e.criuPid)).size, 1, `${tree}: one criu`);
      assert.equal(new Set(evs.map((e) => e.run)).size, 1, `${tree}: one run`);
      const gated = evs.filter((e) => gates.includes(e.action));
      const published = evs.filter((e) => !gates.includes(e.action));
      assert.equal(gated.length, 3, `${tree}: ${gated.map((e) => e.action).join(', ')}`);
      assert.ok(published.length >= 3, `${tree}: ${published.map((e) => e.action).join(', ')}`);
      const driver = published[0]!.hookPid;
      assert.ok(
        published.every((e) => e.hookPid === driver),
        `${tree}: the driver published ${published.map((e) => `${e.action}@${e.hookPid}`).join(', ')}`,
      );
      const hooks = new Set(gated.map((e) => e.hookPid));
      assert.equal(hooks.size, 3, `${tree}: a hook process per gate`);
      assert.ok(!hooks.has(driver), `${tree}: the gates' hooks are processes of their own`);
      // the resume barrier: no tree resumed before both were at post-restore
      const post = evs.find((e) => e.action === 'post-restore')!;
      assert.ok(post.initPid > 0, 'criu named the root at post-restore');
      assert.equal(evs.find((e) => e.action === 'pre-resume')!.initPid, post.initPid, 'the root is known at pre-resume too');
    }
    for (const tree of ['t0', 't1'])
      assert.ok(
        eventsOf(daemon).some((e) => e.tree === tree && e.action === 'post-resume'),
        `${tree} was released and resumed`,
      );
    await sleep(100);
    assertImagesUnchanged(cp);
  });

  it("arguments criu's configuration file cannot hold, and the user's own action scripts, go through criu restore --action-script", async () => {
    const { dir, cp, daemon, restore } = await scenario('rpcfallback', 2);
    const spaced = join(dir, 'a dir with spaces');
    mkdirSync(spaced);
    const ran = join(dir, 'user-script-ran');
    const mine = actionScript(dir, 'mine.sh', `[ "$CRTOOLS_SCRIPT_ACTION" = post-resume ] && touch ${ran}`);
    // an irmap scan path is ignored on restore: only its spelling matters here
    const a = restore(0, { criuArgs: ['--irmap-scan-path', spaced] });
    // abbreviated as getopt allows: still the user's own action script
    const b = restore(1, { criuArgs: [`--action-scr=${mine}`] });
    const [ra, rb] = await Promise.all([a.done, b.done]);
    assert.equal(ra.code, 0, ra.output);
    assert.equal(rb.code, 0, rb.output);
    for (const t of ['t0', 't1']) {
      const runs = scriptRuns(logOf(join(dir, `restore-${t}.a1`)));
      assert.ok(runs.length >= 6, `${t}: criu ran the scripts of ${runs.length} stages`);
      for (const r of runs) assert.notEqual(r.how, 'RPC', `${t}: ${r.stage} ran as an action script`);
    }
    assert.ok(existsSync(ran), "the user's own action script ran");
    assert.ok(
      eventsOf(daemon).some((e) => e.tree === 't1' && e.action === 'pre-resume'),
      'the hook ran beside it',
    );
    assertImagesUnchanged(cp);
  });

  it('options the driver cannot check are handed to the CLI, which says what is wrong', async () => {
    const bad = await run(STAGEGATE, ['restore', '--session', 's', '--tree', 't', '--trees', '2', '--timeout', '100000', '--', '-d']);
    assert.equal(bad.code, 64, bad.output);
    assert.match(bad.output, /--timeout must be seconds in \(0, 86400\]/);
    const unknown = await run(STAGEGATE, ['restore', '--session', 's', '--tree', 't', '--trees', '2', '--bogus', '--', '-d']);
    assert.equal(unknown.code, 64, unknown.output);
    assert.match(unknown.output, /Unknown option '--bogus'/);
    assert.doesNotMatch(bad.output + unknown.output, /stagegate-hook\[/, 'the driver itself says nothing');
  });

  it('a criu it cannot start fails the restore at once, names it, and tells the coordinator', async () => {
    const dir = mkdtempSync('/tmp/sg-rpcnocriu-');
    const d = await Daemon.start(dir, 30);
    try {
      // executable to access(2) but no program: the driver's posix_spawn fails
      const notCriu = join(dir, 'not-criu');
      mkdirSync(notCriu);
      const started = Date.now();
      const r = await run(
        STAGEGATE,
        ['restore', '--session', 'nocriu', '--tree', 't0', '--trees', '2', '--endpoint', d.endpoint, '--', '-D', dir, '-d'],
        { ...process.env, STAGEGATE_CRIU: notCriu },
      );
      assert.equal(r.code, 1, r.output);
      assert.match(r.output, new RegExp(`stagegate restore: cannot run ${notCriu}: Permission denied`));
      // the session aborts now, not at its deadline: the other tree would not wait for this one
      const aborted = await decisionArrived(d, 'session-aborted');
      assert.equal(aborted?.session, 'nocriu');
      assert.match(aborted?.reason ?? '', /cannot run/);
      assert.ok(Date.now() - started < 10_000);
    } finally {
      await d.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('restore --set of a committed set checks it and restores its trees without starting Node.js, through the RPC driver', async () => {
    const dir = mkdtempSync('/tmp/sg-rpcset-');
    const shm = `/dev/shm/sg-rpcset-${process.pid}`;
    const roots: number[] = [];
    let daemon: Daemon | undefined;
    try {
      daemon = await Daemon.start(dir, 30, 'verify');
      const cp = await checkpointTrees(dir, 2, 3, shm, false, { endpoint: daemon.endpoint, session: 'rpcset' });
      const commit = JSON.parse(readFileSync(join(cp.images[0]!, 'stagegate-commit.json'), 'utf8')).commit as string;
      const { env, mark } = nodeMarked(dir);
      const r = await run(
        STAGEGATE,
        ['restore', '--set', '--endpoint', daemon.endpoint, ...cp.images, '--', '-d', '-o', 'restore.log', '--pidfile', 'root.pid'],
        env,
      );
      for (const d of cp.images) roots.push(readPidfile(join(d, 'root.pid')) ?? 0);
      assert.equal(r.code, 0, r.output);
      assert.ok(!existsSync(mark), `Node.js was started: ${existsSync(mark) ? readFileSync(mark, 'utf8') : ''}`);
      assert.ok(
        roots.every((p) => p > 0 && isLive(p)),
        'both trees run',
      );
      for (const d of cp.images) for (const x of scriptRuns(join(d, 'restore.log'))) assert.equal(x.how, 'RPC', `${d}: ${x.stage}`);
      // both trees of the set's session, both naming its commit, released together
      const resumed = (tree: string) =>
        eventsOf(daemon!).some((e) => e.session === 'rpcset' && e.tree === tree && e.action === 'post-resume');
      for (let i = 0; i < 50 && !(resumed('tree0') && resumed('tree1')); i++) await sleep(50);
      const evs = eventsOf(daemon).filter((e) => e.session === 'rpcset' && e.action === 'pre-resume');
      assert.deepEqual(evs.map((e) => e.tree).sort(), ['tree0', 'tree1']);
      assert.ok(
        evs.every((e) => e.commit === commit && e.expectedTrees === 2),
        evs.map((e) => `${e.tree}: ${e.commit}, ${e.expectedTrees} trees`).join('; '),
      );
      assert.ok(decisions(daemon).some((d) => d.kind === 'gate-opened' && d.session === 'rpcset' && d.action === 'pre-resume'));
      assert.ok(resumed('tree0') && resumed('tree1'), 'both trees resumed');
    } finally {
      for (const p of roots) if (p) killTree(p);
      for (const p of roots) while (p && isLive(p)) await sleep(5);
      await daemon?.stop();
      rmSync(shm, { force: true });
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
