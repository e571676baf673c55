import { type OperatorFunction, concatMap, from, scan } from 'rxjs';
import type { CoordinatorConfig, CoordinatorState, Effect, Input } from '../core/model';
import { initialState, reduceInPlace, failedInput } from '../core/session-reducer';

/**
 * Folds inputs through the session reducer and emits the effects of each
 * input in order. The scan owns its state (nothing else holds it), so it uses
 * the in-place variant of the reducer. Optional `onState` observes the state.
 * An input the reducer throws on is answered and published as rejected
 * (E_INTERNAL) and dropped: one bad input never stops every other session.
 */
export function reduceSessions(
  config: CoordinatorConfig,
  onState?: (s: CoordinatorState) => void,
  initial: CoordinatorState = initialState(config),
): OperatorFunction<Input, Effect> {
  return (input$) =>
    input$.pipe(
      scan(
        (acc, input) => {
          try {
            const [state, effects] = reduceInPlace(acc.state, input);
            onState?.(state);
            return { state, effects };
          } catch (err) {
            return { state: acc.state, effects: failedInput(input, err) };
          }
        },
        { state: initial, effects: [] as Effect[] },
      ),
      concatMap(({ effects }) => from(effects)),
    );
}
