/**
 * The operator's view of the coordinator state (pure): for each session, each
 * tree's stage, what each gate still waits for and since when.
 */
import { gatesOf } from './actions';
import { missingAt } from './sessions';
import { groupBos } from './bo-graph';
import type { CoordinatorState, MappingRef, SessionState } from './model';

export interface TreeView {
  tree: string;
  lastAction: string;
  initPid: number;
  host: string;
  waitingAt: string;
  waitingSince: number;
  postRestoreReleased: boolean;
  preResumeReleased: boolean;
  inspected: boolean;
  observed: boolean;
  run: string;
  /** a dump: the group commit answered its post-dump */
  committed: boolean;
}

export interface BoView {
  id: string;
  label: string;
  kind: string;
  active: boolean;
  mappers: string[];
}

export interface SessionView {
  session: string;
  attempt: number;
  expectedTrees: number;
  status: string;
  activator: string;
  openedAt: number;
  deadlineMs: number;
  abortCode: string;
  abortReason: string;
  trees: TreeView[];
  bos: BoView[];
  waitingFor: string[];
  /** 'pre-restore' when the session has an arrival barrier */
  holdAt: string;
  /** 'dump' or 'restore' */
  phase: string;
}

const mapper = (m: MappingRef) => `${m.tree}/${m.pid}@0x${m.start.toString(16)}+${m.size}`;

export function sessionView(s: SessionState): SessionView {
  const trees: TreeView[] = [...s.trees.values()]
    .map((t) => {
      const gate = gatesOf(s.phase).find(
        (g) => s.gates[g].waiting.has(t.name) || (s.gates[g].arrived.has(t.name) && !s.gates[g].released.has(t.name)),
      );
      return {
        tree: t.name,
        lastAction: t.lastAction,
        initPid: t.initPid,
        host: t.host,
        waitingAt: s.status === 'open' && gate ? gate : '',
        waitingSince: gate ? (s.gates[gate].arrived.get(t.name) ?? 0) : 0,
        postRestoreReleased: s.gates['post-restore'].released.has(t.name),
        preResumeReleased: s.gates['pre-resume'].released.has(t.name),
        inspected: t.mappings !== null,
        observed: t.observations !== null,
        run: t.run,
        committed: s.gates['post-dump'].openedAt !== null && s.gates['post-dump'].released.has(t.name),
      };
    })
    .sort((a, b) => (a.tree < b.tree ? -1 : 1));
  const all = [...s.manifest, ...[...s.trees.values()].flatMap((t) => t.mappings ?? [])];
  const bos = [...groupBos(all)].map(([id, ms]) => ({
    id,
    label: ms[0]!.label,
    kind: ms[0]!.kind,
    active: s.activeBos.has(id),
    mappers: ms.map(mapper),
  }));
  const waitingFor: string[] = [];
  if (s.status === 'open') {
    const unseen = s.expectedTrees - s.trees.size;
    if (unseen > 0) waitingFor.push(`${unseen} tree(s) not seen yet`);
    for (const gate of gatesOf(s.phase)) {
      const g = s.gates[gate];
      if (g.arrived.size === 0 || g.openedAt !== null) continue;
      const missing = missingAt(s, gate).filter((t) => s.trees.has(t));
      if (missing.length) waitingFor.push(`${gate}: trees ${missing.join(', ')} not arrived`);
    }
    const pending = bos.filter((b) => !b.active).map((b) => b.id);
    if (s.activator !== 'none' && pending.length && g0Waiting(s)) waitingFor.push(`BOs not active yet: ${pending.join(', ')}`);
  }
  return {
    session: s.session,
    attempt: s.attempt,
    expectedTrees: s.expectedTrees,
    status: s.status,
    activator: s.activator,
    openedAt: s.openedAt,
    deadlineMs: s.deadlineMs,
    abortCode: s.abort?.code ?? '',
    abortReason: s.abort?.reason ?? '',
    trees,
    bos,
    waitingFor,
    holdAt: s.holdAt === 'none' ? '' : s.holdAt,
    phase: s.phase,
  };
}

function g0Waiting(s: SessionState): boolean {
  const g = s.gates['post-restore'];
  return g.arrived.size > g.released.size;
}

export function statusView(state: CoordinatorState | null, session = ''): SessionView[] {
  if (!state) return [];
  return [...state.sessions.values()]
    .filter((s) => !session || s.session === session)
    .map(sessionView)
    .sort((a, b) => a.openedAt - b.openedAt);
}
