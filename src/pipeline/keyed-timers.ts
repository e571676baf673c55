import { Observable, type OperatorFunction, type SchedulerLike, type Subscription } from 'rxjs';

export interface KeyedTimerSpec<E, O> {
  key: (e: E) => string;
  /** ms until the timer of `e`'s key fires; null stops that timer */
  delayMs: (e: E) => number | null;
  /** what a fired timer emits, at scheduler time `now` */
  fire: (e: E, now: number) => O;
}

/**
 * One timer per key on `scheduler` time: each item (re)starts or stops its
 * key's timer. A key is forgotten once its timer has fired or was stopped, so
 * a daemon that runs for months keeps no state per key it ever saw; and
 * unsubscribing stops every pending timer (nothing keeps a closed daemon
 * alive). When the items complete, the output completes after the last
 * pending timer has fired.
 */
export function keyedTimers<E, O>(spec: KeyedTimerSpec<E, O>, scheduler: SchedulerLike): OperatorFunction<E, O> {
  return (item$) =>
    new Observable<O>((out) => {
      const timers = new Map<string, Subscription>();
      let ended = false;
      const stop = (key: string) => {
        timers.get(key)?.unsubscribe();
        timers.delete(key);
      };
      const source = item$.subscribe({
        next: (e) => {
          const key = spec.key(e);
          stop(key);
          const ms = spec.delayMs(e);
          if (ms === null) return;
          timers.set(
            key,
            scheduler.schedule(() => {
              timers.delete(key);
              out.next(spec.fire(e, scheduler.now()));
              if (ended && timers.size === 0) out.complete();
            }, ms),
          );
        },
        error: (err) => out.error(err),
        complete: () => {
          ended = true;
          if (timers.size === 0) out.complete();
        },
      });
      return () => {
        source.unsubscribe();
        for (const t of timers.values()) t.unsubscribe();
        timers.clear();
      };
    });
}
