/**
 * Plain data of the coordinator's functional core: what comes in (Input),
 * what the state is (CoordinatorState) and what should happen (Effect).
 * No I/O and no protobuf types here: adapters translate at the edge.
 */
import type { ActionName, GateName } from './actions';
import type { ErrorCode } from '../errors';

/** Opaque address of a waiting hook (a ZeroMQ routing id, hex). */
export type Peer = string;

export interface StageEvent {
  session: string;
  tree: string;
  action: ActionName;
  actionName: string;
  initPid: number;
  imageDir: string;
  host: string;
  hookPid: number;
  criuPid: number;
  monoNs: bigint;
  wallNs: bigint;
  attempt: number;
  expectedTrees: number;
  reason: string;
}

export type Input =
  /** A hook's (or the wrapper's) event; `peer` is where a verdict goes. */
  | { type: 'event'; event: StageEvent; peer: Peer | null; at: number }
  /** Explicit session opening. */
  | {
      type: 'open';
      session: string;
      expectedTrees: number;
      attempt: number;
      deadlineMs: number;
      peer: Peer | null;
      at: number;
    }
  /** The session deadline timer fired. */
  | { type: 'deadline'; session: string; attempt: number; at: number }
  /** A frame that could not be turned into an event (already answered by the codec). */
  | { type: 'rejected'; code: ErrorCode; reason: string; peer: Peer | null; at: number };

export type DecisionKind =
  | 'session-opened'
  | 'gate-opened'
  | 'tree-released'
  | 'session-aborted'
  | 'session-completed'
  | 'event-rejected';

export interface Decision {
  kind: DecisionKind;
  session: string;
  attempt: number;
  tree: string;
  action: ActionName | 'unknown';
  code: string;
  reason: string;
  /** Daemon wall clock of the decision, ms since the epoch. */
  at: number;
  /** gate-opened: first arrival to release, ms. */
  waitedMs: number;
  trees: string[];
}

export interface Verdict {
  session: string;
  tree: string;
  action: ActionName;
  attempt: number;
  proceed: boolean;
  code: string;
  reason: string;
}

export type Effect =
  | { type: 'reply'; peer: Peer; verdict: Verdict }
  | { type: 'publish-event'; event: StageEvent }
  | { type: 'publish-decision'; decision: Decision }
  | { type: 'schedule-deadline'; session: string; attempt: number; inMs: number }
  | { type: 'cancel-deadline'; session: string; attempt: number };

export interface GateState {
  /** tree -> daemon time of arrival (ms) */
  arrived: Map<string, number>;
  /** tree -> peer of the hook that waits for the verdict */
  waiting: Map<string, Peer>;
  openedAt: number | null;
}

export type SessionStatus = 'open' | 'released' | 'completed' | 'aborted';

export interface TreeState {
  name: string;
  lastAction: ActionName;
  initPid: number;
  host: string;
  imageDir: string;
  resumed: boolean;
}

export interface SessionState {
  session: string;
  attempt: number;
  expectedTrees: number;
  openedAt: number;
  deadlineMs: number;
  status: SessionStatus;
  closedAt: number | null;
  abort: { code: ErrorCode; reason: string } | null;
  trees: Map<string, TreeState>;
  gates: Record<GateName, GateState>;
}

export interface CoordinatorConfig {
  /** Session deadline when neither an explicit open nor the CLI sets one. */
  defaultDeadlineMs: number;
}

export interface CoordinatorState {
  config: CoordinatorConfig;
  sessions: Record<string, SessionState>;
}
