import { type OperatorFunction, type SchedulerLike, Subject, asyncScheduler, defer, filter, finalize, merge, tap } from 'rxjs';
import type { CoordinatorConfig, CoordinatorState, Effect, Input } from '../core/model';
import { deadlineTimers } from './deadline-timers';
import { leaseTimers } from './lease-timers';
import { reduceSessions } from './reduce-sessions';

type TimerEffect = Extract<Effect, { type: 'schedule-deadline' | 'cancel-deadline' | 'schedule-lease' }>;
export type OutputEffect = Exclude<Effect, TimerEffect>;

const isOutput = (e: Effect): e is OutputEffect =>
  e.type !== 'schedule-deadline' && e.type !== 'cancel-deadline' && e.type !== 'schedule-lease';

/**
 * The coordinator pipeline: inputs from the transport, merged with the
 * deadline and lease timers the reducer asks for, folded through the session reducer.
 * Emits the effects that need I/O (replies and publications).
 */
export function coordinate(
  config: CoordinatorConfig,
  scheduler: SchedulerLike = asyncScheduler,
  onState?: (s: CoordinatorState) => void,
  /** a recovered state and the effects that resume it (deadline timers) */
  recovered?: { state: CoordinatorState; effects: Effect[] },
): OperatorFunction<Input, OutputEffect> {
  return (input$) =>
    defer(() => {
      const feedback = new Subject<Input>();
      const timerEffects = new Subject<Effect>();
      const timers = merge(timerEffects.pipe(deadlineTimers(scheduler)), timerEffects.pipe(leaseTimers(scheduler))).subscribe(feedback);
      for (const e of recovered?.effects ?? []) timerEffects.next(e);
      return merge(input$, feedback).pipe(
        reduceSessions(config, onState, recovered?.state),
        tap((e) => timerEffects.next(e)),
        filter(isOutput),
        finalize(() => timers.unsubscribe()),
      );
    });
}
