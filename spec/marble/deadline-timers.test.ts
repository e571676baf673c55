import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TestScheduler } from 'rxjs/testing';
import { deadlineTimers } from '../../src/pipeline/deadline-timers';
import type { Effect, Input } from '../../src/core/model';

const scheduler = () => new TestScheduler((actual, expected) => assert.deepEqual(actual, expected));

const sched = (session: string, inMs: number, attempt = 1): Effect => ({ type: 'schedule-deadline', session, attempt, inMs });
const cancel = (session: string, attempt = 1): Effect => ({ type: 'cancel-deadline', session, attempt });
const fired = (session: string, at: number, attempt = 1): Input => ({ type: 'deadline', session, attempt, at });

describe('deadlineTimers (marble)', () => {
  it('fires a deadline input after the scheduled time', () => {
    const ts = scheduler();
    ts.run(({ cold, expectObservable }) => {
      const effects = cold('a', { a: sched('s1', 5) });
      expectObservable(effects.pipe(deadlineTimers(ts))).toBe('-----x', { x: fired('s1', 5) });
    });
  });

  it('does not fire once cancelled', () => {
    const ts = scheduler();
    ts.run(({ cold, expectObservable }) => {
      const effects = cold('a--c', { a: sched('s1', 5), c: cancel('s1') });
      expectObservable(effects.pipe(deadlineTimers(ts))).toBe('');
    });
  });

  it('keeps one timer per session and attempt, independent of others', () => {
    const ts = scheduler();
    ts.run(({ cold, expectObservable }) => {
      const effects = cold('ab-c', { a: sched('s1', 4), b: sched('s2', 4), c: cancel('s2') });
      expectObservable(effects.pipe(deadlineTimers(ts))).toBe('----x', { x: fired('s1', 4) });
    });
  });

  it('ignores effects that are not about timers', () => {
    const ts = scheduler();
    ts.run(({ cold, expectObservable }) => {
      const other: Effect = {
        type: 'reply',
        peer: 'p',
        verdict: { session: 's', tree: 't', action: 'post-restore', attempt: 1, proceed: true, code: '', reason: '' },
      };
      expectObservable(cold('a', { a: other }).pipe(deadlineTimers(ts))).toBe('');
    });
  });
});
