import {
  type OperatorFunction,
  type SchedulerLike,
  Subject,
  asyncScheduler,
  defer,
  filter,
  finalize,
  merge,
  tap,
} from 'rxjs';
import type { CoordinatorConfig, CoordinatorState, Effect, Input } from '../core/model';
import { deadlineTimers } from './deadline-timers';
import { reduceSessions } from './reduce-sessions';

export type OutputEffect = Exclude<Effect, { type: 'schedule-deadline' | 'cancel-deadline' }>;

const isOutput = (e: Effect): e is OutputEffect => e.type !== 'schedule-deadline' && e.type !== 'cancel-deadline';

/**
 * The coordinator pipeline: inputs from the transport, merged with the
 * deadline timers the reducer asks for, folded through the session reducer.
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
      const timers = timerEffects.pipe(deadlineTimers(scheduler)).subscribe(feedback);
      for (const e of recovered?.effects ?? []) timerEffects.next(e);
      return merge(input$, feedback).pipe(
        reduceSessions(config, onState, recovered?.state),
        tap((e) => timerEffects.next(e)),
        filter(isOutput),
        finalize(() => timers.unsubscribe()),
      );
    });
}
