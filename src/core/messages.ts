/**
 * The messages the reducer sends (pure): decisions it publishes, verdicts it
 * answers hooks with, and the refusals built from them.
 */
import { isGate } from './actions';
import type { Decision, Effect, Input, Peer, StageEvent, Verdict } from './model';
import { ErrorCodes, type ErrorCode } from '../errors';

export function decision(
  kind: Decision['kind'],
  s: { session: string; attempt: number },
  at: number,
  extra: Partial<Decision> = {},
): Decision {
  return {
    kind,
    session: s.session,
    attempt: s.attempt,
    tree: '',
    action: 'unknown',
    code: '',
    reason: '',
    at,
    waitedMs: 0,
    trees: [],
    bo: '',
    detail: '',
    ...extra,
  };
}

export const publish = (d: Decision): Effect => ({ type: 'publish-decision', decision: d });

export function verdict(
  ev: { session: string; tree: string; action: Verdict['action']; attempt: number },
  proceed: boolean,
  code: Verdict['code'] = '',
  reason = '',
): Verdict {
  return { session: ev.session, tree: ev.tree, action: ev.action, attempt: ev.attempt, proceed, code, reason };
}

export function reply(peer: Peer | null, v: Verdict): Effect[] {
  return peer === null ? [] : [{ type: 'reply', peer, verdict: v }];
}

export function reject(ev: StageEvent, peer: Peer | null, gated: boolean, code: ErrorCode, reason: string, at: number): Effect[] {
  return [
    ...(gated ? reply(peer, verdict(ev, false, code, reason)) : []),
    publish(decision('event-rejected', ev, at, { tree: ev.tree, action: ev.action, code, reason })),
  ];
}

/** The address of the answer to an open (no tree, no action). */
export const openAck = (session: string, attempt: number) => ({ session, tree: '', action: 'unknown' as const, attempt });

/** Refuses an open request: its sender is answered ABORT and the refusal is published. */
export function refuseOpen(
  input: { session: string; attempt: number; peer: Peer | null; at: number },
  code: ErrorCode,
  reason: string,
): Effect[] {
  const ack = openAck(input.session, input.attempt);
  return [...reply(input.peer, verdict(ack, false, code, reason)), publish(decision('event-rejected', ack, input.at, { code, reason }))];
}

/**
 * What answers an input the reducer failed on (a bug): the waiting hook, if
 * any, gets ABORT, and the failure is published; the input is dropped.
 */
export function failedInput(input: Input, err: unknown): Effect[] {
  const reason =
    `the coordinator failed on this ${String(input.type)} input and dropped it: ${(err as Error)?.message ?? String(err)}`.slice(0, 500);
  try {
    return answerFailed(input, reason);
  } catch {
    return [publish(decision('event-rejected', { session: '', attempt: 0 }, 0, { code: ErrorCodes.INTERNAL, reason }))];
  }
}

export function answerFailed(input: Input, reason: string): Effect[] {
  const ev = input.type === 'event' && typeof input.event === 'object' && input.event !== null ? input.event : null;
  if (ev && typeof ev.session === 'string' && typeof ev.tree === 'string') {
    return reject(ev, input.type === 'event' ? input.peer : null, isGate(ev.action), ErrorCodes.INTERNAL, reason, input.at);
  }
  const s = {
    session: 'session' in input && typeof input.session === 'string' ? input.session : '',
    attempt: 'attempt' in input && typeof input.attempt === 'number' ? input.attempt : 0,
  };
  const at = 'at' in input ? input.at : 0;
  if (input.type === 'open') return refuseOpen({ ...s, peer: input.peer, at }, ErrorCodes.INTERNAL, reason);
  return [publish(decision('event-rejected', s, at, { code: ErrorCodes.INTERNAL, reason }))];
}
