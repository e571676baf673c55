/**
 * Chrome trace-event format (opens in Perfetto UI and chrome://tracing): one
 * process per session, one thread (track) per tree plus a coordinator track;
 * complete events for stages and gate waits, instants for gates, BOs, aborts.
 */
import type { Timeline } from './timeline';

interface TraceEvent {
  name: string;
  ph: 'X' | 'i' | 'M';
  pid: number;
  tid: number;
  ts?: number;
  dur?: number;
  s?: 'g' | 'p' | 't';
  cat?: string;
  args?: Record<string, unknown>;
}

export function toChromeTrace(t: Timeline): { traceEvents: TraceEvent[]; displayTimeUnit: 'ms' } {
  const us = (ms: number) => Math.round((ms - t.start) * 1000);
  const ev: TraceEvent[] = [];
  t.sessions.forEach((s, si) => {
    const pid = si + 1;
    ev.push({ name: 'process_name', ph: 'M', pid, tid: 0, args: { name: `session ${s.session}` } });
    ev.push({ name: 'thread_name', ph: 'M', pid, tid: 0, args: { name: 'coordinator' } });
    s.trees.forEach((tree, ti) => {
      const tid = ti + 1;
      ev.push({ name: 'thread_name', ph: 'M', pid, tid, args: { name: `tree ${tree.tree}`, host: tree.host, init_pid: tree.initPid } });
      for (const st of tree.stages) {
        ev.push({ name: st.name, cat: 'stage', ph: 'X', pid, tid, ts: us(st.start), dur: Math.max(1, us(st.end) - us(st.start)) });
      }
      for (const w of tree.waits) {
        ev.push({
          name: w.name,
          cat: 'gate',
          ph: 'X',
          pid,
          tid,
          ts: us(w.start),
          dur: Math.max(1, us(w.end) - us(w.start)),
          args: { outcome: w.outcome },
        });
      }
      if (tree.stats) {
        ev.push({
          name: 'criu restore stats',
          cat: 'criu',
          ph: 'i',
          s: 't',
          pid,
          tid,
          ts: us(tree.stages[0]?.start ?? t.start),
          args: { ...tree.stats },
        });
      }
    });
    for (const i of s.instants) {
      ev.push({ name: i.label, cat: i.kind, ph: 'i', s: i.kind === 'session-aborted' ? 'g' : 'p', pid, tid: 0, ts: us(i.at) });
    }
  });
  return { traceEvents: ev, displayTimeUnit: 'ms' };
}
