/**
 * Recovery after a restart from the journal (pure: works on a copy).
 */
import { GATES } from './actions';
import type { CoordinatorState, Effect } from './model';

/**
 * After a restart from the journal: in-flight image reads, observations and
 * activations were lost with the old process, so they are asked for again
 * when their trees' hooks re-send; every open session's deadline is re-armed
 * with the time it has left (wall clock), and every waiting hook's lease anew.
 */
export function recover(replayed: CoordinatorState, now: number): [CoordinatorState, Effect[]] {
  const state = structuredClone(replayed);
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
