/** Bounded fuzz of the protocol decoder: random and mutated frames either decode or throw a FrameError. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { FrameError, decodeRequest, encodeOpen, encodeRequestEvent } from '../../src/protocol/codec';
import { validateEvent } from '../../src/core/validate';
import { stageEvent } from './fixtures';

describe('protocol decoder fuzz', () => {
  it('never throws anything but a FrameError, and never lets an invalid event through validation unnoticed', () => {
    let seed = 4242;
    const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    const seeds = [
      encodeRequestEvent(stageEvent('t', 'post-restore')),
      encodeOpen({
        session: 's',
        expectedTrees: 2,
        attempt: 1,
        deadlineMs: 0,
        manifest: [{ id: 'b', mappers: [{ tree: 't', pid: 1, start: 0x1000n, size: 0x1000n, prot: 3 }] }],
      }),
    ];
    let decoded = 0;
    let rejected = 0;
    for (let i = 0; i < 5000; i++) {
      let frame: Uint8Array;
      if (i % 4 === 0) {
        frame = Uint8Array.from({ length: Math.floor(rnd() * 300) }, () => Math.floor(rnd() * 256));
      } else {
        const m = Buffer.from(seeds[i % seeds.length]!);
        for (let k = 0; k < 1 + Math.floor(rnd() * 6); k++) m[Math.floor(rnd() * m.length)] = Math.floor(rnd() * 256);
        frame = m.subarray(0, rnd() < 0.2 ? Math.floor(rnd() * m.length) : m.length);
      }
      try {
        const r = decodeRequest(frame);
        decoded++;
        if (r.type === 'event') validateEvent(r.event); // must not throw either
      } catch (e) {
        assert.ok(e instanceof FrameError, `frame ${i} threw ${(e as Error)?.stack}`);
        rejected++;
      }
    }
    assert.ok(decoded > 100 && rejected > 100, `decoded ${decoded}, rejected ${rejected}`);
  });
});
