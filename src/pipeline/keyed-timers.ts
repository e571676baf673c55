import { type OperatorFunction, type SchedulerLike, EMPTY, groupBy, map, mergeMap, of, switchMap, timer } from 'rxjs';

export interface KeyedTimerSpec<E, O> {
  key: (e: E) => string;
  /** ms until the timer of `e`'s key fires; null stops that timer */
  delayMs: (e: E) => number | null;
  /** what a fired timer emits, at scheduler time `now` */
  fire: (e: E, now: number) => O;
}

/**
 * One timer per key on `scheduler` time: each item (re)starts or stops its
 * key's timer. A key's group ends once its timer has fired or was stopped,
 * so a daemon that runs for months does not keep a group per key it ever saw.
 */
export function keyedTimers<E, O>(spec: KeyedTimerSpec<E, O>, scheduler: SchedulerLike): OperatorFunction<E, O> {
  const wait = (e: E) => {
    const ms = spec.delayMs(e);
    return ms === null ? null : timer(ms, scheduler);
  };
  return (item$) =>
    item$.pipe(
      groupBy(spec.key, { duration: (group$) => group$.pipe(switchMap((e) => wait(e) ?? of(0))) }),
      mergeMap((group$) => group$.pipe(switchMap((e) => wait(e)?.pipe(map(() => spec.fire(e, scheduler.now()))) ?? EMPTY))),
    );
}
