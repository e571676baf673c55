/**
 * The coordinator's pure reducer: (state, input) -> [state, effects].
 *
 * Rules (docs/design.md explains why):
 * - A session is opened by an explicit `open` or by its first event, which
 *   fixes the expected tree count and the attempt.
 * - post-restore gate: a tree's post-restore is answered once every expected
 *   tree has reached post-restore. Resume barrier: the same for pre-resume;
 *   all waiting hooks are released together.
 * - Deadline, a failed tree (restore-failed), or a contradictory event abort
 *   the session: every waiting hook gets ABORT now, every later gated event
 *   of that attempt gets ABORT too.
 * - A waiting hook that re-sends (resendMs > 0) holds a lease of
 *   LEASE_PERIODS re-send periods, renewed by each re-send; one silent for a
 *   whole lease is lost (killed, or its host gone): the session aborts, since
 *   its tree can no longer be released or killed by its hook.
 * - Every event names its run (one `criu restore` of one tree). The first run
 *   seen for a tree owns it for the session's attempt; another run for that
 *   tree is refused (E_RUN_CONFLICT) and never gets PROCEED.
 * - A session that has ended (released, completed, aborted) is history: no
 *   event changes its outcome; a run it does not know is refused
 *   (E_SESSION_CLOSED), a run it knows gets the answer it had.
 * - Arrival barrier (holdAt pre-restore): no tree's pre-restore is answered
 *   before every tree has reached pre-restore; without it pre-restore is
 *   answered at once.
 * - Duplicates are idempotent: a hook that re-sends a gated event after its
 *   gate opened gets the same PROCEED; while waiting, the newest peer waits.
 * - A newer attempt supersedes an open older one (which is aborted); events of
 *   older attempts are answered ABORT (E_STALE_ATTEMPT).
 * The state passed in is never mutated.
 */
import { GATES, isGate, type GateName, type HoldAt } from './actions';
import type {
  Activator,
  MappingRef,
  Observation,
  CoordinatorConfig,
  CoordinatorState,
  Decision,
  Effect,
  GateState,
  Input,
  Peer,
  SessionState,
  StageEvent,
  TreeState,
  Verdict,
} from './model';
import { ErrorCodes, type ErrorCode } from '../errors';
import { validateEvent, validateOpen } from './validate';
import { crossTree, groupBos } from './bo-graph';
import { compareBo, mapperKey } from './verify';

export function initialState(config: CoordinatorConfig): CoordinatorState {
  return { config, sessions: new Map() };
}

type Result = [CoordinatorState, Effect[]];

/** Pure: never changes `state`; copies what an input touches (O(size of that session)). */
export function reduce(state: CoordinatorState, input: Input): Result {
  return step(state, input, false);
}

/**
 * Same rules, but updates `state` in place (O(1) per event). Only for an
 * owner that never shares its state, such as the pipeline's scan: a
 * 1,024-tree session would otherwise copy its trees on every event.
 */
export function reduceInPlace(state: CoordinatorState, input: Input): Result {
  return step(state, input, true);
}

function step(state: CoordinatorState, input: Input, own: boolean): Result {
  switch (input.type) {
    case 'event':
      return onEvent(state, input.event, input.peer, input.at, own);
    case 'open':
      return onOpen(state, input, own);
    case 'deadline':
      return onDeadline(state, input.session, input.attempt, input.at, own);
    case 'hook-lost':
      return onHookLost(state, input, own);
    case 'tree-images':
    case 'tree-observed':
      return onTreeResult(state, input, own);
    case 'bo-activation':
      return onActivation(state, input, own);
    case 'shutdown':
      return onShutdown(state, input.at, own);
    case 'rejected':
      return [
        state,
        [
          publish(
            decision('event-rejected', { session: '', attempt: 0 }, input.at, {
              code: input.code,
              reason: input.reason,
            }),
          ),
        ],
      ];
  }
}

// ---------------------------------------------------------------- helpers

function decision(kind: Decision['kind'], s: { session: string; attempt: number }, at: number, extra: Partial<Decision> = {}): Decision {
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

const publish = (d: Decision): Effect => ({ type: 'publish-decision', decision: d });

function verdict(
  ev: { session: string; tree: string; action: Verdict['action']; attempt: number },
  proceed: boolean,
  code: Verdict['code'] = '',
  reason = '',
): Verdict {
  return { session: ev.session, tree: ev.tree, action: ev.action, attempt: ev.attempt, proceed, code, reason };
}

function reply(peer: Peer | null, v: Verdict): Effect[] {
  return peer === null ? [] : [{ type: 'reply', peer, verdict: v }];
}

/** The run of an event: its own, or for older clients one derived from the criu that sent it. */
export function runOf(ev: StageEvent): string {
  return ev.run || `legacy:${ev.host}:${ev.criuPid}`;
}

function emptyGate(): GateState {
  return { arrived: new Map(), waiting: new Map(), released: new Set(), leases: new Map(), openedAt: null };
}

function newSession(
  session: string,
  attempt: number,
  expectedTrees: number,
  deadlineMs: number,
  at: number,
  activator: Activator,
  holdAt: HoldAt,
  manifest: MappingRef[] = [],
): SessionState {
  return {
    session,
    attempt,
    expectedTrees,
    openedAt: at,
    deadlineMs,
    status: 'open',
    closedAt: null,
    abort: null,
    trees: new Map(),
    gates: { 'pre-restore': emptyGate(), 'post-restore': emptyGate(), 'pre-resume': emptyGate() },
    activator,
    holdAt,
    manifest,
    activeBos: new Map(),
    activating: new Set(),
  };
}

/** A session whose nested records may be changed freely: a copy unless owned. */
function draft(s: SessionState, own: boolean): SessionState {
  if (own) return s;
  return {
    ...s,
    trees: new Map([...s.trees].map(([k, t]) => [k, { ...t }])),
    activeBos: new Map(s.activeBos),
    activating: new Set(s.activating),
    gates: {
      'pre-restore': copyGate(s.gates['pre-restore']),
      'post-restore': copyGate(s.gates['post-restore']),
      'pre-resume': copyGate(s.gates['pre-resume']),
    },
  };
}

function copyGate(g: GateState): GateState {
  return {
    arrived: new Map(g.arrived),
    waiting: new Map(g.waiting),
    released: new Set(g.released),
    leases: new Map(g.leases),
    openedAt: g.openedAt,
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
export function prune(state: CoordinatorState, at: number, own: boolean, force = false): CoordinatorState {
  const retention = state.config.retentionMs ?? DEFAULT_RETENTION_MS;
  const since = state.prunedAt === undefined ? Infinity : at - state.prunedAt;
  if (!force && since >= 0 && since < Math.min(PRUNE_INTERVAL_MS, retention / 10)) return state;
  const limit = at - retention;
  const old = [...state.sessions.values()].filter((s) => s.status !== 'open' && s.closedAt !== null && s.closedAt < limit);
  const sessions = own || old.length === 0 ? state.sessions : new Map(state.sessions);
  for (const s of old) sessions.delete(s.session);
  if (own) {
    state.prunedAt = at;
    return state;
  }
  return { ...state, sessions, prunedAt: at };
}

/** Makes room for session `name` (new): prunes, and says why not when the coordinator is full. */
function admit(state: CoordinatorState, name: string, at: number, own: boolean): { next: CoordinatorState; full: string | null } {
  const max = state.config.maxSessions ?? DEFAULT_MAX_SESSIONS;
  let next = prune(state, at, own);
  if (next.sessions.has(name) || next.sessions.size < max) return { next, full: null };
  next = prune(next, at, own, true);
  if (next.sessions.size < max) return { next, full: null };
  return {
    next,
    full: `the coordinator already holds ${next.sessions.size} sessions, its limit (serve --max-sessions): session ${name} is refused; retry once sessions have ended`,
  };
}

function withSession(state: CoordinatorState, s: SessionState, own: boolean): CoordinatorState {
  if (own) {
    state.sessions.set(s.session, s);
    return state;
  }
  return { ...state, sessions: new Map(state.sessions).set(s.session, s) };
}

function opened(s: SessionState, at: number): Effect[] {
  return [
    publish(
      decision('session-opened', s, at, {
        reason: `expecting ${s.expectedTrees} tree(s), deadline ${s.deadlineMs} ms, activator ${s.activator}${s.holdAt === 'pre-restore' ? ', arrival barrier at pre-restore' : ''}${s.manifest.length ? `, ${new Set(s.manifest.map((m) => m.bo)).size} BO(s) from a manifest` : ''}`,
      }),
    ),
    { type: 'schedule-deadline', session: s.session, attempt: s.attempt, inMs: s.deadlineMs },
  ];
}

/** Aborts `s` (a draft): answers every waiting hook and publishes why. */
function abortSession(s: SessionState, code: ErrorCode, reason: string, at: number): Effect[] {
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
function missingAt(s: SessionState, gate: GateName): string[] {
  const known = [...s.trees.keys()].filter((t) => !s.gates[gate].arrived.has(t));
  const unseen = s.expectedTrees - s.trees.size;
  return unseen > 0 ? [...known.sort(), `${unseen} tree(s) not seen yet`] : known.sort();
}

// ---------------------------------------------------------------- inputs

/** The address of the answer to an open (no tree, no action). */
const openAck = (session: string, attempt: number) => ({ session, tree: '', action: 'unknown' as const, attempt });

/** Refuses an open request: its sender is answered ABORT and the refusal is published. */
function refuseOpen(input: { session: string; attempt: number; peer: Peer | null; at: number }, code: ErrorCode, reason: string): Effect[] {
  const ack = openAck(input.session, input.attempt);
  return [...reply(input.peer, verdict(ack, false, code, reason)), publish(decision('event-rejected', ack, input.at, { code, reason }))];
}

function onOpen(state: CoordinatorState, input: Extract<Input, { type: 'open' }>, own: boolean): Result {
  const ack = openAck(input.session, input.attempt);
  const invalid = validateOpen(input);
  if (invalid) return [state, refuseOpen(input, ErrorCodes.BAD_EVENT, invalid)];
  if (input.activator && !activatorAllowed(state.config, input.activator)) {
    const reason = `activator ${input.activator.slice(0, 200)} is not allowed by this coordinator: clients may choose verify or none, and what the operator allows (serve --allow-activator)`;
    return [state, refuseOpen(input, ErrorCodes.FORBIDDEN, reason)];
  }
  const existing = state.sessions.get(input.session);
  if (existing && existing.attempt >= input.attempt) {
    const differs = openDiffers(existing, input);
    const reason = differs ? `session ${input.session} is already open as attempt ${existing.attempt} with ${differs}` : '';
    return [state, reply(input.peer, verdict(ack, !differs, differs ? ErrorCodes.CONTRADICTION : '', reason))];
  }
  const room = admit(state, input.session, input.at, own);
  if (room.full) return [room.next, refuseOpen(input, ErrorCodes.LIMIT, room.full)];
  let effects: Effect[] = [];
  let next = room.next;
  if (existing && existing.status === 'open') {
    const old = draft(existing, own);
    effects = abortSession(old, ErrorCodes.SUPERSEDED, `superseded by attempt ${input.attempt}`, input.at);
  }
  const deadlineMs = input.deadlineMs > 0 ? input.deadlineMs : state.config.defaultDeadlineMs;
  const activator = input.activator || state.config.defaultActivator;
  const holdAt = input.holdAt || defaultHoldAt(state.config);
  const s = newSession(input.session, input.attempt, input.expectedTrees, deadlineMs, input.at, activator, holdAt, input.manifest);
  next = withSession(next, s, own);
  return [next, [...effects, ...opened(s, input.at), ...reply(input.peer, verdict(ack, true))]];
}

const defaultHoldAt = (c: CoordinatorConfig): HoldAt => c.defaultHoldAt ?? 'none';

/**
 * Whether a client may choose `a` for its session: verify and none only
 * weaken or keep checks on its own session; exec and kfd act with the
 * daemon's privileges (running commands, ioctls on other processes), so only
 * what the operator started the daemon with, or allowed by name.
 */
function activatorAllowed(c: CoordinatorConfig, a: Activator): boolean {
  return a === 'verify' || a === 'none' || a === c.defaultActivator || (c.allowedActivators ?? []).includes(a);
}

const manifestKey = (ms: MappingRef[]) => ms.map((m) => `${m.bo}|${m.tree}|${m.pid}|${m.start}|${m.size}|${m.prot}`).join(',');

/** What a repeated open of the same attempt asks differently, in words; '' when nothing. */
function openDiffers(s: SessionState, o: Extract<Input, { type: 'open' }>): string {
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
function borrowed(state: CoordinatorState, s: SessionState, ev: StageEvent, prev: TreeState | undefined): string | null {
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

/** Whether `gate` holds trees in `s` (pre-restore only with an arrival barrier). */
const holds = (s: SessionState, gate: GateName) => gate !== 'pre-restore' || s.holdAt === 'pre-restore';

function onShutdown(state: CoordinatorState, at: number, own: boolean): Result {
  let next = state;
  const effects: Effect[] = [];
  for (const current of [...state.sessions.values()].filter((s) => s.status === 'open')) {
    const s = draft(current, own);
    next = withSession(next, s, own);
    const reason = `the coordinator shut down and keeps no journal: session ${s.session} attempt ${s.attempt} is lost; restore the job again with --attempt ${s.attempt + 1}`;
    effects.push(...abortSession(s, ErrorCodes.SHUTDOWN, reason, at));
  }
  return [next, effects];
}

function onDeadline(state: CoordinatorState, session: string, attempt: number, at: number, own: boolean): Result {
  const current = state.sessions.get(session);
  if (!current || current.attempt !== attempt || current.status !== 'open') return [state, []];
  const s = draft(current, own);
  const gate = GATES.find((g) => holds(s, g) && s.gates[g].released.size < s.expectedTrees) ?? 'pre-resume';
  const missing = missingAt(s, gate);
  const pendingBos = [...groupBos(allMappings(s)).keys()].filter((id) => !s.activeBos.has(id));
  const reason =
    `deadline of ${s.deadlineMs} ms passed at the ${gate} gate; ` +
    (missing.length ? `still missing: ${missing.join(', ')}` : `BOs not yet active: ${pendingBos.sort().join(', ') || 'none'}`);
  return [withSession(state, s, own), abortSession(s, ErrorCodes.DEADLINE, reason, at)];
}

function onEvent(state: CoordinatorState, ev: StageEvent, peer: Peer | null, at: number, own: boolean): Result {
  const gated = isGate(ev.action);
  const invalid = validateEvent(ev);
  if (invalid) {
    return [
      state,
      [
        ...(gated ? reply(peer, verdict(ev, false, ErrorCodes.BAD_EVENT, invalid)) : []),
        publish(
          decision('event-rejected', ev, at, {
            tree: ev.tree,
            action: ev.action,
            code: ErrorCodes.BAD_EVENT,
            reason: invalid,
          }),
        ),
      ],
    ];
  }

  const effects: Effect[] = ev.resent ? [] : [{ type: 'publish-event', event: ev }];
  let current = state.sessions.get(ev.session);
  let next = state;

  if (current && ev.attempt < current.attempt) {
    const reason = `event of attempt ${ev.attempt} but session ${ev.session} is at attempt ${current.attempt}`;
    return [next, [...effects, ...reject(ev, peer, gated, ErrorCodes.STALE_ATTEMPT, reason, at)]];
  }
  if (!current || ev.attempt > current.attempt) {
    const room = admit(state, ev.session, at, own);
    if (room.full) return [room.next, [...effects, ...reject(ev, peer, gated, ErrorCodes.LIMIT, room.full, at)]];
    next = room.next;
    if (current && current.status === 'open') {
      const old = draft(current, own);
      effects.push(...abortSession(old, ErrorCodes.SUPERSEDED, `superseded by attempt ${ev.attempt}`, at));
    }
    current = newSession(
      ev.session,
      ev.attempt,
      ev.expectedTrees,
      state.config.defaultDeadlineMs,
      at,
      state.config.defaultActivator,
      defaultHoldAt(state.config),
    );
    effects.push(...opened(current, at));
  }

  const run = runOf(ev);
  const prev = current.trees.get(ev.tree);
  const known = prev !== undefined && prev.run === run;
  if (
    current.status === 'completed' ||
    current.status === 'aborted' ||
    (current.status === 'released' && (!known || ev.expectedTrees !== current.expectedTrees))
  ) {
    // history: answered, never applied
    return [next, [...effects, ...answerEnded(current, ev, peer, gated, known, at)]];
  }
  if (prev && !known) {
    const reason =
      `tree ${ev.tree} of session ${current.session} attempt ${current.attempt} is already being restored by run ${prev.run}; ` +
      `this run (${run}) is refused: a tree is restored once per attempt. To restore the job again, restore every tree with --attempt ${current.attempt + 1}, or use a new session name`;
    return [next, [...effects, ...reject(ev, peer, gated, ErrorCodes.RUN_CONFLICT, reason, at)]];
  }
  const s = draft(current, own);
  next = withSession(next, s, own);

  if (ev.expectedTrees !== s.expectedTrees) {
    const reason = `tree ${ev.tree} expects ${ev.expectedTrees} tree(s) but session ${s.session} expects ${s.expectedTrees}`;
    effects.push(...abortSession(s, ErrorCodes.CONTRADICTION, reason, at));
    effects.push(...(gated ? reply(peer, verdict(ev, false, ErrorCodes.CONTRADICTION, reason)) : []));
    return [next, effects];
  }

  if (prev?.initPid && ev.initPid && ev.initPid !== prev.initPid) {
    const reason = `tree ${ev.tree} was restored as root pid ${prev.initPid}; its run now names pid ${ev.initPid}`;
    return [next, [...effects, ...reject(ev, peer, gated, ErrorCodes.CONTRADICTION, reason, at)]];
  }
  const claimed = borrowed(state, s, ev, prev);
  if (claimed) {
    const reason = `tree ${ev.tree} of session ${s.session} is refused: ${claimed}`;
    return [next, [...effects, ...reject(ev, peer, gated, ErrorCodes.FORBIDDEN, reason, at)]];
  }
  if (!prev && s.trees.size >= s.expectedTrees) {
    const reason = `session ${s.session} already has its ${s.expectedTrees} tree(s) (${[...s.trees.keys()].sort().join(', ')}); tree ${ev.tree} does not belong to it`;
    return [next, [...effects, ...reject(ev, peer, gated, ErrorCodes.TOO_MANY_TREES, reason, at)]];
  }
  s.trees.set(ev.tree, {
    name: ev.tree,
    run,
    lastAction: ev.action,
    initPid: prev?.initPid || ev.initPid || 0,
    host: ev.host,
    // the first directory a run names sticks (at post-resume the hook can only name criu's cwd)
    imageDir: prev?.imageDir || ev.imageDir || '',
    resumed: (prev?.resumed ?? false) || ev.action === 'post-resume',
    mappings: prev?.mappings ?? null,
    inspecting: prev?.inspecting ?? false,
    verifying: prev?.verifying ?? false,
    observations: prev?.observations ?? null,
  });

  if (ev.action === 'restore-failed') {
    const reason = `tree ${ev.tree} failed to restore: ${ev.reason || 'no reason given'}`;
    const released = s.gates['pre-resume'].openedAt !== null;
    if (released) return [next, effects]; // too late to abort: every tree already runs
    effects.push(...abortSession(s, ErrorCodes.TREE_FAILED, reason, at));
    return [next, effects];
  }

  effects.push(...inspect(s, ev.tree));
  if (ev.action === 'pre-restore' && !holds(s, 'pre-restore')) {
    effects.push(...reply(peer, verdict(ev, true))); // no arrival barrier: go on at once
    return [next, effects];
  }
  if (gated) {
    effects.push(...arriveAtGate(s, ev, peer, at));
    return [next, effects];
  }

  if (ev.action === 'post-resume' && s.status === 'released') {
    if ([...s.trees.values()].every((t) => t.resumed)) {
      s.status = 'completed';
      s.closedAt = at;
      effects.push(publish(decision('session-completed', s, at, { trees: [...s.trees.keys()].sort() })));
    }
  }
  return [next, effects];
}

/**
 * An event for a session that has ended: it changes nothing. A run the session
 * knows gets the answer it had (a re-send after release: PROCEED again; after
 * an abort: the abort); any other run is told to start a new attempt.
 */
function answerEnded(s: SessionState, ev: StageEvent, peer: Peer | null, gated: boolean, known: boolean, at: number): Effect[] {
  if (known && s.abort) return reject(ev, peer, gated, s.abort.code, s.abort.reason, at);
  if (known && gated && s.gates[ev.action as GateName].released.has(ev.tree) && ev.expectedTrees === s.expectedTrees) {
    return reply(peer, verdict(ev, true)); // a duplicate after its release: the same answer
  }
  const ended =
    s.status === 'aborted' ? `was aborted [${s.abort?.code ?? ''}]` : s.status === 'completed' ? 'has completed' : 'has released its trees';
  const reason = known
    ? `session ${s.session} attempt ${s.attempt} ${ended}: this ${ev.action} event changes nothing`
    : `session ${s.session} attempt ${s.attempt} ${ended} and takes no new restore run (tree ${ev.tree}, run ${runOf(ev)}); ` +
      `to restore the job again, restore every tree with --attempt ${s.attempt + 1}, or use a new session name`;
  return reject(ev, peer, gated, ErrorCodes.SESSION_CLOSED, reason, at);
}

function reject(ev: StageEvent, peer: Peer | null, gated: boolean, code: ErrorCode, reason: string, at: number): Effect[] {
  return [
    ...(gated ? reply(peer, verdict(ev, false, code, reason)) : []),
    publish(decision('event-rejected', ev, at, { tree: ev.tree, action: ev.action, code, reason })),
  ];
}

function arriveAtGate(s: SessionState, ev: StageEvent, peer: Peer | null, at: number): Effect[] {
  const gate = ev.action as GateName;
  const g = s.gates[gate];
  if (g.released.has(ev.tree)) {
    return reply(peer, verdict(ev, true)); // duplicate after release: same answer
  }
  const before = gate === 'pre-resume' ? 'post-restore' : gate === 'post-restore' && holds(s, 'pre-restore') ? 'pre-restore' : null;
  if (before && !s.gates[before].released.has(ev.tree)) {
    const reason = `tree ${ev.tree} reached ${gate} before its ${before} was answered`;
    return [...abortSession(s, ErrorCodes.CONTRADICTION, reason, at), ...reply(peer, verdict(ev, false, ErrorCodes.CONTRADICTION, reason))];
  }
  if (!g.arrived.has(ev.tree)) g.arrived.set(ev.tree, at);
  if (peer !== null) g.waiting.set(ev.tree, peer);
  const effects = [...(gate === 'post-restore' ? verifyTree(s, ev.tree) : []), ...release(s, gate, at)];
  if (g.waiting.has(ev.tree) && ev.resendMs) {
    const inMs = LEASE_PERIODS * ev.resendMs;
    g.leases.set(ev.tree, inMs);
    effects.push({ type: 'schedule-lease', session: s.session, attempt: s.attempt, tree: ev.tree, gate, inMs });
  }
  return effects;
}

/** Re-send periods a waiting hook may miss before it counts as lost. */
export const LEASE_PERIODS = 3;

function onHookLost(state: CoordinatorState, input: Extract<Input, { type: 'hook-lost' }>, own: boolean): Result {
  const current = state.sessions.get(input.session);
  if (!current || current.attempt !== input.attempt || current.status !== 'open') return [state, []];
  if (!current.gates[input.gate].waiting.has(input.tree)) return [state, []]; // answered meanwhile
  const s = draft(current, own);
  const reason =
    `the hook of tree ${input.tree} went silent while it waited at ${input.gate} ` +
    `(no re-send for ${input.silentMs} ms: killed, or its host unreachable)`;
  return [withSession(state, s, own), abortSession(s, ErrorCodes.HOOK_LOST, reason, input.at)];
}

/** Every mapping the session knows: from the trees' images and the manifest. */
function allMappings(s: SessionState): MappingRef[] {
  const out: MappingRef[] = [...s.manifest];
  for (const t of s.trees.values()) if (t.mappings) out.push(...t.mappings);
  return out;
}

/** Whether every expected tree's images have been read (the BO graph is complete). */
function allInspected(s: SessionState): boolean {
  if (s.trees.size < s.expectedTrees) return false;
  for (const t of s.trees.values()) if (!t.mappings) return false;
  return true;
}

/** Trees that may be released at `gate` now (see the rules at the top). */
function releasableTrees(s: SessionState, gate: GateName): string[] {
  const g = s.gates[gate];
  const pending = [...g.arrived.keys()].filter((t) => !g.released.has(t));
  if (gate !== 'post-restore' || s.activator === 'none') {
    return g.arrived.size >= s.expectedTrees ? pending : [];
  }
  if (pending.length === 0) return [];
  const mappings = allMappings(s);
  const bos = groupBos(mappings);
  const complete = allInspected(s);
  return pending.filter((tree) => {
    if (!s.trees.get(tree)?.observations) return false;
    const mine = mappings.filter((m) => m.tree === tree);
    if (!complete && mine.some((m) => crossTree(m.kind))) return false;
    for (const [id, ms] of bos) if (!s.activeBos.has(id) && ms.some((m) => m.tree === tree)) return false;
    return true;
  });
}

/** Answers every tree that may pass `gate` now; opens the gate when the last one passes. */
function release(s: SessionState, gate: GateName, at: number): Effect[] {
  if (s.status !== 'open') return [];
  const g = s.gates[gate];
  const ready = releasableTrees(s, gate).sort();
  if (ready.length === 0) return [];
  const effects: Effect[] = [];
  for (const tree of ready) {
    g.released.add(tree);
    const p = g.waiting.get(tree) ?? null;
    g.waiting.delete(tree);
    g.leases.delete(tree);
    effects.push(...reply(p, verdict({ session: s.session, tree, action: gate, attempt: s.attempt }, true)));
  }
  if (g.released.size >= s.expectedTrees) {
    g.openedAt = at;
    let first = at;
    for (const t of g.arrived.values()) first = Math.min(first, t);
    effects.push(publish(decision('gate-opened', s, at, { action: gate, waitedMs: at - first, trees: [...g.arrived.keys()].sort() })));
  }
  for (const tree of ready) effects.push(publish(decision('tree-released', s, at, { tree, action: gate })));
  if (gate === 'pre-resume' && g.openedAt !== null) {
    s.status = 'released';
    s.closedAt = at;
    effects.push({ type: 'cancel-deadline', session: s.session, attempt: s.attempt });
  }
  return effects;
}

/** verify: asks for a tree's images the first time its image directory is known. */
function inspect(s: SessionState, tree: string): Effect[] {
  const t = s.trees.get(tree);
  if (s.activator === 'none' || !t || t.mappings || t.inspecting || !t.imageDir || s.status !== 'open') return [];
  t.inspecting = true;
  return [{ type: 'inspect-tree', session: s.session, attempt: s.attempt, tree, imageDir: t.imageDir }];
}

/** verify: asks to observe a tree at post-restore once its images are known. */
function verifyTree(s: SessionState, tree: string): Effect[] {
  const t = s.trees.get(tree);
  if (s.activator === 'none' || !t?.mappings || t.verifying || t.observations || s.status !== 'open') return [];
  if (!s.gates['post-restore'].arrived.has(tree)) return [];
  t.verifying = true;
  const mappings = [...t.mappings, ...s.manifest.filter((m) => m.tree === tree)];
  return [{ type: 'verify-tree', session: s.session, attempt: s.attempt, tree, initPid: t.initPid, mappings }];
}

/** Activates every BO whose mappers are all observed and consistent; aborts on the first inconsistency. */
function activateBos(s: SessionState, at: number): Effect[] {
  const effects: Effect[] = [];
  const complete = allInspected(s);
  const observations = new Map<string, Observation>();
  for (const t of s.trees.values()) for (const o of t.observations ?? []) observations.set(mapperKey(o), o);
  for (const [id, ms] of groupBos(allMappings(s))) {
    if (s.activeBos.has(id) || s.activating.has(id)) continue;
    if (crossTree(ms[0]!.kind) && !complete) continue;
    if (!ms.every((m) => s.trees.get(m.tree)?.observations)) continue;
    const problem = compareBo(id, ms, observations);
    if (problem) return [...effects, ...abortSession(s, ErrorCodes.VERIFY, problem, at)];
    if (s.activator === 'verify') {
      effects.push(...activated(s, id, at));
      continue;
    }
    // verified: hand it to the activator (exec, kfd); the BO is active once it succeeds
    s.activating.add(id);
    const mappers = ms.map((m) => ({
      tree: m.tree,
      pid: m.pid,
      hostPid: observations.get(mapperKey(m))!.hostPid,
      start: m.start,
      size: m.size,
      prot: m.prot,
    }));
    effects.push({
      type: 'activate-bo',
      session: s.session,
      attempt: s.attempt,
      bo: id,
      label: ms[0]!.label,
      activator: s.activator,
      mappers,
    });
  }
  return effects;
}

function activated(s: SessionState, id: string, at: number): Effect[] {
  s.activeBos.set(id, at);
  const ms = groupBos(allMappings(s)).get(id) ?? [];
  const detail = ms.map((m) => `${m.tree}/${m.pid}@0x${m.start.toString(16)}+${m.size}`).join(', ');
  return [
    publish(
      decision('bo-activated', s, at, { bo: id, reason: ms[0]?.label ?? id, detail, trees: [...new Set(ms.map((m) => m.tree))].sort() }),
    ),
  ];
}

function onActivation(state: CoordinatorState, input: Extract<Input, { type: 'bo-activation' }>, own: boolean): Result {
  const current = state.sessions.get(input.session);
  if (!current || current.attempt !== input.attempt || current.status !== 'open' || !current.activating.has(input.bo)) return [state, []];
  const s = draft(current, own);
  const next = withSession(state, s, own);
  s.activating.delete(input.bo);
  if (input.error) {
    return [next, abortSession(s, ErrorCodes.ACTIVATOR, `activator ${s.activator} failed for BO ${input.bo}: ${input.error}`, input.at)];
  }
  return [next, [...activated(s, input.bo, input.at), ...release(s, 'post-restore', input.at)]];
}

function onTreeResult(state: CoordinatorState, input: Extract<Input, { type: 'tree-images' | 'tree-observed' }>, own: boolean): Result {
  const current = state.sessions.get(input.session);
  if (!current || current.attempt !== input.attempt || current.status !== 'open' || !current.trees.has(input.tree)) return [state, []];
  const s = draft(current, own);
  const next = withSession(state, s, own);
  const t = s.trees.get(input.tree)!;
  if (input.type === 'tree-images') {
    t.inspecting = false;
    if (!input.mappings) {
      return [next, abortSession(s, ErrorCodes.IMAGE, `tree ${input.tree}: cannot read its images: ${input.error}`, input.at)];
    }
    t.mappings = input.mappings;
    const bos = [...new Set(input.mappings.map((m) => m.bo))].sort();
    const effects: Effect[] = [
      publish(
        decision('tree-inspected', s, input.at, { tree: input.tree, trees: bos, reason: `${input.mappings.length} shared mapping(s)` }),
      ),
    ];
    // a newly known tree may complete cross-tree BOs and let waiting trees go
    effects.push(...verifyTree(s, input.tree), ...activateBos(s, input.at), ...release(s, 'post-restore', input.at));
    return [next, effects];
  }
  t.verifying = false;
  if (!input.observations) {
    return [next, abortSession(s, ErrorCodes.VERIFY, `tree ${input.tree}: cannot observe its restored tasks: ${input.error}`, input.at)];
  }
  t.observations = input.observations;
  const effects: Effect[] = [];
  for (const bo of [...new Set(input.observations.map((o) => o.bo))].sort()) {
    effects.push(publish(decision('bo-verified', s, input.at, { tree: input.tree, bo })));
  }
  effects.push(...activateBos(s, input.at), ...release(s, 'post-restore', input.at));
  return [next, effects];
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

function answerFailed(input: Input, reason: string): Effect[] {
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

/**
 * After a restart from the journal: in-flight image reads, observations and
 * activations were lost with the old process, so they are asked for again
 * when their trees' hooks re-send; every open session's deadline is re-armed
 * with the time it has left (wall clock), and every waiting hook's lease anew.
 */
export function recover(state: CoordinatorState, now: number): [CoordinatorState, Effect[]] {
  const effects: Effect[] = [];
  for (const s of state.sessions.values()) {
    for (const t of s.trees.values()) {
      t.inspecting &&= t.mappings !== null;
      t.verifying &&= t.observations !== null;
    }
    s.activating.clear();
    if (s.status === 'open') {
      effects.push({
        type: 'schedule-deadline',
        session: s.session,
        attempt: s.attempt,
        inMs: Math.max(0, s.openedAt + s.deadlineMs - now),
      });
      // hooks that were waiting get a whole new lease to reconnect and re-send
      for (const gate of GATES) {
        for (const [tree, inMs] of s.gates[gate].leases) {
          effects.push({ type: 'schedule-lease', session: s.session, attempt: s.attempt, tree, gate, inMs });
        }
      }
    }
  }
  return [state, effects];
}
