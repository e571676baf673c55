/**
 * Load: one daemon (a real `stagegate serve` process) holds 1,000 concurrent
 * trees of one session, each a simulated hook on its own ZeroMQ socket, while
 * another socket floods it with malformed frames. Every tree passes both
 * gates, and the daemon's peak RSS stays under a bound.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { Context, Dealer } from 'zeromq';
import { Daemon } from '../../demo/harness';
import type { ActionName } from '../../src/core/actions';
import { decodeVerdict, encodeRequestEvent } from '../../src/protocol/codec';

const TREES = 1000;
/** The benchmark measures ~150 MiB at 1,024 trees; this bound catches state that grows per event. */
const PEAK_RSS_MIB = 256;

let dir: string;
let d: Daemon;
before(async () => {
  dir = mkdtempSync('/tmp/sg-load-');
  d = await Daemon.start(dir, 120, 'none');
});
after(async () => {
  await d.stop();
  rmSync(dir, { recursive: true, force: true });
});

function frame(tree: number, action: ActionName): Uint8Array {
  return encodeRequestEvent({
    session: 'load',
    tree: `t${tree}`,
    action,
    actionName: action,
    initPid: 4242 + tree,
    imageDir: '/tmp',
    host: hostname(),
    hookPid: process.pid,
    criuPid: process.pid,
    monoNs: process.hrtime.bigint(),
    wallNs: BigInt(Date.now()) * 1_000_000n,
    attempt: 1,
    expectedTrees: TREES,
    reason: '',
  });
}

function status(field: 'VmRSS' | 'VmHWM'): number {
  const s = readFileSync(`/proc/${d.child.pid}/status`, 'utf8');
  return Number(new RegExp(`${field}:\\s+(\\d+)`).exec(s)![1]) / 1024;
}

describe(`one daemon, ${TREES} concurrent trees`, () => {
  it('releases every tree at both gates while malformed frames flood it, with bounded memory', async () => {
    const context = new Context({ maxSockets: TREES + 64 }); // the default allows 1023 sockets
    const socks = [...Array(TREES).keys()].map(() => {
      const s = new Dealer({ context, linger: 0, receiveTimeout: 60_000 });
      s.connect(d.endpoint);
      return s;
    });
    const rogue = new Dealer({ context, linger: 0, sendHighWaterMark: 0 });
    rogue.connect(d.endpoint);
    let flooding = true;
    let garbage = 0;
    let seed = 11;
    const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) % 256;
    const flood = (async () => {
      while (flooding) {
        // random bytes, and now and then a frame over the size limit
        const big = garbage % 500 === 0;
        await rogue.send(big ? Buffer.alloc(128 * 1024, 0x0a) : Buffer.from(Array.from({ length: 1 + (garbage % 96) }, rnd)));
        garbage++;
        if (garbage % 200 === 0) await sleep(0);
      }
    })();
    try {
      for (const gate of ['post-restore', 'pre-resume'] as const) {
        const verdicts = Promise.all(socks.map(async (s) => decodeVerdict((await s.receive())[0]!)));
        for (let i = 0; i < TREES; i++) await socks[i]!.send(frame(i, gate));
        const v = await verdicts;
        const refused = v.filter((x) => !x.proceed);
        assert.equal(refused.length, 0, `${refused.length} tree(s) refused at ${gate}: ${refused[0]?.reason}`);
        assert.deepEqual(new Set(v.map((x) => x.tree)).size, TREES);
      }
      for (let i = 0; i < TREES; i++) await socks[i]!.send(frame(i, 'post-resume'));
      const done = async () => {
        for (let k = 0; k < 300; k++) {
          if (d.messages.some((m) => 'decision' in m && m.decision.session === 'load' && m.decision.kind === 'session-completed'))
            return true;
          await sleep(100);
        }
        return false;
      };
      assert.ok(await done(), 'the session completed after every tree resumed');
    } finally {
      flooding = false;
      await flood;
      for (const s of socks) s.close();
      rogue.close();
    }
    const rejected = d.messages.filter((m) => 'decision' in m && m.decision.kind === 'event-rejected').length;
    assert.ok(garbage > 1000 && rejected > 0, `flood sent ${garbage} frames, ${rejected} rejections published`);
    const peak = status('VmHWM');
    process.stdout.write(
      `# load: ${TREES} trees, ${garbage} malformed frames, daemon RSS ${status('VmRSS').toFixed(0)} MiB, peak ${peak.toFixed(0)} MiB\n`,
    );
    assert.ok(peak < PEAK_RSS_MIB, `daemon peak RSS ${peak.toFixed(0)} MiB, bound ${PEAK_RSS_MIB} MiB`);
    assert.equal(d.child.exitCode, null, 'the daemon is still running');
  });
});
