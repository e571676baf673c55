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
 *
 * One implementation updates the state in place (`reduceInPlace`, what the
 * pipeline's scan uses: a 1,024-tree session is not copied on every event);
 * `reduce` is the pure form on top of it: it applies the input to a copy.
 * The rooms: sessions.ts (lifecycle), gates.ts, bo-flow.ts (verify),
 * messages.ts (what is published and answered), recovery.ts.
 */
import { gatesOf, isGate, phaseOf, type GateName } from './actions';
import type { CoordinatorState, Effect, Input, Peer, SessionState, StageEvent } from './model';
import { ErrorCodes } from '../errors';
import { validateEvent, validateOpen } from './validate';
import { decision, openAck, publish, refuseOpen, reject, rejected, reply, verdict } from './messages';
import {
  abortSession,
  activatorAllowed,
  admit,
  borrowed,
  defaultHoldAt,
  holds,
  missingAt,
  newSession,
  openDiffers,
  opened,
  runOf,
} from './sessions';
import { arriveAtGate, passVerdict, release } from './gates';
import { activateBos, activated, bosOf, inspect, verifyTree } from './bo-flow';

export { initialState, prune, runOf, DEFAULT_MAX_SESSIONS, DEFAULT_RETENTION_MS, PRUNE_INTERVAL_MS } from './sessions';
export { LEASE_PERIODS } from './gates';
export { failedInput } from './messages';
export { recover } from './recovery';

type Result = [CoordinatorState, Effect[]];

/** Pure: applies `input` to a copy of `state`, which is never changed. */
export function reduce(state: CoordinatorState, input: Input): Result {
  return step(structuredClone(state), input);
}

/**
 * The same rules, updating `state` in place (O(1) per event). Only for an
 * owner that never shares its state, such as the pipeline's scan.
 */
export function reduceInPlace(state: CoordinatorState, input: Input): Result {
  return step(state, input);
}

function step(state: CoordinatorState, input: Input): Result {
  switch (input.type) {
    case 'event':
      return onEvent(state, input.event, input.peer, input.at);
    case 'open':
      return onOpen(state, input);
    case 'deadline':
      return onDeadline(state, input.session, input.attempt, input.at);
    case 'hook-lost':
      return onHookLost(state, input);
    case 'tree-images':
    case 'tree-observed':
      return onTreeResult(state, input);
    case 'bo-activation':
      return onActivation(state, input);
    case 'shutdown':
      return onShutdown(state, input.at);
    case 'rejected':
      return [state, [publish(rejected({ session: '', attempt: 0 }, input.at, input.code, input.reason))]];
  }
}

function onOpen(state: CoordinatorState, input: Extract<Input, { type: 'open' }>): Result {
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
  const full = admit(state, input.session, input.at);
  if (full) return [state, refuseOpen(input, ErrorCodes.LIMIT, full)];
  let effects: Effect[] = [];
  if (existing && existing.status === 'open') {
    effects = abortSession(existing, ErrorCodes.SUPERSEDED, `superseded by attempt ${input.attempt}`, input.at);
  }
  const deadlineMs = input.deadlineMs > 0 ? input.deadlineMs : state.config.defaultDeadlineMs;
  const activator = input.activator || state.config.defaultActivator;
  const holdAt = input.holdAt || defaultHoldAt(state.config);
  const s = newSession(input.session, input.attempt, input.expectedTrees, deadlineMs, input.at, activator, holdAt, input.manifest);
  state.sessions.set(s.session, s);
  return [state, [...effects, ...opened(s, input.at), ...reply(input.peer, verdict(ack, true))]];
}

function onShutdown(state: CoordinatorState, at: number): Result {
  const effects: Effect[] = [];
  for (const s of [...state.sessions.values()].filter((x) => x.status === 'open')) {
    const reason = `the coordinator shut down and keeps no journal: session ${s.session} attempt ${s.attempt} is lost; restore the job again with --attempt ${s.attempt + 1}`;
    effects.push(...abortSession(s, ErrorCodes.SHUTDOWN, reason, at));
  }
  return [state, effects];
}

function onDeadline(state: CoordinatorState, session: string, attempt: number, at: number): Result {
  const s = state.sessions.get(session);
  if (!s || s.attempt !== attempt || s.status !== 'open') return [state, []];
  const gates = gatesOf(s.phase);
  const gate = gates.find((g) => holds(s, g) && s.gates[g].openedAt === null) ?? gates[gates.length - 1]!;
  const missing = missingAt(s, gate);
  const pendingBos = [...bosOf(s).keys()].filter((id) => !s.activeBos.has(id));
  const reason =
    `deadline of ${s.deadlineMs} ms passed at the ${gate} gate; ` +
    (missing.length ? `still missing: ${missing.join(', ')}` : `BOs not yet active: ${pendingBos.sort().join(', ') || 'none'}`);
  return [state, abortSession(s, ErrorCodes.DEADLINE, reason, at)];
}

function onEvent(state: CoordinatorState, ev: StageEvent, peer: Peer | null, at: number): Result {
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
  const phase = phaseOf(ev.action);
  let current = state.sessions.get(ev.session);
  const next = state;

  if (current && ev.attempt < current.attempt) {
    const reason = `event of attempt ${ev.attempt} but session ${ev.session} is at attempt ${current.attempt}`;
    return [next, [...effects, ...reject(ev, peer, gated, ErrorCodes.STALE_ATTEMPT, reason, at)]];
  }
  if (!current || ev.attempt > current.attempt) {
    const full = admit(state, ev.session, at);
    if (full) return [state, [...effects, ...reject(ev, peer, gated, ErrorCodes.LIMIT, full, at)]];
    if (current && current.status === 'open') {
      effects.push(...abortSession(current, ErrorCodes.SUPERSEDED, `superseded by attempt ${ev.attempt}`, at));
    }
    current = sessionFor(state, ev, at);
    effects.push(...opened(current, at));
  } else if (phase && phase !== current.phase) {
    if (current.phase === 'dump' && phase === 'restore' && current.status !== 'open') {
      // the restore of a checkpoint this session dumped: the dump is history
      current = sessionFor(state, ev, at);
      effects.push(...opened(current, at));
    } else {
      const reason =
        current.phase === 'dump'
          ? `session ${current.session} attempt ${current.attempt} is still dumping; its trees can be restored once the dump has ended`
          : `session ${current.session} attempt ${current.attempt} is a restore; to dump the job, dump every tree with --attempt ${current.attempt + 1}, or use a new session name`;
      return [next, [...effects, ...reject(ev, peer, gated, ErrorCodes.PHASE, reason, at)]];
    }
  }

  const run = runOf(ev);
  const prev = current.trees.get(ev.tree);
  const known = prev !== undefined && prev.run === run;
  if (
    current.status === 'completed' ||
    current.status === 'aborted' ||
    ((current.status === 'released' || current.status === 'committed') && (!known || ev.expectedTrees !== current.expectedTrees))
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
  const s = current;
  state.sessions.set(s.session, s);

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
  if (!prev && s.phase === 'restore' && (s.trees.size > 0 || s.commit) && (ev.commit ?? '') !== (s.commit ?? '')) {
    const reason = `tree ${ev.tree} restores ${ev.commit ? `committed set ${ev.commit}` : 'no committed set'} but session ${s.session} restores ${s.commit ? `committed set ${s.commit}` : 'no committed set'}: every tree of a session must come from one committed checkpoint`;
    effects.push(...abortSession(s, ErrorCodes.CONTRADICTION, reason, at));
    effects.push(...(gated ? reply(peer, verdict(ev, false, ErrorCodes.CONTRADICTION, reason)) : []));
    return [next, effects];
  }
  if (!prev && s.trees.size === 0 && ev.commit) s.commit = ev.commit;
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
    // network-lock itself shows a netns of its own, declared or not
    netLock: (prev?.netLock ?? false) || ev.netLock === true || ev.action === 'network-lock',
  });

  if (ev.action === 'restore-failed') {
    const reason = `tree ${ev.tree} failed to restore: ${ev.reason || 'no reason given'}`;
    const released = s.gates['pre-resume'].openedAt !== null;
    if (released) return [next, effects]; // too late to abort: every tree already runs
    effects.push(...abortSession(s, ErrorCodes.TREE_FAILED, reason, at));
    return [next, effects];
  }

  if (ev.action === 'dump-failed') {
    const reason = `tree ${ev.tree} failed to dump: ${ev.reason || 'no reason given'}`;
    if (s.gates['post-dump'].openedAt !== null) return [next, effects]; // committed: its images miss only its record
    effects.push(...abortSession(s, ErrorCodes.TREE_FAILED, reason, at));
    return [next, effects];
  }

  effects.push(...inspect(s, ev.tree));
  if (gated && !holds(s, ev.action as GateName)) {
    effects.push(...reply(peer, verdict(ev, true))); // a gate this session does not hold (no arrival barrier, no netns): go on at once
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

/** A new session for the first event of an attempt (or of a restore after its dump): its phase from the action. */
function sessionFor(state: CoordinatorState, ev: StageEvent, at: number): SessionState {
  const dump = phaseOf(ev.action) === 'dump';
  return newSession(
    ev.session,
    ev.attempt,
    ev.expectedTrees,
    state.config.defaultDeadlineMs,
    at,
    // a dump reads no images and acts on no task: nothing to verify or activate
    dump ? 'none' : state.config.defaultActivator,
    dump ? 'none' : defaultHoldAt(state.config),
    [],
    dump ? 'dump' : 'restore',
  );
}

function onHookLost(state: CoordinatorState, input: Extract<Input, { type: 'hook-lost' }>): Result {
  const s = state.sessions.get(input.session);
  if (!s || s.attempt !== input.attempt || s.status !== 'open') return [state, []];
  if (!s.gates[input.gate].waiting.has(input.tree)) return [state, []]; // answered meanwhile
  const reason =
    `the hook of tree ${input.tree} went silent while it waited at ${input.gate} ` +
    `(no re-send for ${input.silentMs} ms: killed, or its host unreachable)`;
  return [state, abortSession(s, ErrorCodes.HOOK_LOST, reason, input.at)];
}

function onActivation(state: CoordinatorState, input: Extract<Input, { type: 'bo-activation' }>): Result {
  const s = state.sessions.get(input.session);
  if (!s || s.attempt !== input.attempt || s.status !== 'open' || !s.activating.has(input.bo)) return [state, []];
  const next = state;
  s.activating.delete(input.bo);
  if (input.error) {
    return [next, abortSession(s, ErrorCodes.ACTIVATOR, `activator ${s.activator} failed for BO ${input.bo}: ${input.error}`, input.at)];
  }
  return [next, [...activated(s, input.bo, input.at), ...release(s, 'post-restore', input.at)]];
}

function onTreeResult(state: CoordinatorState, input: Extract<Input, { type: 'tree-images' | 'tree-observed' }>): Result {
  const s = state.sessions.get(input.session);
  if (!s || s.attempt !== input.attempt || s.status !== 'open' || !s.trees.has(input.tree)) return [state, []];
  const next = state;
  const t = s.trees.get(input.tree)!;
  if (input.type === 'tree-images') {
    t.inspecting = false;
    if (!input.mappings) {
      return [next, abortSession(s, ErrorCodes.IMAGE, `tree ${input.tree}: cannot read its images: ${input.error}`, input.at)];
    }
    t.mappings = input.mappings;
    s.bos = null; // the BO graph grows
    const bos = [...new Set(input.mappings.map((m) => m.bo))].sort();
    const effects: Effect[] = [
      publish(decision('tree-inspected', s, input.at, { tree: input.tree, bos, mappings: input.mappings.length })),
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
 * An event for a session that has ended: it changes nothing. A run the session
 * knows gets the answer it had (a re-send after release: PROCEED again; after
 * an abort: the abort); any other run is told to start a new attempt.
 */
function answerEnded(s: SessionState, ev: StageEvent, peer: Peer | null, gated: boolean, known: boolean, at: number): Effect[] {
  if (known && s.abort) return reject(ev, peer, gated, s.abort.code, s.abort.reason, at);
  if (known && gated && s.gates[ev.action as GateName].released.has(ev.tree) && ev.expectedTrees === s.expectedTrees) {
    return reply(peer, passVerdict(s, ev.tree, ev.action as GateName)); // a duplicate after its release: the same answer
  }
  const ended =
    s.status === 'aborted' ? `was aborted [${s.abort?.code ?? ''}]` : s.status === 'completed' ? 'has completed' : 'has released its trees';
  const reason = known
    ? `session ${s.session} attempt ${s.attempt} ${ended}: this ${ev.action} event changes nothing`
    : `session ${s.session} attempt ${s.attempt} ${ended} and takes no new restore run (tree ${ev.tree}, run ${runOf(ev)}); ` +
      `to restore the job again, restore every tree with --attempt ${s.attempt + 1}, or use a new session name`;
  return reject(ev, peer, gated, ErrorCodes.SESSION_CLOSED, reason, at);
}
