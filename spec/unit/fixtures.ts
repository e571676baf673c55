/** Builders for core inputs used by the unit and marble tests. */
import type { ActionName } from '../../src/core/actions';
import {
  type CoordinatorConfig,
  type CoordinatorState,
  type DecisionFields,
  type DecisionKind,
  type DecisionOf,
  type Effect,
  type Input,
  type StageEvent,
  fieldsOf,
} from '../../src/core/model';
import { initialState, reduce } from '../../src/core/session-reducer';

/** Feeds inputs in order through the pure reducer; returns the final state and the effects of each input. */
export function feed(config: CoordinatorConfig, inputs: Input[], state: CoordinatorState = initialState(config)) {
  const effects: Effect[][] = [];
  for (const i of inputs) {
    const [next, e] = reduce(state, i);
    state = next;
    effects.push(e);
  }
  return { state, effects, all: effects.flat() };
}

export function stageEvent(tree: string, action: ActionName, over: Partial<StageEvent> = {}): StageEvent {
  return {
    session: 's1',
    tree,
    action,
    actionName: action,
    initPid: action === 'pre-restore' ? 0 : 100,
    imageDir: `/img/${tree}`,
    host: 'h',
    hookPid: 7,
    criuPid: 6,
    monoNs: 1n,
    wallNs: 2n,
    attempt: 1,
    expectedTrees: 2,
    reason: '',
    ...over,
  };
}

export function ev(
  tree: string,
  action: ActionName,
  at = 0,
  over: Partial<StageEvent> = {},
  peer: string | null = `${tree}:${action}`,
): Input {
  return { type: 'event', event: stageEvent(tree, action, over), peer, at };
}

export const replies = (effects: Effect[]) =>
  effects.flatMap((e) => (e.type === 'reply' ? [{ peer: e.peer, proceed: e.verdict.proceed, code: e.verdict.code }] : []));

/** The decisions among `effects`, each as the loose view of every field a decision may have. */
export const decisions = (effects: Effect[]): DecisionFields[] =>
  effects.flatMap((e) => (e.type === 'publish-decision' ? [fieldsOf(e.decision)] : []));
/** The decisions of one kind among `effects`. */
export const decisionsOf = <K extends DecisionKind>(effects: Effect[], kind: K): DecisionOf<K>[] =>
  effects.flatMap((e) => (e.type === 'publish-decision' && e.decision.kind === kind ? [e.decision as DecisionOf<K>] : []));
