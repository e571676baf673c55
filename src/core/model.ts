/**
 * Plain data of the coordinator's functional core: what comes in (Input),
 * what the state is (CoordinatorState) and what should happen (Effect).
 * No I/O and no protobuf types here: adapters translate at the edge.
 */
import type { ActionName, GateName, HoldAt, Phase } from './actions';
import type { ErrorCode } from '../errors';

/** What kind of object a BO is (from the images: src/images/vma.ts; or declared in a manifest). */
export type BoKind = 'anon-shared' | 'memfd' | 'file' | 'sysv-shm' | 'manifest';

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
  /** a gated hook re-sending while it waits: not published again */
  resent?: boolean;
  /** a gated hook that re-sends every resendMs while it waits (liveness); 0 or absent: it does not */
  resendMs?: number;
  /** the criu run that sent it (one `criu restore` of one tree); empty from older clients (see runOf) */
  run?: string;
  /** pre-dump: the tree has a netns of its own, so criu will run network-lock for it */
  netLock?: boolean;
  /** a restore of a committed set: the set's commit id (every tree must name the same) */
  commit?: string;
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
      /** BOs the images do not show, declared by the user */
      manifest: MappingRef[];
      activator: Activator | '';
      /** arrival barrier; '' takes the daemon's default */
      holdAt?: HoldAt | '';
      peer: Peer | null;
      at: number;
    }
  /** A tree's images were read (inspect-tree): its shared mappings, or why not. */
  | { type: 'tree-images'; session: string; attempt: number; tree: string; mappings: MappingRef[] | null; error: string; at: number }
  /** The activator ran for a verified BO (activate-bo): ok when error is empty. */
  | { type: 'bo-activation'; session: string; attempt: number; bo: string; error: string; at: number }
  /** A restored tree's live mappings were observed (verify-tree), or why not. */
  | { type: 'tree-observed'; session: string; attempt: number; tree: string; observations: Observation[] | null; error: string; at: number }
  /** The session deadline timer fired. */
  | { type: 'deadline'; session: string; attempt: number; at: number }
  /** A waiting hook that promised to re-send has been silent for its whole lease. */
  | { type: 'hook-lost'; session: string; attempt: number; tree: string; gate: GateName; silentMs: number; at: number }
  /** The daemon stops and keeps no journal: every open session is lost, and its waiting hooks are told. */
  | { type: 'shutdown'; at: number }
  /** A frame that could not be turned into an event (already answered by the codec). */
  | { type: 'rejected'; code: ErrorCode; reason: string; peer: Peer | null; at: number };

/** One mapper of an activated BO, as published. */
export interface BoMapper {
  tree: string;
  /** pid in the checkpoint */
  pid: number;
  start: bigint;
  size: bigint;
}

interface DecisionBase {
  session: string;
  attempt: number;
  /** Daemon wall clock of the decision, ms since the epoch. */
  at: number;
}

/** What the coordinator decided, one shape per kind (published on the events endpoint). */
export type Decision = DecisionBase &
  (
    | { kind: 'session-opened'; /** what the session expects, in words */ reason: string }
    | { kind: 'gate-opened'; action: GateName; /** first arrival to release, ms */ waitedMs: number; trees: string[] }
    | { kind: 'tree-released'; tree: string; action: GateName }
    | { kind: 'session-aborted'; code: ErrorCode; reason: string; /** the trees that were waiting */ trees: string[] }
    | { kind: 'session-completed'; trees: string[] }
    | { kind: 'event-rejected'; tree: string; action: ActionName | 'unknown'; code: ErrorCode; reason: string }
    | { kind: 'tree-inspected'; tree: string; /** the BOs its images show */ bos: string[]; /** its shared mappings */ mappings: number }
    | { kind: 'bo-verified'; tree: string; bo: string }
    | { kind: 'bo-activated'; bo: string; label: string; trees: string[]; mappers: BoMapper[] }
  );

export type DecisionKind = Decision['kind'];

/** Every field any decision may have, those its kind lacks empty: a read-only view for logs and one-line displays. */
export type DecisionFields = DecisionBase & {
  kind: DecisionKind;
  tree: string;
  action: ActionName | 'unknown';
  code: ErrorCode | '';
  reason: string;
  waitedMs: number;
  trees: string[];
  bo: string;
  label: string;
  bos: string[];
  mappings: number;
  mappers: BoMapper[];
};
export const fieldsOf = (d: Decision): DecisionFields => ({
  tree: '',
  action: 'unknown',
  code: '',
  reason: '',
  waitedMs: 0,
  trees: [],
  bo: '',
  label: '',
  bos: [],
  mappings: 0,
  mappers: [],
  ...d,
});

/** "tree/pid@0xaddr+size" */
export const mapperText = (m: BoMapper): string => `${m.tree}/${m.pid}@0x${m.start.toString(16)}+${m.size}`;

/** Mappers from the comma-separated mapperText of older daemons (GateDecision.detail); unreadable ones are dropped. */
export function mappersFromText(text: string): BoMapper[] {
  return text.split(', ').flatMap((x) => {
    const m = /^(.{1,128})\/(\d{1,10})@0x([0-9a-f]{1,16})\+(\d{1,20})$/.exec(x);
    return m ? [{ tree: m[1]!, pid: Number(m[2]), start: BigInt(`0x${m[3]}`), size: BigInt(m[4]!) }] : [];
  });
}
/** The decision of one kind. */
export type DecisionOf<K extends DecisionKind> = Extract<Decision, { kind: K }>;

export interface Verdict {
  session: string;
  tree: string;
  action: ActionName;
  attempt: number;
  proceed: boolean;
  code: ErrorCode | '';
  reason: string;
  /** post-dump PROCEED (the commit): every tree of the committed set */
  members?: SetMember[];
}

/** One tree of a committed checkpoint set. */
export interface SetMember {
  tree: string;
  host: string;
  run: string;
}

export type Effect =
  | { type: 'reply'; peer: Peer; verdict: Verdict }
  | { type: 'publish-event'; event: StageEvent }
  | { type: 'publish-decision'; decision: Decision }
  | { type: 'schedule-deadline'; session: string; attempt: number; inMs: number }
  /** Read a tree's checkpoint and answer with a tree-images input. */
  | { type: 'inspect-tree'; session: string; attempt: number; tree: string; imageDir: string }
  /** Run the session's activator on a verified BO and answer with a bo-activation input. */
  | { type: 'activate-bo'; session: string; attempt: number; bo: string; label: string; activator: Activator; mappers: ActiveMapper[] }
  /** Observe a restored tree's live mappings and answer with a tree-observed input. */
  | { type: 'verify-tree'; session: string; attempt: number; tree: string; initPid: number; mappings: MappingRef[] }
  | { type: 'cancel-deadline'; session: string; attempt: number }
  /** (Re)start the liveness lease of a waiting hook; answered by a hook-lost input if it runs out. */
  | { type: 'schedule-lease'; session: string; attempt: number; tree: string; gate: GateName; inMs: number };

export interface GateState {
  /** tree -> daemon time of arrival (ms) */
  arrived: Map<string, number>;
  /** tree -> peer of the hook that waits for the verdict */
  waiting: Map<string, Peer>;
  /** trees this gate has answered PROCEED */
  released: Set<string>;
  /** tree -> lease (ms) of a waiting hook that re-sends (see StageEvent.resendMs) */
  leases: Map<string, number>;
  /** when the last tree was released */
  openedAt: number | null;
}

/**
 * How a session decides that a tree's BOs are live (see docs/design.md):
 * - verify: every mapping of every BO is checked against the images in the
 *   restored tasks; a verified BO is active, and a tree's post-restore is
 *   answered once every BO it maps is active;
 * - exec:<command>: verify, then run the command once per mapping (its exit
 *   status decides whether the BO is active);
 * - kfd: verify, then the AMD KFD CRIU RESUME operation for each task;
 * - none: no BO knowledge; post-restore waits for every tree of the session.
 */
export type Activator = 'verify' | 'none' | 'kfd' | `exec:${string}`;

/** One task's mapping of a shared object, from the images or a manifest. */
export interface MappingRef {
  /** the object's key: mappings with the same key are one BO when there are two or more */
  bo: string;
  kind: BoKind;
  label: string;
  tree: string;
  /** pid in the checkpoint */
  pid: number;
  start: bigint;
  size: bigint;
  prot: number;
  pgoff: bigint;
  /** serve --verify-pages: sampled pages as the checkpoint holds them (object offset → digest), where it holds them */
  imageSamples?: Record<string, string>;
}

/** A verified mapping handed to an activator: where it is in the checkpoint and on the host. */
export interface ActiveMapper {
  tree: string;
  pid: number;
  hostPid: number;
  start: bigint;
  size: bigint;
  prot: number;
}

/** What was found in a restored task for one MappingRef. */
export interface Observation {
  bo: string;
  tree: string;
  pid: number;
  start: bigint;
  /** why the live mapping does not match (empty when it does) */
  problem: string;
  /** the task's host pid (0 when it was not found) */
  hostPid: number;
  /** the backing object as "dev:inode" (from /proc/PID/map_files) */
  object: string;
  /** hash of sampled pages, by offset in the object */
  samples: Record<string, string>;
}

/** A restore ends released (then completed) or aborted; a dump committed or aborted. */
export type SessionStatus = 'open' | 'released' | 'completed' | 'committed' | 'aborted';

export interface TreeState {
  name: string;
  /** the run that owns this tree for the session's attempt (the first one seen) */
  run: string;
  lastAction: ActionName;
  initPid: number;
  host: string;
  imageDir: string;
  resumed: boolean;
  /** shared mappings from its images; null until read */
  mappings: MappingRef[] | null;
  inspecting: boolean;
  verifying: boolean;
  /** live observations at post-restore; null until observed */
  observations: Observation[] | null;
  /** a dump: the tree has its own netns (criu runs network-lock for it) */
  netLock?: boolean;
}

export interface SessionState {
  session: string;
  attempt: number;
  /** what the session coordinates: a dump (group commit) or a restore */
  phase: Phase;
  /** a restore of a committed set: the commit id its first tree named ('' when none) */
  commit?: string;
  expectedTrees: number;
  openedAt: number;
  deadlineMs: number;
  status: SessionStatus;
  closedAt: number | null;
  abort: { code: ErrorCode; reason: string } | null;
  trees: Map<string, TreeState>;
  gates: Record<GateName, GateState>;
  activator: Activator;
  /** 'pre-restore': no tree restores before every tree's criu has started */
  holdAt: HoldAt;
  manifest: MappingRef[];
  /** the BO graph of the mappings known so far; null until asked for after a change (core/bo-flow.ts bosOf) */
  bos: Map<string, MappingRef[]> | null;
  /** BO id -> when it was activated */
  activeBos: Map<string, number>;
  /** BOs verified and handed to the activator, not yet answered */
  activating: Set<string>;
}

export interface CoordinatorConfig {
  /** Session deadline when neither an explicit open nor the CLI sets one. */
  defaultDeadlineMs: number;
  /** Activator of sessions that do not choose one. */
  defaultActivator: Activator;
  /** Activators a client may choose besides verify, none and the default (exec:CMD by exact command). */
  allowedActivators?: Activator[];
  /** Arrival barrier of sessions that do not choose one (default none). */
  defaultHoldAt?: HoldAt;
  /** Sessions held at most, open and remembered (default 10,000): more are refused (E_LIMIT). */
  maxSessions?: number;
  /** How long a closed session is remembered (duplicates, retries); default 10 min. */
  retentionMs?: number;
}

export interface CoordinatorState {
  config: CoordinatorConfig;
  /** by session name: a Map, since names are chosen by clients ("__proto__" is a valid one) */
  sessions: Map<string, SessionState>;
  /** when ended sessions were last pruned (daemon ms) */
  prunedAt?: number;
}
