/**
 * A small Node client of the hook endpoint, for the CLI and the restore
 * wrapper (the hook itself is C: hooks/stagegate-hook.c).
 */
import { Dealer } from 'zeromq';
import type { StageEvent, Verdict } from './core/model';
import { decodeVerdict, encodeOpen, encodeRequestEvent } from './protocol/codec';
import { EndpointError } from './errors';

/** Sends one event without waiting for an answer; gives delivery `lingerMs`. */
export async function sendEvent(endpoint: string, ev: StageEvent, lingerMs = 500): Promise<void> {
  const d = new Dealer({ linger: lingerMs, sendTimeout: lingerMs });
  try {
    d.connect(endpoint);
    await d.send(encodeRequestEvent(ev));
  } finally {
    d.close();
  }
}

/** Sends a request and waits for one Verdict, at most `timeoutMs`. */
async function request(endpoint: string, frame: Uint8Array, timeoutMs: number): Promise<Verdict> {
  const d = new Dealer({ linger: 0, sendTimeout: timeoutMs, receiveTimeout: timeoutMs });
  try {
    d.connect(endpoint);
    await d.send(frame);
    const [reply] = await d.receive();
    return decodeVerdict(reply!);
  } catch (err) {
    throw new EndpointError(`no answer from the coordinator at ${endpoint} within ${timeoutMs} ms`, { cause: err });
  } finally {
    d.close();
  }
}

export function openSession(endpoint: string, o: Parameters<typeof encodeOpen>[0], timeoutMs = 5000): Promise<Verdict> {
  return request(endpoint, encodeOpen(o), timeoutMs);
}

export function requestEvent(endpoint: string, ev: StageEvent, timeoutMs: number): Promise<Verdict> {
  return request(endpoint, encodeRequestEvent(ev), timeoutMs);
}
