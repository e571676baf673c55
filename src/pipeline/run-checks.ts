/**
 * The I/O effects of the verify activator as an operator: each inspect-tree,
 * verify-tree and activate-bo effect runs through its adapter (injected, like
 * the scheduler) and comes back as the input that carries its result, or why
 * it failed. A check starts after the pipeline step that asked for it, so the
 * replies of that step go out first; checks run concurrently.
 */
import { type OperatorFunction, defer, mergeMap } from 'rxjs';
import type { ActiveMapper, Activator, Effect, Input, MappingRef, Observation } from '../core/model';

export type CheckEffect = Extract<Effect, { type: 'inspect-tree' | 'verify-tree' | 'activate-bo' }>;

export const isCheck = (e: Effect): e is CheckEffect => e.type === 'inspect-tree' || e.type === 'verify-tree' || e.type === 'activate-bo';

export interface CheckAdapters {
  /** a tree's shared mappings from its checkpoint directory */
  inspect(tree: string, imageDir: string): Promise<MappingRef[]>;
  /** the restored tree's live mappings */
  observe(initPid: number, mappings: MappingRef[]): Promise<Observation[]>;
  /** runs the session's activator for a verified BO */
  activate(activator: Activator, session: string, bo: string, label: string, mappers: ActiveMapper[]): Promise<void>;
  /** wall clock, ms */
  now(): number;
  /** told how long each check took */
  onDone?(e: CheckEffect, ms: number): void;
}

const afterThisStep = () => new Promise<void>((r) => setImmediate(r));
const why = (err: unknown) => (err as Error)?.message ?? String(err);

async function run(e: CheckEffect, a: CheckAdapters): Promise<Input> {
  await afterThisStep();
  const started = a.now();
  const base = { session: e.session, attempt: e.attempt };
  let input: Input;
  switch (e.type) {
    case 'inspect-tree':
      try {
        input = { type: 'tree-images', ...base, tree: e.tree, mappings: await a.inspect(e.tree, e.imageDir), error: '', at: a.now() };
      } catch (err) {
        input = { type: 'tree-images', ...base, tree: e.tree, mappings: null, error: why(err), at: a.now() };
      }
      break;
    case 'verify-tree':
      try {
        input = {
          type: 'tree-observed',
          ...base,
          tree: e.tree,
          observations: await a.observe(e.initPid, e.mappings),
          error: '',
          at: a.now(),
        };
      } catch (err) {
        input = { type: 'tree-observed', ...base, tree: e.tree, observations: null, error: why(err), at: a.now() };
      }
      break;
    case 'activate-bo': {
      let error = '';
      try {
        await a.activate(e.activator, e.session, e.bo, e.label, e.mappers);
      } catch (err) {
        error = why(err);
      }
      input = { type: 'bo-activation', ...base, bo: e.bo, error, at: a.now() };
      break;
    }
  }
  a.onDone?.(e, a.now() - started);
  return input;
}

export function runChecks(adapters: CheckAdapters): OperatorFunction<CheckEffect, Input> {
  return (effect$) => effect$.pipe(mergeMap((e) => defer(() => run(e, adapters))));
}
