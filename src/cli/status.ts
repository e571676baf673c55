/** `stagegate status` and `stagegate watch`: the operator's view. */
import { Subscriber } from 'zeromq';
import { requestStatus } from '../transport/client';
import type { SessionView } from '../core/status';
import { fieldsOf } from '../core/model';
import { decodePublished, type PublishedMessage } from '../protocol/codec';
import { curveClient } from '../transport/client';

const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

export function renderStatus(sessions: SessionView[], now: number): string {
  if (sessions.length === 0) return 'no sessions';
  const L: string[] = [];
  for (const s of sessions) {
    const deadline = s.status === 'open' ? `, deadline in ${secs(s.openedAt + s.deadlineMs - now)}` : '';
    L.push(
      `session ${s.session}  attempt ${s.attempt}  ${s.status}  activator ${s.activator}  ${s.trees.length} of ${s.expectedTrees} tree(s) seen  opened ${secs(now - s.openedAt)} ago${deadline}`,
    );
    if (s.abortReason) L.push(`  aborted [${s.abortCode}] ${s.abortReason}`);
    L.push('  tree              last action            waiting at      since     post-restore  pre-resume  images  verified');
    for (const t of s.trees) {
      const yes = (b: boolean) => (b ? 'yes' : '-');
      L.push(
        `  ${t.tree.padEnd(17)} ${t.lastAction.padEnd(22)} ${(t.waitingAt || '-').padEnd(15)} ${(t.waitingAt ? secs(now - t.waitingSince) : '-').padEnd(9)} ${(t.postRestoreReleased ? 'passed' : '-').padEnd(13)} ${(t.preResumeReleased ? 'passed' : '-').padEnd(11)} ${yes(t.inspected).padEnd(7)} ${yes(t.observed)}`,
      );
    }
    if (s.bos.length) L.push(`  BOs: ${s.bos.length} (${s.bos.filter((b) => b.active).length} active)`);
    for (const w of s.waitingFor) L.push(`  waiting for: ${w}`);
  }
  return L.join('\n');
}

export async function status(endpoint: string, session: string, json: boolean): Promise<number> {
  const r = await requestStatus(endpoint, session);
  process.stdout.write((json ? JSON.stringify(r, null, 2) : renderStatus(r.sessions, r.now)) + '\n');
  return 0;
}

/** One line per published message, plus a line for every gap in a session's sequence numbers. */
export function describeMessage(m: PublishedMessage): string {
  if ('event' in m) {
    const e = m.event;
    const t = new Date(Number(e.wallNs / 1_000_000n)).toISOString();
    return `${t} #${m.seq} ${e.session} ${e.tree} event ${e.action}${e.initPid ? ` pid ${e.initPid}` : ''}${e.reason ? ` (${e.reason})` : ''}`;
  }
  const d = fieldsOf(m.decision);
  const extra = [
    d.action !== 'unknown' ? d.action : '',
    d.bo ? `BO ${d.bo}` : '',
    d.kind === 'gate-opened' ? `waited ${d.waitedMs.toFixed(1)} ms` : '',
    d.trees.length ? `trees ${d.trees.join(',')}` : '',
    d.bos.length ? `BOs ${d.bos.join(',')}` : '',
    d.kind === 'tree-inspected' ? `${d.mappings} shared mapping(s)` : '',
    d.code ? `[${d.code}]` : '',
    d.label,
    d.reason,
  ].filter(Boolean);
  return `${new Date(d.at).toISOString()} #${m.seq} ${d.session} ${d.tree || '-'} ${d.kind} ${extra.join(' ')}`.trimEnd();
}

export class GapDetector {
  private last = new Map<string, bigint>();
  /** A line describing missed messages before `m`, or null. */
  check(session: string, seq: bigint): string | null {
    const prev = this.last.get(session);
    this.last.set(session, seq);
    if (prev === undefined) return seq > 1n ? `! ${session}: joined at #${seq}, ${seq - 1n} earlier message(s) not seen` : null;
    if (seq !== prev + 1n) return `! ${session}: missed ${seq - prev - 1n} message(s) (#${prev + 1n}..#${seq - 1n})`;
    return null;
  }
}

export async function watch(events: string, endpoint: string, session: string, signal: AbortSignal): Promise<number> {
  // CURVE keys from the same environment as the hook's (tcp:// events endpoints); checks IPC endpoints
  const sub = new Subscriber({ receiveHighWaterMark: 0, ...curveClient(events).options });
  sub.connect(events);
  sub.subscribe(session);
  signal.addEventListener('abort', () => sub.close());
  const gaps = new GapDetector();
  const tty = !!process.stdout.isTTY;
  const recent: string[] = [];
  let timer: NodeJS.Timeout | null = null;
  if (tty) {
    // live view: a status snapshot every 250 ms above the latest events
    const draw = async () => {
      const r = await requestStatus(endpoint, session, 1000).catch(() => null);
      process.stdout.write(
        '\x1b[H\x1b[2J' +
          (r ? renderStatus(r.sessions, r.now) : `no answer from ${endpoint}`) +
          '\n\nlatest events\n' +
          recent.join('\n') +
          '\n',
      );
    };
    timer = setInterval(() => void draw(), 250);
    signal.addEventListener('abort', () => clearInterval(timer!));
  }
  try {
    for await (const [topic, frame] of sub) {
      if (session && topic!.toString() !== session) continue; // ZeroMQ subscriptions match prefixes: job4 would get job42
      const m = decodePublished(frame!);
      const gap = gaps.check(topic!.toString(), m.seq);
      const lines = [...(gap ? [gap] : []), describeMessage(m)];
      if (!tty) {
        process.stdout.write(lines.join('\n') + '\n');
        continue;
      }
      recent.push(...lines);
      if (recent.length > 15) recent.splice(0, recent.length - 15);
    }
  } catch (err) {
    if (!signal.aborted) throw err;
  }
  return 0;
}
