/**
 * The messages the reducer sends (pure): decisions it publishes, verdicts it
 * answers hooks with, and the refusals built from them.
 */
import { isGate } from './actions';
import type { ActionName } from './actions';
import type { Decision, DecisionKind, DecisionOf, Effect, Input, Peer, StageEvent, Verdict } from './model';
import { ErrorCodes, type ErrorCode } from '../errors';

/** A decision of `kind` about session `s`, with the fields of that kind. */
export function decision<K extends DecisionKind>(
  kind: K,
  s: { session: string; attempt: number },
  at: number,
  fields: Omit<DecisionOf<K>, 'kind' | 'session' | 'attempt' | 'at'>,
): DecisionOf<K> {
  return { kind, session: s.session, attempt: s.attempt, at, ...fields } as DecisionOf<K>;
}

/** An event or frame refused: who sent it (as far as known) and why. */
export function rejected(
  s: { session: string; attempt: number },
  at: number,
  code: ErrorCode,
  reason: string,
  where: { tree?: string; action?: ActionName | 'unknown' } = {},
): DecisionOf<'event-rejected'> {
  return decision('event-rejected', s, at, { tree: where.tree ?? '', action: where.action ?? 'unknown', code, reason });
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
    publish(rejected(ev, at, code, reason, { tree: ev.tree, action: ev.action })),
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
  return [...reply(input.peer, verdict(ack, false, code, reason)), publish(rejected(ack, input.at, code, reason))];
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
    return [publish(rejected({ session: '', attempt: 0 }, 0, ErrorCodes.INTERNAL, reason))];
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
  return [publish(rejected(s, at, ErrorCodes.INTERNAL, reason))];
}
