/**
 * The gates (pure): a tree arriving at one, the leases of waiting hooks, and
 * `releasableTrees`, *the* gate predicate, with the release that answers the
 * trees it names and opens the gate when the last one passes.
 */
import type { GateName } from './actions';
import type { Effect, Peer, SessionState, StageEvent, Verdict } from './model';
import { ErrorCodes } from '../errors';
import { decision, publish, reply, verdict } from './messages';
import { abortSession, holds, needs } from './sessions';
import { allInspected, bosOf, verifyTree } from './bo-flow';
import { crossTree } from './bo-graph';

export function arriveAtGate(s: SessionState, ev: StageEvent, peer: Peer | null, at: number): Effect[] {
  const gate = ev.action as GateName;
  const g = s.gates[gate];
  if (g.released.has(ev.tree)) {
    return reply(peer, passVerdict(s, ev.tree, gate)); // duplicate after release: same answer
  }
  const before = gateBefore(s, gate);
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

/** The gate a tree must have passed before it may arrive at `gate` (CRIU's order), if any. */
function gateBefore(s: SessionState, gate: GateName): GateName | null {
  switch (gate) {
    case 'pre-resume':
      return 'post-restore';
    case 'post-restore':
      return holds(s, 'pre-restore') ? 'pre-restore' : null;
    case 'network-lock':
    case 'post-dump':
      return 'pre-dump';
    default:
      return null;
  }
}

/** Re-send periods a waiting hook may miss before it counts as lost. */
export const LEASE_PERIODS = 3;

/** Trees that may be released at `gate` now (see the rules at the top). */
export function releasableTrees(s: SessionState, gate: GateName): string[] {
  const g = s.gates[gate];
  const pending = [...g.arrived.keys()].filter((t) => !g.released.has(t));
  if (gate === 'network-lock') {
    // every tree is known once pre-dump opened; those with a netns of their own must all be frozen
    const all = s.gates['pre-dump'].openedAt !== null && [...s.trees.keys()].every((t) => !needs(s, gate, t) || g.arrived.has(t));
    return all ? pending : [];
  }
  if (gate !== 'post-restore' || s.activator === 'none') {
    return g.arrived.size >= s.expectedTrees ? pending : [];
  }
  if (pending.length === 0) return [];
  const bos = bosOf(s);
  const complete = allInspected(s);
  return pending.filter((tree) => {
    const t = s.trees.get(tree);
    if (!t?.observations) return false;
    const mine = [...(t.mappings ?? []), ...s.manifest.filter((m) => m.tree === tree)];
    if (!complete && mine.some((m) => crossTree(m.kind))) return false;
    for (const [id, ms] of bos) if (!s.activeBos.has(id) && ms.some((m) => m.tree === tree)) return false;
    return true;
  });
}

/** PROCEED for `tree` at `gate`; at post-dump (the commit) it names the set, as each tree's commit record will. */
export function passVerdict(s: SessionState, tree: string, gate: GateName): Verdict {
  const v = verdict({ session: s.session, tree, action: gate, attempt: s.attempt }, true);
  if (gate !== 'post-dump') return v;
  const members = [...s.trees.values()].map((t) => ({ tree: t.name, host: t.host, run: t.run }));
  return { ...v, members: members.sort((a, b) => (a.tree < b.tree ? -1 : 1)) };
}

/** Answers every tree that may pass `gate` now; opens the gate when the last one passes. */
export function release(s: SessionState, gate: GateName, at: number): Effect[] {
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
    effects.push(...reply(p, passVerdict(s, tree, gate)));
  }
  const needed = gate === 'network-lock' ? [...s.trees.keys()].filter((t) => needs(s, gate, t)).length : s.expectedTrees;
  if (g.released.size >= needed) {
    g.openedAt = at;
    let first = at;
    for (const t of g.arrived.values()) first = Math.min(first, t);
    effects.push(publish(decision('gate-opened', s, at, { action: gate, waitedMs: at - first, trees: [...g.arrived.keys()].sort() })));
  }
  for (const tree of ready) effects.push(publish(decision('tree-released', s, at, { tree, action: gate })));
  if ((gate === 'pre-resume' || gate === 'post-dump') && g.openedAt !== null) {
    // the resume barrier released every tree, or the group commit committed every dump
    s.status = gate === 'post-dump' ? 'committed' : 'released';
    s.closedAt = at;
    effects.push({ type: 'cancel-deadline', session: s.session, attempt: s.attempt });
  }
  return effects;
}
