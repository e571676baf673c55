import { type OperatorFunction, concatMap, from, scan } from 'rxjs';
import type { CoordinatorConfig, CoordinatorState, Effect, Input } from '../core/model';
import { initialState, reduce } from '../core/session-reducer';

/**
 * Folds inputs through the pure session reducer and emits the effects of each
 * input in order. Optional `onState` observes each new state (for snapshots).
 */
export function reduceSessions(
  config: CoordinatorConfig,
  onState?: (s: CoordinatorState) => void,
): OperatorFunction<Input, Effect> {
  return (input$) =>
    input$.pipe(
      scan(
        (acc, input) => {
          const [state, effects] = reduce(acc.state, input);
          onState?.(state);
          return { state, effects };
        },
        { state: initialState(config), effects: [] as Effect[] },
      ),
      concatMap(({ effects }) => from(effects)),
    );
}
