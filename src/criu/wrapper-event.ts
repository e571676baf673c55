/** The events a criu wrapper sends itself (a failed criu, a stand-in at a gate), speaking as its run. */
import { hostname } from 'node:os';
import type { ActionName } from '../core/actions';
import type { StageEvent } from '../core/model';

export interface WrapperCtx {
  o: { session: string; tree: string; trees: number; attempt: number; commit?: string };
  run: string;
  criuPid: number;
}

export function wrapperEvent(ctx: WrapperCtx, action: ActionName, initPid = 0, reason = ''): StageEvent {
  const { o } = ctx;
  return {
    session: o.session,
    tree: o.tree,
    action,
    actionName: action,
    initPid,
    imageDir: '',
    host: hostname(),
    hookPid: process.pid,
    criuPid: ctx.criuPid,
    monoNs: process.hrtime.bigint(),
    wallNs: BigInt(Date.now()) * 1_000_000n,
    attempt: o.attempt,
    expectedTrees: o.trees,
    reason,
    run: ctx.run,
    ...(o.commit ? { commit: o.commit } : {}),
  };
}
