/**
 * Session lifecycle (pure): a new session, its opening, its abort, what it
 * may be asked, and how ended sessions are forgotten. Sessions are updated in
 * place (session-reducer.ts says who owns the state).
 */
import { GATES, type GateName, type HoldAt, type Phase } from './actions';
import type {
  Activator,
  CoordinatorConfig,
  CoordinatorState,
  Effect,
  GateState,
  Input,
  MappingRef,
  SessionState,
  StageEvent,
  TreeState,
} from './model';
import type { ErrorCode } from '../errors';
import { decision, publish, reply, verdict } from './messages';

export function initialState(config: CoordinatorConfig): CoordinatorState {
  return { config, sessions: new Map() };
}

/** The run of an event: its own, or for older clients one derived from the criu that sent it. */
export function runOf(ev: StageEvent): string {
  return ev.run || `legacy:${ev.host}:${ev.criuPid}`;
}

export function emptyGate(): GateState {
  return { arrived: new Map(), waiting: new Map(), released: new Set(), leases: new Map(), openedAt: null };
}

export function newSession(
  session: string,
  attempt: number,
  expectedTrees: number,
  deadlineMs: number,
  at: number,
  activator: Activator,
  holdAt: HoldAt,
  manifest: MappingRef[] = [],
  phase: Phase = 'restore',
): SessionState {
  return {
    session,
    attempt,
    phase,
    expectedTrees,
    openedAt: at,
    deadlineMs,
    status: 'open',
    closedAt: null,
    abort: null,
    trees: new Map(),
    gates: {
      'pre-restore': emptyGate(),
      'post-restore': emptyGate(),
      'pre-resume': emptyGate(),
      'pre-dump': emptyGate(),
      'network-lock': emptyGate(),
      'post-dump': emptyGate(),
    },
    activator,
    holdAt,
    manifest,
    bos: null,
    activeBos: new Map(),
    activating: new Set(),
  };
}

/** Sessions closed this long ago are forgotten (a daemon runs for months). */
export const DEFAULT_RETENTION_MS = 10 * 60 * 1000;

/** How often pruning looks at every session: at most once a second, so a flood of new sessions costs O(1) each. */
export const PRUNE_INTERVAL_MS = 1000;
/** Sessions one coordinator holds at most (open, and ended ones still remembered). */
export const DEFAULT_MAX_SESSIONS = 10_000;

/**
 * Drops sessions that ended more than the retention period before `at`:
 * at most once per PRUNE_INTERVAL_MS unless `force`d.
 */
export function prune(state: CoordinatorState, at: number, force = false): CoordinatorState {
  const retention = state.config.retentionMs ?? DEFAULT_RETENTION_MS;
  const since = state.prunedAt === undefined ? Infinity : at - state.prunedAt;
  if (!force && since >= 0 && since < Math.min(PRUNE_INTERVAL_MS, retention / 10)) return state;
  const limit = at - retention;
  const old = [...state.sessions.values()].filter((s) => s.status !== 'open' && s.closedAt !== null && s.closedAt < limit);
  for (const s of old) state.sessions.delete(s.session);
  state.prunedAt = at;
  return state;
}

/** Makes room for session `name` (new): prunes, and says why not when the coordinator is full. */
export function admit(state: CoordinatorState, name: string, at: number): string | null {
  const max = state.config.maxSessions ?? DEFAULT_MAX_SESSIONS;
  prune(state, at);
  if (state.sessions.has(name) || state.sessions.size < max) return null;
  prune(state, at, true);
  if (state.sessions.size < max) return null;
  return `the coordinator already holds ${state.sessions.size} sessions, its limit (serve --max-sessions): session ${name} is refused; retry once sessions have ended`;
}

export function opened(s: SessionState, at: number): Effect[] {
  return [
    publish(
      decision('session-opened', s, at, {
        reason: `${s.phase === 'dump' ? 'dump: ' : ''}expecting ${s.expectedTrees} tree(s), deadline ${s.deadlineMs} ms, activator ${s.activator}${s.holdAt === 'pre-restore' ? ', arrival barrier at pre-restore' : ''}${s.manifest.length ? `, ${new Set(s.manifest.map((m) => m.bo)).size} BO(s) from a manifest` : ''}`,
      }),
    ),
    { type: 'schedule-deadline', session: s.session, attempt: s.attempt, inMs: s.deadlineMs },
  ];
}

/** Aborts `s` (a draft): answers every waiting hook and publishes why. */
export function abortSession(s: SessionState, code: ErrorCode, reason: string, at: number): Effect[] {
  if (s.status === 'aborted') return [];
  const effects: Effect[] = [];
  const concerned = new Set<string>();
  for (const gate of GATES) {
    const g = s.gates[gate];
    for (const [tree, peer] of g.waiting) {
      concerned.add(tree);
      effects.push(...reply(peer, verdict({ session: s.session, tree, action: gate, attempt: s.attempt }, false, code, reason)));
    }
    g.waiting = new Map();
    g.leases = new Map();
  }
  s.status = 'aborted';
  s.closedAt = at;
  s.abort = { code, reason };
  return [
    ...effects,
    publish(decision('session-aborted', s, at, { code, reason, trees: [...concerned].sort() })),
    { type: 'cancel-deadline', session: s.session, attempt: s.attempt },
  ];
}

/** Trees that have not reached `gate` yet (known or not yet seen). */
export function missingAt(s: SessionState, gate: GateName): string[] {
  const known = [...s.trees.values()].filter((t) => needs(s, gate, t.name) && !s.gates[gate].arrived.has(t.name)).map((t) => t.name);
  const unseen = s.expectedTrees - s.trees.size;
  return unseen > 0 ? [...known.sort(), `${unseen} tree(s) not seen yet`] : known.sort();
}

export const defaultHoldAt = (c: CoordinatorConfig): HoldAt => c.defaultHoldAt ?? 'none';

/**
 * Whether a client may choose `a` for its session: verify and none only
 * weaken or keep checks on its own session; exec and kfd act with the
 * daemon's privileges (running commands, ioctls on other processes), so only
 * what the operator started the daemon with, or allowed by name.
 */
export function activatorAllowed(c: CoordinatorConfig, a: Activator): boolean {
  return a === 'verify' || a === 'none' || a === c.defaultActivator || (c.allowedActivators ?? []).includes(a);
}

export const manifestKey = (ms: MappingRef[]) => ms.map((m) => `${m.bo}|${m.tree}|${m.pid}|${m.start}|${m.size}|${m.prot}`).join(',');

/** What a repeated open of the same attempt asks differently, in words; '' when nothing. */
export function openDiffers(s: SessionState, o: Extract<Input, { type: 'open' }>): string {
  if (s.attempt !== o.attempt || s.expectedTrees !== o.expectedTrees) return `attempt ${s.attempt} with ${s.expectedTrees} tree(s)`;
  if (o.activator && o.activator !== s.activator) return `activator ${s.activator}`;
  if (o.deadlineMs > 0 && o.deadlineMs !== s.deadlineMs) return `a deadline of ${s.deadlineMs} ms`;
  if (o.holdAt && o.holdAt !== s.holdAt) return `hold-at ${s.holdAt}`;
  if (manifestKey(o.manifest) !== manifestKey(s.manifest)) return 'another manifest';
  return '';
}

/**
 * Whether a tree's root pid or images directory is already claimed by a tree
 * of another live session on the same host: a session whose activator reads
 * or acts on them (all but none) must never borrow another job's.
 */
export function borrowed(state: CoordinatorState, s: SessionState, ev: StageEvent, prev: TreeState | undefined): string | null {
  if (s.activator === 'none') return null;
  const pid = prev?.initPid ? 0 : ev.initPid;
  const dir = prev?.imageDir || ev.action === 'post-resume' ? '' : ev.imageDir;
  if (!pid && !dir) return null;
  for (const o of state.sessions.values()) {
    if (o.session === s.session || o.activator === 'none' || (o.status !== 'open' && o.status !== 'released')) continue;
    for (const t of o.trees.values()) {
      if (t.host !== ev.host) continue;
      if (pid && t.initPid === pid) return `pid ${pid} on ${ev.host} is the root of tree ${t.name} of session ${o.session}`;
      if (dir && t.imageDir === dir) return `images ${dir} on ${ev.host} are those of tree ${t.name} of session ${o.session}`;
    }
  }
  return null;
}

/**
 * Whether `gate` holds trees in `s`: only the gates of its phase; pre-restore
 * only with an arrival barrier; network-lock only in a dump with a tree of its
 * own netns.
 */
export const holds = (s: SessionState, gate: GateName): boolean =>
  s.phase === 'dump'
    ? gate === 'pre-dump' || gate === 'post-dump' || (gate === 'network-lock' && [...s.trees.values()].some((t) => t.netLock))
    : gate === 'post-restore' || gate === 'pre-resume' || (gate === 'pre-restore' && s.holdAt === 'pre-restore');

/** Whether `tree` must pass `gate` before the gate opens (network-lock: only the trees with their own netns). */
export const needs = (s: SessionState, gate: GateName, tree: string): boolean =>
  gate !== 'network-lock' || s.trees.get(tree)?.netLock === true;
