/**
 * Gate integrity on real CRIU: a restore run owns its tree, an ended session
 * takes no new run and keeps its outcome, the arrival barrier holds trees
 * before anything is restored, and a killed process group leaves nothing.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertImagesUnchanged, assertNeverRan, decisions, eventsOf, scenario } from '../support/scenario';
import { STAGEGATE, readPidfile, readSlots, run, sleep } from '../../demo/harness';
import { isLive, killTree } from '../../src/proc/tree';
import { requestStatus } from '../../src/transport/client';

/** Waits (up to 2.5 s) for what the daemon publishes after a wrapper has exited; the assertions after it decide. */
async function eventually(seen: () => boolean): Promise<void> {
  for (let i = 0; i < 50 && !seen(); i++) await sleep(50);
}

const rejections = (d: Parameters<typeof decisions>[0], code: string) =>
  decisions(d).filter((x) => x.kind === 'event-rejected' && x.code === code);

describe('gate integrity on real CRIU', () => {
  it('a completed session refuses a lone later restore and a contradictory late one; its outcome stays', async () => {
    const { dir, cp, daemon, restore } = await scenario('reuse', 2);
    const first = [restore(0), restore(1)];
    for (const r of await Promise.all(first.map((x) => x.done))) assert.equal(r.code, 0, r.output);
    for (let i = 0; i < 50 && !decisions(daemon).some((d) => d.kind === 'session-completed'); i++) await sleep(50);
    assert.ok(
      decisions(daemon).some((d) => d.kind === 'session-completed'),
      'the session completed',
    );
    for (const r of first) killTree(readPidfile(r.pidfile)!);
    await sleep(300);

    // the same names again, tree t0 alone: it must not pass a gate that t1 never reached
    const lone = restore(0, { workDir: join(dir, 'replay') });
    const rl = await lone.done;
    assert.notEqual(rl.code, 0, 'a lone replay must fail');
    assert.match(
      rl.output,
      /\[E_SESSION_CLOSED\] session reuse attempt 1 has completed and takes no new restore run .*--attempt 2, or use a new session name/,
    );
    assert.equal(readPidfile(lone.pidfile), null, 'nothing was restored');
    const refused = /tree t0, run (sg-[0-9a-f-]+)\)/.exec(rl.output)?.[1];
    assert.ok(refused, rl.output);
    // the wrapper's restore-failed reaches this test's subscriber a moment after the wrapper exits
    await eventually(() => eventsOf(daemon).some((e) => e.run === refused && e.action === 'restore-failed'));
    assert.deepEqual(
      eventsOf(daemon)
        .filter((e) => e.run === refused)
        .map((e) => e.action),
      ['pre-restore', 'restore-failed'],
      'criu stopped at pre-restore',
    );

    // a late, contradictory restore (another tree count) is refused the same way and rewrites nothing
    const late = await run(STAGEGATE, [
      'restore',
      '--session',
      'reuse',
      '--tree',
      't1',
      '--trees',
      '3',
      '--endpoint',
      daemon.endpoint,
      '--',
      '-D',
      cp.images[1]!,
      '-W',
      join(dir, 'replay'),
      '-o',
      'late.log',
    ]);
    assert.notEqual(late.code, 0);
    const status = await requestStatus(daemon.endpoint, 'reuse');
    assert.equal(status.sessions[0]!.status, 'completed');
    assert.equal(status.sessions[0]!.abortCode, '');
    assert.equal(decisions(daemon).filter((d) => d.kind === 'session-aborted').length, 0);
    assert.ok(rejections(daemon, 'E_SESSION_CLOSED').length >= 2);

    // the advice works: the whole job again as attempt 2
    const again = [restore(0, { attempt: 2 }), restore(1, { attempt: 2 })];
    for (const r of await Promise.all(again.map((x) => x.done))) assert.equal(r.code, 0, r.output);
    assertImagesUnchanged(cp);
  });

  it('a second restore of the same tree is refused before it restores anything; the session completes with its own runs', async () => {
    const { dir, cp, daemon, restore } = await scenario('dup', 2);
    const a = restore(0);
    for (let i = 0; i < 100 && !eventsOf(daemon).some((e) => e.tree === 't0'); i++) await sleep(20);
    const twin = restore(0, { workDir: join(dir, 'twin') });
    const rt = await twin.done;
    assert.notEqual(rt.code, 0, 'the second run of t0 must fail');
    assert.match(rt.output, /\[E_RUN_CONFLICT\] tree t0 of session dup attempt 1 is already being restored by run sg-/);
    assert.equal(readPidfile(twin.pidfile), null, 'the second run restored nothing');
    const b = restore(1);
    const [ra, rb] = await Promise.all([a.done, b.done]);
    assert.equal(ra.code, 0, ra.output);
    assert.equal(rb.code, 0, rb.output);
    for (let i = 0; i < 50 && !decisions(daemon).some((d) => d.kind === 'session-completed'); i++) await sleep(50);
    const completed = decisions(daemon).find((d) => d.kind === 'session-completed')!;
    assert.deepEqual(completed.trees, ['t0', 't1']);
    const runs = new Set(
      eventsOf(daemon)
        .filter((e) => e.tree === 't0' && e.action === 'post-restore')
        .map((e) => e.run),
    );
    assert.equal(runs.size, 1, 'only one run of t0 reached post-restore');
    assert.equal(decisions(daemon).filter((d) => d.kind === 'session-aborted').length, 0, 'the refused run aborted nothing');
    await sleep(200);
    assert.ok(readSlots(cp.shm).every((s) => s.gaps === 1 && s.patternOk));
    assertImagesUnchanged(cp);
  });

  it('arrival barrier: a tree that never comes aborts the session with nothing restored', async () => {
    const { cp, daemon, restore } = await scenario('hold', 2);
    const open = await run(STAGEGATE, [
      'open',
      '--session',
      'hold',
      '--trees',
      '2',
      '--hold-at',
      'pre-restore',
      '--deadline',
      '3',
      '--endpoint',
      daemon.endpoint,
    ]);
    assert.equal(open.code, 0, open.output);
    const a = restore(0);
    const ra = await a.done;
    assert.notEqual(ra.code, 0);
    assert.match(ra.output, /\[E_DEADLINE\] deadline of 3000 ms passed at the pre-restore gate; still missing: 1 tree\(s\) not seen yet/);
    assert.equal(readPidfile(a.pidfile), null, 'nothing was restored');
    await eventually(() => eventsOf(daemon).some((e) => e.tree === 't0' && e.action === 'restore-failed'));
    assert.deepEqual(
      eventsOf(daemon)
        .filter((e) => e.tree === 't0')
        .map((e) => e.action),
      ['pre-restore', 'restore-failed'],
      'criu stopped at pre-restore',
    );
    assertNeverRan(cp, [0, 1]);
    assertImagesUnchanged(cp);
  });

  it('arrival barrier as the daemon default: every tree waits at pre-restore, then both gates, then all run', async () => {
    const { cp, daemon, restore } = await scenario('holdall', 2, { serveArgs: ['--hold-at', 'pre-restore'] });
    const a = restore(0);
    await sleep(800);
    assert.ok(!eventsOf(daemon).some((e) => e.tree === 't0' && e.action !== 'pre-restore'), 't0 waits at pre-restore until t1 starts');
    const b = restore(1);
    for (const r of await Promise.all([a.done, b.done])) assert.equal(r.code, 0, r.output);
    // the decisions reach the subscriber after the hooks' verdicts: the last may still be on its way
    const opened = () => decisions(daemon).filter((d) => d.kind === 'gate-opened');
    await eventually(() => opened().length >= 3);
    const gates = opened();
    assert.deepEqual(
      gates.map((g) => g.action),
      ['pre-restore', 'post-restore', 'pre-resume'],
    );
    assert.ok(gates[0]!.waitedMs >= 700, `t0 waited ${gates[0]!.waitedMs} ms at pre-restore`);
    await sleep(200);
    assert.ok(readSlots(cp.shm).every((s) => s.gaps === 1 && s.patternOk));
  });

  it('kill -9 of the whole process group of stagegate restore at post-restore: the session aborts, the orphaned tree is killed', async () => {
    const { dir, cp, daemon, restore } = await scenario('pgkill', 2);
    const a = restore(0, { detached: true });
    const waiting = () => eventsOf(daemon).find((e) => e.tree === 't0' && e.action === 'post-restore');
    for (let i = 0; i < 200 && !waiting(); i++) await sleep(25);
    assert.ok(waiting(), 't0 waits at post-restore');
    const root = waiting()!.initPid;
    assert.ok(isLive(root), "its tree sleeps in criu's restorer");
    await sleep(200); // the hook has forked its guardian
    process.kill(-a.child.pid!, 'SIGKILL'); // wrapper, criu and hook at once
    const killedAt = Date.now();
    await a.done;
    let gone = false;
    for (let i = 0; i < 100 && !gone; i++) {
      gone = !isLive(root);
      if (!gone) await sleep(50);
    }
    assert.ok(gone, `the orphaned tree (root ${root}) is still there ${Date.now() - killedAt} ms after the kill`);
    const log = readFileSync(join(dir, 'restore-t0.a1', 'restore.log'), 'utf8');
    assert.match(
      log,
      /the hook waiting at post-restore and its criu are gone: killed [1-9]\d* task\(s\) of the unreleased tree rooted at \d+/,
    );

    // the guardian told the coordinator at once: the other tree is refused and never runs
    for (let i = 0; i < 40 && !decisions(daemon).some((d) => d.kind === 'session-aborted'); i++) await sleep(50);
    const abort = decisions(daemon).find((d) => d.kind === 'session-aborted')!;
    assert.equal(
      abort?.code,
      'E_TREE_FAILED',
      JSON.stringify(decisions(daemon), (_k, v) => (typeof v === 'bigint' ? v.toString() : v)),
    );
    assert.match(
      abort.reason,
      /tree t0 failed to restore: criu and its hook died at post-restore; the guardian killed [1-9]\d* task\(s\) of the tree/,
    );
    assert.ok(Date.now() - killedAt < 2500, 'well before the hook lease (3 s) would have noticed');
    const rb = await restore(1).done;
    assert.notEqual(rb.code, 0);
    assert.match(rb.output, /E_SESSION_CLOSED/);
    assert.ok(!existsSync(`/proc/${root}`) || !isLive(root));
    assertNeverRan(cp, [0, 1]);
    assertImagesUnchanged(cp);
  });
});
