/**
 * Adapter between wire frames (proto/stagegate.proto, generated protobufjs
 * code) and the core's plain data. Decoding is strict: size limit, known
 * protocol version, known body; anything else becomes a typed FrameError (src/errors.ts).
 */
import Long from 'long';
import { bigOfLong } from '../long';
import { stagegate } from './generated/stagegate';
import { type ActionName, type GateName, type HoldAt, isGate } from '../core/actions';
import {
  type Activator,
  type Decision,
  type DecisionKind,
  type Input,
  type MappingRef,
  type StageEvent,
  type Verdict,
  mappersFromText,
} from '../core/model';
import { BadFrameError, ErrorCodes, FrameError, type PartialAddress, ProtocolVersionError, errorCodeOf } from '../errors';

export { FrameError, type PartialAddress };
import { parseActivator, parseHoldAt } from '../core/validate';
import type { SessionView } from '../core/status';

import pb = stagegate.v1;

export const PROTOCOL_VERSION = 1;
/**
 * Largest frame accepted (an event is a few hundred bytes; an explicit open
 * with a BO manifest of thousands of mappings is the largest request).
 */
export const MAX_FRAME_BYTES = 1024 * 1024;

export function actionName(a: pb.Action): ActionName {
  if (a === pb.Action.ACTION_UNSPECIFIED || pb.Action[a] === undefined) return 'unknown';
  return pb.Action[a]!.toLowerCase().replace(/_/g, '-') as ActionName;
}

export function actionEnum(name: ActionName | 'unknown'): pb.Action {
  const key = name.toUpperCase().replace(/-/g, '_') as keyof typeof pb.Action;
  return pb.Action[key] ?? pb.Action.ACTION_UNSPECIFIED;
}

const toLong = (v: bigint): Long => Long.fromBits(Number(v & 0xffffffffn) | 0, Number((v >> 32n) & 0xffffffffn) | 0, true);

function decodeEvent(e: pb.IStageEvent): StageEvent {
  return {
    session: e.session ?? '',
    tree: e.tree ?? '',
    action: actionName(e.action ?? 0),
    actionName: e.actionName ?? '',
    initPid: e.initPid ?? 0,
    imageDir: e.imageDir ?? '',
    host: e.host ?? '',
    hookPid: e.hookPid ?? 0,
    criuPid: e.criuPid ?? 0,
    monoNs: bigOfLong(e.monoNs as Long),
    wallNs: bigOfLong(e.wallNs as Long),
    attempt: e.attempt ?? 0,
    expectedTrees: e.expectedTrees ?? 0,
    reason: e.reason ?? '',
    ...(e.resent ? { resent: true } : {}),
    ...(e.resendMs ? { resendMs: e.resendMs } : {}),
    ...(e.run ? { run: e.run } : {}),
    ...(e.netLock ? { netLock: true } : {}),
    ...(e.commit ? { commit: e.commit } : {}),
  };
}

/** An explicit session opening, as the core takes it (less where and when it came from). */
export type OpenRequest = Omit<Extract<Input, { type: 'open' }>, 'type' | 'peer' | 'at'>;

export type DecodedRequest =
  | { type: 'event'; event: StageEvent }
  | ({ type: 'open' } & OpenRequest)
  | { type: 'status'; session: string }
  | { type: 'sealed'; request: Uint8Array; clientKey: Uint8Array; mac: Uint8Array; nonce: Uint8Array; sentNs: bigint };

/** A manifest BO's mappings as core data; its id is prefixed so it never collides with image BOs. */
function manifestMappings(specs: pb.IBoSpec[]): MappingRef[] {
  return specs.flatMap((b) =>
    (b.mappers ?? []).map((m) => ({
      bo: `manifest:${b.id ?? ''}`,
      kind: 'manifest' as const,
      label: b.id ?? '',
      tree: m.tree ?? '',
      pid: m.pid ?? 0,
      start: bigOfLong(m.start as Long),
      size: bigOfLong(m.size as Long),
      prot: m.prot ?? 0,
      pgoff: 0n,
    })),
  );
}

export function decodeRequest(frame: Uint8Array): DecodedRequest {
  if (frame.length > MAX_FRAME_BYTES) {
    throw new BadFrameError(`frame of ${frame.length} bytes exceeds ${MAX_FRAME_BYTES}`, null);
  }
  let req: pb.Request;
  try {
    req = pb.Request.decode(frame);
  } catch (err) {
    throw new BadFrameError(`undecodable request: ${(err as Error).message}`, null);
  }
  if (req.body === 'event' && req.event) {
    const e = req.event;
    const ev = decodeEvent(e);
    if (e.protocolVersion !== PROTOCOL_VERSION) {
      throw new ProtocolVersionError(`hook speaks protocol version ${e.protocolVersion}, this daemon ${PROTOCOL_VERSION}`, {
        session: ev.session,
        tree: ev.tree,
        action: ev.action,
        attempt: ev.attempt,
      });
    }
    return { type: 'event', event: ev };
  }
  if (req.body === 'open' && req.open) {
    const o = req.open;
    if (o.protocolVersion !== PROTOCOL_VERSION) {
      throw new ProtocolVersionError(`client speaks protocol version ${o.protocolVersion}, this daemon ${PROTOCOL_VERSION}`, {
        session: o.session ?? '',
        tree: '',
        action: 'unknown',
        attempt: o.attempt ?? 0,
      });
    }
    const activator = o.activator ?? '';
    if (activator !== '' && !parseActivator(activator)) {
      throw new BadFrameError(`unknown activator '${activator.slice(0, 100)}' (known: verify, none, kfd, exec:<command>)`, {
        session: o.session ?? '',
        tree: '',
        action: 'unknown',
        attempt: o.attempt ?? 0,
      });
    }
    const holdAt = o.holdAt ?? '';
    if (holdAt !== '' && !parseHoldAt(holdAt)) {
      throw new BadFrameError(`unknown hold_at '${holdAt.slice(0, 100)}' (known: pre-restore, none)`, {
        session: o.session ?? '',
        tree: '',
        action: 'unknown',
        attempt: o.attempt ?? 0,
      });
    }
    return {
      type: 'open',
      session: o.session ?? '',
      expectedTrees: o.expectedTrees ?? 0,
      attempt: o.attempt ?? 0,
      deadlineMs: o.deadlineMs ?? 0,
      manifest: manifestMappings(o.manifest ?? []),
      activator: activator as Activator | '',
      holdAt: holdAt as HoldAt | '',
    };
  }
  if (req.body === 'status' && req.status) {
    if (req.status.protocolVersion !== PROTOCOL_VERSION) {
      throw new ProtocolVersionError(`client speaks protocol version ${req.status.protocolVersion}, this daemon ${PROTOCOL_VERSION}`, null);
    }
    return { type: 'status', session: req.status.session ?? '' };
  }
  if (req.body === 'sealed' && req.sealed) {
    const { request, clientKey, mac, nonce, sentNs } = req.sealed;
    return {
      type: 'sealed',
      request: request ?? new Uint8Array(),
      clientKey: clientKey ?? new Uint8Array(),
      mac: mac ?? new Uint8Array(),
      nonce: nonce ?? new Uint8Array(),
      sentNs: bigOfLong(sentNs as Long),
    };
  }
  throw new BadFrameError('request has no body', null);
}

export function encodeEvent(ev: StageEvent): pb.IStageEvent {
  return {
    protocolVersion: PROTOCOL_VERSION,
    session: ev.session,
    tree: ev.tree,
    action: actionEnum(ev.action),
    actionName: ev.actionName,
    initPid: ev.initPid,
    imageDir: ev.imageDir,
    host: ev.host,
    hookPid: ev.hookPid,
    criuPid: ev.criuPid,
    monoNs: toLong(ev.monoNs),
    wallNs: toLong(ev.wallNs),
    attempt: ev.attempt,
    expectedTrees: ev.expectedTrees,
    reason: ev.reason,
    resent: ev.resent ?? false,
    resendMs: ev.resendMs ?? 0,
    run: ev.run ?? '',
    netLock: ev.netLock ?? false,
    commit: ev.commit ?? '',
  };
}

export function encodeRequestEvent(ev: StageEvent): Uint8Array {
  return pb.Request.encode({ event: encodeEvent(ev) }).finish();
}

export interface ManifestBo {
  id: string;
  mappers: { tree: string; pid: number; start: bigint; size: bigint; prot: number }[];
}

export function encodeOpen(o: {
  session: string;
  expectedTrees: number;
  attempt: number;
  deadlineMs: number;
  manifest?: ManifestBo[];
  activator?: Activator;
  holdAt?: HoldAt;
}): Uint8Array {
  const manifest = (o.manifest ?? []).map((b) => ({
    id: b.id,
    mappers: b.mappers.map((m) => ({ tree: m.tree, pid: m.pid, start: toLong(m.start), size: toLong(m.size), prot: m.prot })),
  }));
  return pb.Request.encode({
    open: {
      protocolVersion: PROTOCOL_VERSION,
      session: o.session,
      expectedTrees: o.expectedTrees,
      attempt: o.attempt,
      deadlineMs: o.deadlineMs,
      manifest,
      activator: o.activator ?? '',
      holdAt: o.holdAt ?? '',
    },
  }).finish();
}

export function encodeVerdict(v: Verdict): Uint8Array {
  return pb.Verdict.encode({
    protocolVersion: PROTOCOL_VERSION,
    session: v.session,
    tree: v.tree,
    action: actionEnum(v.action),
    attempt: v.attempt,
    decision: v.proceed ? pb.Decision.PROCEED : pb.Decision.ABORT,
    code: v.code,
    reason: v.reason,
    members: v.members ?? [],
  }).finish();
}

/** Decodes a reply or published frame: whatever protobufjs throws becomes a BadFrameError. */
function decodeAs<T>(what: string, frame: Uint8Array, decode: (f: Uint8Array) => T): T {
  try {
    return decode(frame);
  } catch (err) {
    throw new BadFrameError(`undecodable ${what}: ${(err as Error).message}`, null, { cause: err });
  }
}

export function decodeVerdict(frame: Uint8Array): Verdict {
  const v = decodeAs('verdict', frame, (f) => pb.Verdict.decode(f));
  return {
    session: v.session,
    tree: v.tree,
    action: actionName(v.action),
    attempt: v.attempt,
    proceed: v.decision === pb.Decision.PROCEED,
    code: errorCodeOf(v.code),
    reason: v.reason,
    ...(v.members.length ? { members: v.members.map((m) => ({ tree: m.tree ?? '', host: m.host ?? '', run: m.run ?? '' })) } : {}),
  };
}

const KIND: Record<DecisionKind, pb.GateDecision.Kind> = {
  'session-opened': pb.GateDecision.Kind.SESSION_OPENED,
  'gate-opened': pb.GateDecision.Kind.GATE_OPENED,
  'tree-released': pb.GateDecision.Kind.TREE_RELEASED,
  'session-aborted': pb.GateDecision.Kind.SESSION_ABORTED,
  'session-completed': pb.GateDecision.Kind.SESSION_COMPLETED,
  'event-rejected': pb.GateDecision.Kind.EVENT_REJECTED,
  'bo-verified': pb.GateDecision.Kind.BO_VERIFIED,
  'bo-activated': pb.GateDecision.Kind.BO_ACTIVATED,
  'tree-inspected': pb.GateDecision.Kind.TREE_INSPECTED,
};
const KIND_NAME = Object.fromEntries(Object.entries(KIND).map(([k, v]) => [v, k])) as Record<number, DecisionKind>;

const msToNs = (ms: number): bigint => BigInt(Math.round(ms * 1e6));

export function encodePublished(seq: bigint, body: { event: StageEvent } | { decision: Decision }): Uint8Array {
  if ('event' in body) return pb.Published.encode({ seq: toLong(seq), event: encodeEvent(body.event) }).finish();
  return pb.Published.encode({ seq: toLong(seq), decision: encodeDecision(body.decision) }).finish();
}

/** One decision on the wire: each kind's fields, and the older overloaded fields for older subscribers. */
function encodeDecision(d: Decision): pb.IGateDecision {
  const base = { kind: KIND[d.kind], session: d.session, attempt: d.attempt, wallNs: toLong(msToNs(d.at)) };
  switch (d.kind) {
    case 'session-opened':
      return { ...base, reason: d.reason };
    case 'gate-opened':
      return { ...base, action: actionEnum(d.action), waitedNs: toLong(msToNs(d.waitedMs)), trees: d.trees };
    case 'tree-released':
      return { ...base, tree: d.tree, action: actionEnum(d.action) };
    case 'session-aborted':
      return { ...base, code: d.code, reason: d.reason, trees: d.trees };
    case 'session-completed':
      return { ...base, trees: d.trees };
    case 'event-rejected':
      return { ...base, tree: d.tree, action: actionEnum(d.action), code: d.code, reason: d.reason };
    case 'tree-inspected':
      return { ...base, tree: d.tree, bos: d.bos, mappings: d.mappings, trees: d.bos, reason: `${d.mappings} shared mapping(s)` };
    case 'bo-verified':
      return { ...base, tree: d.tree, bo: d.bo };
    case 'bo-activated':
      return {
        ...base,
        bo: d.bo,
        label: d.label,
        trees: d.trees,
        mappers: d.mappers.map((m) => ({ tree: m.tree, pid: m.pid, start: toLong(m.start), size: toLong(m.size) })),
        reason: d.label,
        detail: d.mappers.map((m) => `${m.tree}/${m.pid}@0x${m.start.toString(16)}+${m.size}`).join(', '),
      };
  }
}

function decodeDecision(d: pb.GateDecision): Decision {
  const base = { session: d.session, attempt: d.attempt, at: Number(bigOfLong(d.wallNs as Long)) / 1e6 };
  const kind = KIND_NAME[d.kind];
  const gate = (): GateName => {
    const a = actionName(d.action);
    if (!isGate(a)) throw new BadFrameError(`a ${kind} decision names ${a}, not a gate`, null);
    return a;
  };
  switch (kind) {
    case 'session-opened':
      return { kind, ...base, reason: d.reason };
    case 'gate-opened':
      return { kind, ...base, action: gate(), waitedMs: Number(bigOfLong(d.waitedNs as Long)) / 1e6, trees: d.trees };
    case 'tree-released':
      return { kind, ...base, tree: d.tree, action: gate() };
    case 'session-aborted':
      return { kind, ...base, code: errorCodeOf(d.code) || ErrorCodes.INTERNAL, reason: d.reason, trees: d.trees };
    case 'session-completed':
      return { kind, ...base, trees: d.trees };
    case 'tree-inspected':
      // older daemons: the BOs in trees, the count in reason
      return { kind, ...base, tree: d.tree, bos: d.bos.length ? d.bos : d.trees, mappings: d.mappings || parseInt(d.reason, 10) || 0 };
    case 'bo-verified':
      return { kind, ...base, tree: d.tree, bo: d.bo };
    case 'bo-activated':
      return {
        kind,
        ...base,
        bo: d.bo,
        label: d.label || d.reason, // older daemons: the label in reason, the mappers in detail
        trees: d.trees,
        mappers: d.mappers.length
          ? d.mappers.map((m) => ({
              tree: m.tree ?? '',
              pid: m.pid ?? 0,
              start: bigOfLong(m.start as Long),
              size: bigOfLong(m.size as Long),
            }))
          : mappersFromText(d.detail),
      };
    default:
      // event-rejected, or a kind this version does not know
      return {
        kind: 'event-rejected',
        ...base,
        tree: d.tree,
        action: actionName(d.action),
        code: errorCodeOf(d.code) || ErrorCodes.BAD_FRAME,
        reason: d.reason,
      };
  }
}

export type PublishedMessage = { seq: bigint; event: StageEvent } | { seq: bigint; decision: Decision };

export function decodePublished(frame: Uint8Array): PublishedMessage {
  const p = decodeAs('published message', frame, (f) => pb.Published.decode(f));
  const seq = bigOfLong(p.seq as Long);
  if (p.body === 'event' && p.event) {
    return { seq, event: decodeEvent(p.event) };
  }
  if (!p.decision) throw new BadFrameError('published message has no body', null);
  return { seq, decision: decodeDecision(pb.GateDecision.fromObject(p.decision)) };
}

export function encodeStatusRequest(session = ''): Uint8Array {
  return pb.Request.encode({ status: { protocolVersion: PROTOCOL_VERSION, session } }).finish();
}

export function encodeStatusReply(views: SessionView[], nowMs: number): Uint8Array {
  return pb.StatusReply.encode({
    protocolVersion: PROTOCOL_VERSION,
    nowNs: toLong(msToNs(nowMs)),
    sessions: views.map((v) => ({
      session: v.session,
      attempt: v.attempt,
      expectedTrees: v.expectedTrees,
      status: v.status,
      activator: v.activator,
      openedNs: toLong(msToNs(v.openedAt)),
      deadlineMs: v.deadlineMs,
      abortCode: v.abortCode,
      abortReason: v.abortReason,
      trees: v.trees.map((t) => ({ ...t, waitingSinceNs: toLong(msToNs(t.waitingSince)) })),
      bos: v.bos,
      waitingFor: v.waitingFor,
      holdAt: v.holdAt,
      phase: v.phase,
    })),
  }).finish();
}

export function decodeStatusReply(frame: Uint8Array): { now: number; sessions: SessionView[] } {
  const r = decodeAs('status reply', frame, (f) => pb.StatusReply.decode(f));
  const ms = (v: unknown) => Number(bigOfLong(v as Long)) / 1e6;
  return {
    now: ms(r.nowNs),
    sessions: (r.sessions as pb.SessionStatus[]).map((v) => ({
      session: v.session,
      attempt: v.attempt,
      expectedTrees: v.expectedTrees,
      status: v.status,
      activator: v.activator,
      openedAt: ms(v.openedNs),
      deadlineMs: v.deadlineMs,
      abortCode: v.abortCode,
      abortReason: v.abortReason,
      trees: (v.trees as pb.TreeStatus[]).map((t) => ({
        tree: t.tree,
        lastAction: t.lastAction,
        initPid: t.initPid,
        host: t.host,
        waitingAt: t.waitingAt,
        waitingSince: ms(t.waitingSinceNs),
        postRestoreReleased: t.postRestoreReleased,
        preResumeReleased: t.preResumeReleased,
        inspected: t.inspected,
        observed: t.observed,
        run: t.run,
        committed: t.committed,
      })),
      bos: (v.bos as pb.BoStatus[]).map((b) => ({ id: b.id, label: b.label, kind: b.kind, active: b.active, mappers: b.mappers })),
      waitingFor: v.waitingFor,
      holdAt: v.holdAt,
      // daemons before the dump side: every session was a restore
      phase: v.phase || 'restore',
    })),
  };
}

/** Wraps a serialized request with its seal (see transport/seal.ts). */
export function encodeSealed(
  request: Uint8Array,
  s: { clientKey: Uint8Array; mac: Uint8Array; nonce: Uint8Array; sentNs: bigint },
): Uint8Array {
  return pb.Request.encode({ sealed: { request, clientKey: s.clientKey, mac: s.mac, nonce: s.nonce, sentNs: toLong(s.sentNs) } }).finish();
}
