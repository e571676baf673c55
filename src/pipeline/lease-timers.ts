import { type OperatorFunction, type SchedulerLike, asyncScheduler, filter } from 'rxjs';
import type { Effect, Input } from '../core/model';
import { keyedTimers } from './keyed-timers';

type LeaseEffect = Extract<Effect, { type: 'schedule-lease' }>;

/**
 * Turns lease effects into `hook-lost` inputs: one timer per waiting hook
 * (session, attempt, gate, tree), restarted each time the hook re-sends. It
 * fires only when the hook has been silent for the whole lease; the reducer
 * ignores it when the tree no longer waits (released or aborted meanwhile).
 */
export function leaseTimers(scheduler: SchedulerLike = asyncScheduler): OperatorFunction<Effect, Input> {
  return (effect$) =>
    effect$.pipe(
      filter((e): e is LeaseEffect => e.type === 'schedule-lease'),
      keyedTimers<LeaseEffect, Input>(
        {
          key: (e) => `${e.attempt}\u0000${e.session}\u0000${e.gate}\u0000${e.tree}`,
          delayMs: (e) => e.inMs,
          fire: (e, at) => ({
            type: 'hook-lost',
            session: e.session,
            attempt: e.attempt,
            tree: e.tree,
            gate: e.gate,
            silentMs: e.inMs,
            at,
          }),
        },
        scheduler,
      ),
    );
}
