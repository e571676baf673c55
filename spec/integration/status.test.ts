/** `stagegate status` and `stagegate watch` against a real coordinator and real hooks. */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { run, sleep, STAGEGATE } from '../../demo/harness';
import { startCoordinator, until, type TestCoordinator } from '../support/coordinator';
import { hookEnv, runHook } from '../support/hook';
import { GapDetector } from '../../src/cli/status';

let c: TestCoordinator;
before(async () => {
  c = await startCoordinator(20_000);
});
after(async () => {
  await c.close();
});

describe('stagegate status', () => {
  it('shows who waits at which gate, since when, and what the session still waits for', async () => {
    const env = (tree: string) =>
      hookEnv(c.endpoint, 'post-restore', { STAGEGATE_SESSION: 'st', STAGEGATE_TREE: tree, STAGEGATE_TREES: '2', CRTOOLS_INIT_PID: '999' });
    const first = runHook(env('a'));
    assert.ok(await until(() => c.coordinator.snapshot()?.sessions.get('st')?.gates['post-restore'].waiting.size === 1));
    await sleep(300);
    const json = await run(STAGEGATE, ['status', '--json', '--session', 'st', '--endpoint', c.endpoint]);
    assert.equal(json.code, 0, json.output);
    const r = JSON.parse(json.output);
    assert.equal(r.sessions.length, 1);
    const s = r.sessions[0];
    assert.equal(s.status, 'open');
    assert.equal(s.trees[0].tree, 'a');
    assert.equal(s.trees[0].waitingAt, 'post-restore');
    assert.ok(r.now - s.trees[0].waitingSince >= 300);
    assert.deepEqual(s.waitingFor, ['1 tree(s) not seen yet']);
    const text = await run(STAGEGATE, ['status', '--endpoint', c.endpoint]);
    assert.match(text.output, /session st {2}attempt 1 {2}open {2}activator none {2}1 of 2 tree\(s\) seen/);
    assert.match(text.output, /\n {2}a\s+post-restore\s+post-restore\s+\d+\.\d s\s+-\s+-/);
    assert.match(text.output, /waiting for: 1 tree\(s\) not seen yet/);
    assert.equal((await runHook(env('b'))).code, 0);
    assert.equal((await first).code, 0);
  });
});

describe('stagegate watch', () => {
  it('prints one line per event and decision when not on a terminal', async () => {
    const w = spawn(STAGEGATE, ['watch', '--events', c.events, '--endpoint', c.endpoint], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    w.stdout!.on('data', (d) => (out += d));
    await sleep(800);
    assert.equal((await runHook(hookEnv(c.endpoint, 'pre-restore', { STAGEGATE_SESSION: 'w1' }))).code, 0);
    assert.equal((await runHook(hookEnv(c.endpoint, 'post-restore', { STAGEGATE_SESSION: 'w1', CRTOOLS_INIT_PID: '999' }))).code, 0);
    assert.ok(await until(() => /gate-opened/.test(out), 5000), out);
    w.kill('SIGTERM');
    const lines = out.trim().split('\n');
    assert.match(lines[0]!, /^\S+Z #1 w1 t1 event pre-restore$/);
    assert.match(lines[1]!, /^\S+Z #2 w1 - session-opened expecting 1 tree\(s\)/);
    assert.ok(
      lines.some((l) => /#\d+ w1 - gate-opened post-restore waited \d+\.\d ms trees t1/.test(l)),
      out,
    );
  });

  it('--session follows that session only, not every session whose name starts with it', async () => {
    const w = spawn(STAGEGATE, ['watch', '--session', 'w4', '--events', c.events, '--endpoint', c.endpoint], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    w.stdout!.on('data', (d) => (out += d));
    try {
      await sleep(800);
      assert.equal((await runHook(hookEnv(c.endpoint, 'pre-restore', { STAGEGATE_SESSION: 'w42' }))).code, 0);
      assert.equal((await runHook(hookEnv(c.endpoint, 'pre-restore', { STAGEGATE_SESSION: 'w4' }))).code, 0);
      assert.ok(await until(() => / w4 t1 event pre-restore/.test(out), 5000), out);
      await sleep(200);
      assert.doesNotMatch(out, /w42/);
    } finally {
      w.kill('SIGTERM');
    }
  });

  it('tells a late subscriber how much it missed', async () => {
    assert.equal((await runHook(hookEnv(c.endpoint, 'pre-restore', { STAGEGATE_SESSION: 'late', STAGEGATE_TREES: '2' }))).code, 0);
    const w = spawn(STAGEGATE, ['watch', '--session', 'late', '--events', c.events, '--endpoint', c.endpoint], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    w.stdout!.on('data', (d) => (out += d));
    await sleep(800);
    assert.equal(
      (await runHook(hookEnv(c.endpoint, 'pre-restore', { STAGEGATE_SESSION: 'late', STAGEGATE_TREE: 't2', STAGEGATE_TREES: '2' }))).code,
      0,
    );
    assert.ok(await until(() => /t2 event pre-restore/.test(out), 5000), out);
    w.kill('SIGTERM');
    assert.match(out, /^! late: joined at #3, 2 earlier message\(s\) not seen\n\S+Z #3 late t2 event pre-restore/);
  });

  it("detects gaps in a session's sequence numbers", () => {
    const g = new GapDetector();
    assert.equal(g.check('s', 1n), null);
    assert.equal(g.check('s', 2n), null);
    assert.equal(g.check('s', 5n), '! s: missed 2 message(s) (#3..#4)');
    assert.equal(g.check('other', 1n), null);
  });
});
