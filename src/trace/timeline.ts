/**
 * A restore's timeline (pure), built from what the daemon published: per
 * session, per tree, the span of each CRIU stage, the waits at each gate, the
 * BO activations and aborts. The trace writers (JSONL, Chrome trace, HTML)
 * all render this.
 */
import type { PublishedMessage } from '../protocol/codec';
import type { RestoreStats } from '../images/stats';

export interface Span {
  name: string;
  start: number;
  end: number;
}

export interface TreeLine {
  tree: string;
  host: string;
  initPid: number;
  stages: Span[];
  /** waits at the gates, from the hook's arrival to its verdict */
  waits: (Span & { outcome: 'released' | 'aborted' | 'waiting' })[];
  imageDirs: string[];
  stats: RestoreStats | null;
}

export interface Instant {
  at: number;
  kind: 'gate-opened' | 'bo-activated' | 'session-aborted' | 'session-completed';
  label: string;
}

export interface BoLine {
  id: string;
  label: string;
  activatedAt: number;
  mappers: { tree: string; pid: number; address: string; size: number }[];
}

export interface SessionLine {
  session: string;
  trees: TreeLine[];
  instants: Instant[];
  bos: BoLine[];
  abort: string;
}

export interface Timeline {
  start: number;
  end: number;
  sessions: SessionLine[];
}

const ms = (ns: bigint) => Number(ns) / 1e6;

export function buildTimeline(messages: PublishedMessage[], stats: (imageDirs: string[]) => RestoreStats | null = () => null): Timeline {
  const bySession = new Map<string, PublishedMessage[]>();
  for (const m of messages) {
    const s = 'event' in m ? m.event.session : m.decision.session;
    if (!s) continue;
    if (!bySession.has(s)) bySession.set(s, []);
    bySession.get(s)!.push(m);
  }
  let start = Infinity;
  let end = -Infinity;
  const sessions: SessionLine[] = [];
  for (const [session, ms_] of bySession) {
    const events = ms_.flatMap((m) => ('event' in m ? [m.event] : [])).sort((a, b) => (a.wallNs < b.wallNs ? -1 : 1));
    const decisions = ms_.flatMap((m) => ('decision' in m ? [m.decision] : [])).sort((a, b) => a.at - b.at);
    for (const t of [...events.map((e) => ms(e.wallNs)), ...decisions.map((d) => d.at)]) {
      start = Math.min(start, t);
      end = Math.max(end, t);
    }
    const abort = decisions.find((d) => d.kind === 'session-aborted');
    const trees: TreeLine[] = [];
    for (const tree of [...new Set(events.map((e) => e.tree))].sort()) {
      const evs = events.filter((e) => e.tree === tree);
      const stages = evs.map((e, i) => {
        const t = ms(e.wallNs);
        const next = evs[i + 1];
        return { name: e.action === 'unknown' ? e.actionName : e.action, start: t, end: next ? ms(next.wallNs) : t + 1 };
      });
      const waits = evs
        .filter((e) => e.action === 'post-restore' || e.action === 'pre-resume')
        .map((e) => {
          const released = decisions.find((d) => d.kind === 'tree-released' && d.tree === tree && d.action === e.action);
          const t = ms(e.wallNs);
          if (released) return { name: `waiting at ${e.action} gate`, start: t, end: released.at, outcome: 'released' as const };
          if (abort && abort.at >= t) return { name: `waiting at ${e.action} gate`, start: t, end: abort.at, outcome: 'aborted' as const };
          return { name: `waiting at ${e.action} gate`, start: t, end: t, outcome: 'waiting' as const };
        });
      const imageDirs = [...new Set(evs.map((e) => e.imageDir).filter(Boolean))];
      const last = evs[evs.length - 1]!;
      trees.push({
        tree,
        host: last.host,
        initPid: evs.find((e) => e.initPid)?.initPid ?? 0,
        stages,
        waits,
        imageDirs,
        stats: stats(imageDirs),
      });
    }
    const instants: Instant[] = decisions.flatMap((d): Instant[] => {
      if (d.kind === 'gate-opened')
        return [{ at: d.at, kind: d.kind, label: `${d.action} gate opened (first arrival waited ${d.waitedMs.toFixed(1)} ms)` }];
      if (d.kind === 'bo-activated') return [{ at: d.at, kind: d.kind, label: `BO ${d.label} activated (${d.trees.join(', ')})` }];
      if (d.kind === 'session-aborted') return [{ at: d.at, kind: d.kind, label: `aborted [${d.code}] ${d.reason}` }];
      if (d.kind === 'session-completed') return [{ at: d.at, kind: d.kind, label: 'session completed' }];
      return [];
    });
    const bos: BoLine[] = decisions.flatMap((d) =>
      d.kind === 'bo-activated'
        ? [
            {
              id: d.bo,
              label: d.label,
              activatedAt: d.at,
              mappers: d.mappers.map((m) => ({ tree: m.tree, pid: m.pid, address: `0x${m.start.toString(16)}`, size: Number(m.size) })),
            },
          ]
        : [],
    );
    sessions.push({ session, trees, instants, bos, abort: abort ? `[${abort.code}] ${abort.reason}` : '' });
  }
  if (!Number.isFinite(start)) start = end = 0;
  return { start, end, sessions };
}
