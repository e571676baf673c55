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
/** `restore-failed` is not a CRIU action: the `stagegate restore` wrapper sends it. */
export type ActionName = CriuAction | 'restore-failed' | 'unknown';

/**
 * The gates, in the order CRIU reaches them. The hook waits for a verdict at
 * each; pre-restore holds the tree only in a session with an arrival barrier
 * (holdAt), and is answered at once otherwise.
 */
export const GATES = ['pre-restore', 'post-restore', 'pre-resume'] as const;
export type GateName = (typeof GATES)[number];

export function isGate(action: ActionName): action is GateName {
  return action === 'pre-restore' || action === 'post-restore' || action === 'pre-resume';
}

/** Where a session may hold its trees before any gate of its own: the arrival barrier. */
export type HoldAt = 'pre-restore' | 'none';
