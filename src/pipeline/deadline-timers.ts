import { type OperatorFunction, type SchedulerLike, asyncScheduler, filter } from 'rxjs';
import type { Effect, Input } from '../core/model';
import { keyedTimers } from './keyed-timers';

type DeadlineEffect = Extract<Effect, { type: 'schedule-deadline' | 'cancel-deadline' }>;

/**
 * Turns schedule/cancel effects into `deadline` inputs on `scheduler` time.
 * One timer per (session, attempt): a later schedule replaces the earlier
 * one, a cancel stops it.
 */
export function deadlineTimers(scheduler: SchedulerLike = asyncScheduler): OperatorFunction<Effect, Input> {
  return (effect$) =>
    effect$.pipe(
      filter((e): e is DeadlineEffect => e.type === 'schedule-deadline' || e.type === 'cancel-deadline'),
      keyedTimers<DeadlineEffect, Input>(
        {
          key: (e) => `${e.attempt}\u0000${e.session}`,
          delayMs: (e) => (e.type === 'schedule-deadline' ? e.inMs : null),
          fire: (e, at) => ({ type: 'deadline', session: e.session, attempt: e.attempt, at }),
        },
        scheduler,
      ),
    );
}
