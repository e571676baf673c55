/** CRIU action names (CRTOOLS_SCRIPT_ACTION) and which of them stagegate gates. */
export const CRIU_ACTIONS = [
  'pre-dump',
  'post-dump',
  'pre-restore',
  'post-restore',
  'network-lock',
  'network-unlock',
  'setup-namespaces',
  'post-setup-namespaces',
  'pre-resume',
  'post-resume',
  'orphan-pts-master',
  'query-ext-files',
  'pre-stream',
] as const;

export type CriuAction = (typeof CRIU_ACTIONS)[number];
/**
 * `restore-failed` and `dump-failed` are not CRIU actions: the `stagegate
 * restore` and `stagegate dump` wrappers send them when criu fails.
 */
export type ActionName = CriuAction | 'restore-failed' | 'dump-failed' | 'unknown';

/**
 * The restore gates, in the order CRIU reaches them. The hook waits for a
 * verdict at each; pre-restore holds the tree only in a session with an
 * arrival barrier (holdAt), and is answered at once otherwise.
 */
export const RESTORE_GATES = ['pre-restore', 'post-restore', 'pre-resume'] as const;
/**
 * The dump gates, in the order CRIU reaches them: pre-dump (before the freeze:
 * every tree has started its dump), network-lock (frozen, before the network
 * is locked; only trees with their own netns reach it), post-dump (images
 * written: the group commit; a non-zero exit makes CRIU resume the tree).
 */
export const DUMP_GATES = ['pre-dump', 'network-lock', 'post-dump'] as const;
export const GATES = [...RESTORE_GATES, ...DUMP_GATES] as const;
export type GateName = (typeof GATES)[number];

const GATE_SET: ReadonlySet<string> = new Set(GATES);
export function isGate(action: ActionName): action is GateName {
  return GATE_SET.has(action);
}

/** The half of the cycle a session coordinates: its first event decides. */
export type Phase = 'dump' | 'restore';
const DUMP_ACTIONS: ReadonlySet<string> = new Set(['pre-dump', 'network-lock', 'post-dump', 'dump-failed']);
const RESTORE_ACTIONS: ReadonlySet<string> = new Set([
  'pre-restore',
  'post-restore',
  'pre-resume',
  'post-resume',
  'setup-namespaces',
  'post-setup-namespaces',
  'restore-failed',
]);
/** The phase an action belongs to; null for those of both (network-unlock) or neither. */
export function phaseOf(action: ActionName): Phase | null {
  return DUMP_ACTIONS.has(action) ? 'dump' : RESTORE_ACTIONS.has(action) ? 'restore' : null;
}
export const gatesOf = (phase: Phase): readonly GateName[] => (phase === 'dump' ? DUMP_GATES : RESTORE_GATES);

/** Where a session may hold its trees before any gate of its own: the arrival barrier. */
export type HoldAt = 'pre-restore' | 'none';
