import {
  type OperatorFunction,
  type SchedulerLike,
  EMPTY,
  asyncScheduler,
  filter,
  groupBy,
  map,
  mergeMap,
  switchMap,
  timer,
} from 'rxjs';
import type { Effect, Input } from '../core/model';

type TimerEffect = Extract<Effect, { type: 'schedule-deadline' | 'cancel-deadline' }>;

/**
 * Turns schedule/cancel effects into `deadline` inputs on `scheduler` time.
 * One timer per (session, attempt): a later schedule replaces the earlier
 * one, a cancel stops it.
 */
export function deadlineTimers(scheduler: SchedulerLike = asyncScheduler): OperatorFunction<Effect, Input> {
  return (effect$) =>
    effect$.pipe(
      filter((e): e is TimerEffect => e.type === 'schedule-deadline' || e.type === 'cancel-deadline'),
      groupBy((e) => `${e.attempt}\u0000${e.session}`),
      mergeMap((perSession$) =>
        perSession$.pipe(
          switchMap((e) =>
            e.type === 'cancel-deadline'
              ? EMPTY
              : timer(e.inMs, scheduler).pipe(
                  map((): Input => ({ type: 'deadline', session: e.session, attempt: e.attempt, at: scheduler.now() })),
                ),
          ),
        ),
      ),
    );
}
