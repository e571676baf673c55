import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TestScheduler } from 'rxjs/testing';
import { leaseTimers } from '../../src/pipeline/lease-timers';
import type { Effect, Input } from '../../src/core/model';

const scheduler = () => new TestScheduler((actual, expected) => assert.deepEqual(actual, expected));

const lease = (tree: string, inMs: number, gate: 'post-restore' | 'pre-resume' = 'post-restore'): Effect => ({
  type: 'schedule-lease',
  session: 's1',
  attempt: 1,
  tree,
  gate,
  inMs,
});
const lost = (tree: string, at: number, silentMs: number, gate: 'post-restore' | 'pre-resume' = 'post-restore'): Input => ({
  type: 'hook-lost',
  session: 's1',
  attempt: 1,
  tree,
  gate,
  silentMs,
  at,
});

describe('leaseTimers (marble)', () => {
  it('fires once a hook has been silent for its whole lease', () => {
    const ts = scheduler();
    ts.run(({ cold, expectObservable }) => {
      expectObservable(cold('a', { a: lease('t', 3) }).pipe(leaseTimers(ts))).toBe('---x', { x: lost('t', 3, 3) });
    });
  });

  it('never fires while re-sends keep renewing it', () => {
    const ts = scheduler();
    ts.run(({ cold, expectObservable }) => {
      expectObservable(cold('a-a-a-a', { a: lease('t', 3) }).pipe(leaseTimers(ts))).toBe('---------x', { x: lost('t', 9, 3) });
    });
  });

  it('keeps one lease per tree and gate', () => {
    const ts = scheduler();
    ts.run(({ cold, expectObservable }) => {
      const effects = cold('ab-a', { a: lease('t1', 4), b: lease('t2', 4) });
      expectObservable(effects.pipe(leaseTimers(ts))).toBe('-----y-x', { x: lost('t1', 7, 4), y: lost('t2', 5, 4) });
    });
  });

  it('arms again for a key whose timer already fired', () => {
    const ts = scheduler();
    ts.run(({ cold, expectObservable }) => {
      expectObservable(cold('a----a', { a: lease('t', 2) }).pipe(leaseTimers(ts))).toBe('--x----y', {
        x: lost('t', 2, 2),
        y: lost('t', 7, 2),
      });
    });
  });
});
