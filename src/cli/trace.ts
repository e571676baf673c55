/** `stagegate trace`: records the daemon's stream, or converts a recording, into a trace file. */
import { readFileSync } from 'node:fs';
import { Subscriber } from 'zeromq';
import { decodePublished, type PublishedMessage } from '../protocol/codec';
import { fromJsonl } from '../trace/jsonl';
import { renderTrace, writeTrace } from '../trace/write';
import { UsageError } from '../errors';
import { curveClient } from '../transport/client';

export interface TraceOptions {
  out: string;
  from?: string;
  events: string;
  session: string;
  durationS?: number;
  signal: AbortSignal;
}

export async function trace(o: TraceOptions): Promise<number> {
  renderTrace(o.out, []); // refuse an unknown format before recording anything
  let messages: PublishedMessage[];
  if (o.from) {
    let text: string;
    try {
      text = readFileSync(o.from, 'utf8');
    } catch (err) {
      throw new UsageError(`trace: cannot read ${o.from}: ${(err as Error).message}`);
    }
    messages = fromJsonl(text, o.from);
  } else {
    messages = await record(o);
  }
  writeTrace(o.out, messages);
  process.stderr.write(`stagegate trace: ${messages.length} message(s) written to ${o.out}\n`);
  return 0;
}

/** Until interrupted, the duration passes, or (with --session) the session ends. */
async function record(o: TraceOptions): Promise<PublishedMessage[]> {
  // CURVE keys from the same environment as the hook's (tcp:// events endpoints); checks IPC endpoints
  const sub = new Subscriber({ receiveHighWaterMark: 0, ...curveClient(o.events).options });
  sub.connect(o.events);
  sub.subscribe(o.session);
  const stop = () => sub.close();
  o.signal.addEventListener('abort', stop);
  const timer = o.durationS ? setTimeout(stop, o.durationS * 1000) : null;
  const out: PublishedMessage[] = [];
  try {
    for await (const [topic, frame] of sub) {
      if (o.session && topic!.toString() !== o.session) continue; // ZeroMQ subscriptions match prefixes: job4 would get job42
      const m = decodePublished(frame!);
      out.push(m);
      if (o.session && 'decision' in m && (m.decision.kind === 'session-completed' || m.decision.kind === 'session-aborted')) {
        setTimeout(stop, 300); // the last post-resume events may still be on their way
      }
    }
  } catch {
    // closed: the recording is over
  }
  if (timer) clearTimeout(timer);
  return out;
}
