import { type OperatorFunction, type SchedulerLike, Subject, asyncScheduler, defer, filter, finalize, merge, tap } from 'rxjs';
import type { CoordinatorConfig, CoordinatorState, Effect, Input } from '../core/model';
import { deadlineTimers } from './deadline-timers';
import { leaseTimers } from './lease-timers';
import { reduceSessions } from './reduce-sessions';
import { type CheckAdapters, isCheck, runChecks } from './run-checks';

type TimerEffect = Extract<Effect, { type: 'schedule-deadline' | 'cancel-deadline' | 'schedule-lease' }>;
/** What the pipeline leaves to its owner: replies to hooks and publications (and checks, without adapters). */
export type OutputEffect = Exclude<Effect, TimerEffect>;

const isTimer = (e: Effect): e is TimerEffect =>
  e.type === 'schedule-deadline' || e.type === 'cancel-deadline' || e.type === 'schedule-lease';

export interface CoordinateOptions {
  config: CoordinatorConfig;
  /** all time goes through it (virtual time in the marble tests) */
  scheduler?: SchedulerLike;
  /** observes the state after each input */
  onState?: (s: CoordinatorState) => void;
  /** a recovered state and the effects that resume it (deadline and lease timers) */
  recovered?: { state: CoordinatorState; effects: Effect[] };
  /** the I/O of the verify activator; without it, its effects are emitted like the others */
  checks?: CheckAdapters;
  /** sees every input from outside and every check result before the reducer does (the journal), not the timers' */
  record?: (i: Input) => void;
}

/**
 * The coordinator pipeline, the whole feedback loop in one place: inputs from
 * the transport and the results of the checks the reducer asks for, recorded,
 * merged with the deadline and lease timers it asks for, folded through the
 * session reducer. Emits the effects that need the transport: replies and
 * publications.
 */
export function coordinate(o: CoordinateOptions): OperatorFunction<Input, OutputEffect> {
  const scheduler = o.scheduler ?? asyncScheduler;
  return (input$) =>
    defer(() => {
      const timerInputs = new Subject<Input>();
      const checkInputs = new Subject<Input>();
      const timerEffects = new Subject<TimerEffect>();
      const checkEffects = new Subject<Effect>();
      const timers = merge(timerEffects.pipe(deadlineTimers(scheduler)), timerEffects.pipe(leaseTimers(scheduler))).subscribe(timerInputs);
      const checks = o.checks ? checkEffects.pipe(filter(isCheck), runChecks(o.checks)).subscribe(checkInputs) : null;
      for (const e of o.recovered?.effects ?? []) if (isTimer(e)) timerEffects.next(e);
      const recorded = merge(input$, checkInputs).pipe(tap((i) => o.record?.(i)));
      return merge(recorded, timerInputs).pipe(
        reduceSessions(o.config, o.onState, o.recovered?.state),
        tap((e) => {
          if (isTimer(e)) timerEffects.next(e);
          else if (o.checks && isCheck(e)) checkEffects.next(e);
        }),
        filter((e): e is OutputEffect => !isTimer(e) && !(o.checks && isCheck(e))),
        finalize(() => {
          timers.unsubscribe();
          checks?.unsubscribe();
        }),
      );
    });
}
