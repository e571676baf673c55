/** Builders for core inputs used by the unit and marble tests. */
import type { ActionName } from '../../src/core/actions';
import type { Effect, Input, StageEvent } from '../../src/core/model';

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

export function ev(tree: string, action: ActionName, at = 0, over: Partial<StageEvent> = {}, peer: string | null = `${tree}:${action}`): Input {
  return { type: 'event', event: stageEvent(tree, action, over), peer, at };
}

export const replies = (effects: Effect[]) =>
  effects.flatMap((e) => (e.type === 'reply' ? [{ peer: e.peer, proceed: e.verdict.proceed, code: e.verdict.code }] : []));

export const decisions = (effects: Effect[]) =>
  effects.flatMap((e) => (e.type === 'publish-decision' ? [e.decision] : []));
