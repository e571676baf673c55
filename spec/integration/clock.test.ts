/**
 * Clock jumps: the daemon runs under libfaketime with its wall clock jumped
 * forward and backward in the middle of sessions. Deadlines run on the
 * monotonic clock, so a jump neither aborts a session early nor keeps one
 * alive past its deadline.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Daemon, removeFaketimeShm, sleep } from '../../demo/harness';
import { hookEnv, runHook } from '../support/hook';
import { until } from '../support/coordinator';

let dir: string;
let d: Daemon;
const offset = (v: string) => writeFileSync(join(dir, 'faketime'), `${v}\n`);

before(async () => {
  dir = mkdtempSync('/tmp/sg-clock-');
  offset('+0');
  d = await Daemon.start(dir, 3, 'none', '', [], {
    ...process.env,
    LD_PRELOAD: '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1',
    FAKETIME_TIMESTAMP_FILE: join(dir, 'faketime'),
    FAKETIME_NO_CACHE: '1',
    FAKETIME_DONT_FAKE_MONOTONIC: '1',
  });
});
after(async () => {
  await d.stop();
  removeFaketimeShm(d.child.pid);
  rmSync(dir, { recursive: true, force: true });
});

const hook = (session: string, tree: string) =>
  runHook(
    hookEnv(d.endpoint, 'post-restore', {
      STAGEGATE_SESSION: session,
      STAGEGATE_TREE: tree,
      STAGEGATE_TREES: '2',
      CRTOOLS_INIT_PID: '999',
      STAGEGATE_TIMEOUT: '10',
    }),
  );

describe('clock jumps in the daemon', () => {
  for (const jump of ['+2h', '-2h']) {
    it(`a ${jump} jump mid-session neither aborts it nor delays it`, async () => {
      offset('+0');
      const session = `jump${jump.replace(/[^0-9a-z]/g, '')}${jump[0] === '+' ? 'f' : 'b'}`;
      const a = hook(session, 'a');
      await sleep(500);
      offset(jump);
      await sleep(500);
      const b = await hook(session, 'b');
      const ra = await a;
      assert.equal(ra.code, 0, ra.stderr);
      assert.equal(b.code, 0, b.stderr);
      // the daemon sends a gate's verdicts before it logs and publishes the gate's opening, so a
      // hook can be back before that line and that decision are out: both are awaited
      const opened = (l: string) => l.includes(`"session":"${session}"`) && l.includes('"message":"gate-opened"');
      assert.ok(await until(() => d.logs().some(opened)), 'the gate-opened line is logged');
      assert.ok(
        await until(() => d.messages.some((m) => 'decision' in m && m.decision.session === session && m.decision.kind === 'gate-opened')),
        'the gate-opened decision is published',
      );
      // the daemon's log timestamps (Date) did jump; its decisions are timed from the monotonic clock
      const stamps = d
        .logs()
        .filter((l) => l.includes(`"session":"${session}"`))
        .map((l) => Date.parse(JSON.parse(l).timestamp));
      assert.ok(Math.max(...stamps) - Math.min(...stamps) > 3_600_000, 'the daemon saw its wall clock jump');
      const at = d.messages.flatMap((m) => ('decision' in m && m.decision.session === session ? [m.decision.at] : []));
      assert.ok(Math.max(...at) - Math.min(...at) < 60_000, 'decision times do not jump');
    });
  }

  it('a backward jump does not keep a session alive past its deadline (3 s, monotonic)', async () => {
    offset('+0');
    const started = performance.now();
    const a = hook('stuck', 'a');
    await sleep(300);
    offset('-6h');
    const r = await a;
    const took = performance.now() - started;
    assert.equal(r.code, 1);
    assert.match(r.stderr, /\[E_DEADLINE\] deadline of 3000 ms passed/);
    assert.ok(took > 2500 && took < 9000, `aborted after ${took} ms`);
  });
});
