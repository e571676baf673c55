/**
 * A small Node client of the hook endpoint, for the CLI and the restore
 * wrapper (the hook itself is C: hooks/stagegate-hook.c).
 */
import { Dealer } from 'zeromq';
import type { StageEvent, Verdict } from './core/model';
import { decodeStatusReply, decodeVerdict, encodeOpen, encodeRequestEvent, encodeStatusRequest } from './protocol/codec';
import { EndpointError } from './errors';
import { readKey } from './transport/curve';

/**
 * CURVE client options for a TCP endpoint, from the same environment as the
 * hook: STAGEGATE_CURVE_SERVER_PUBLIC (the daemon's .public file) and
 * STAGEGATE_CURVE_CLIENT (PREFIX of this client's PREFIX.public/.secret).
 */
export function curveClientOptions(endpoint: string): Record<string, string> {
  const server = process.env.STAGEGATE_CURVE_SERVER_PUBLIC;
  const client = process.env.STAGEGATE_CURVE_CLIENT;
  if (!endpoint.startsWith('tcp://') || !server || !client) return {};
  return { curveServerKey: readKey(server), curvePublicKey: readKey(`${client}.public`), curveSecretKey: readKey(`${client}.secret`) };
}

/** Sends one event without waiting for an answer; gives delivery `lingerMs`. */
export async function sendEvent(endpoint: string, ev: StageEvent, lingerMs = 500): Promise<void> {
  const d = new Dealer({ linger: lingerMs, sendTimeout: lingerMs, ...curveClientOptions(endpoint) });
  try {
    d.connect(endpoint);
    await d.send(encodeRequestEvent(ev));
  } finally {
    d.close();
  }
}

/** Sends a request and waits for one reply frame, at most `timeoutMs`. */
async function exchange(endpoint: string, frame: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
  const d = new Dealer({ linger: 0, sendTimeout: timeoutMs, receiveTimeout: timeoutMs, ...curveClientOptions(endpoint) });
  try {
    d.connect(endpoint);
    await d.send(frame);
    const [reply] = await d.receive();
    return reply!;
  } catch (err) {
    throw new EndpointError(`no answer from the coordinator at ${endpoint} within ${timeoutMs} ms`, { cause: err });
  } finally {
    d.close();
  }
}

export async function openSession(endpoint: string, o: Parameters<typeof encodeOpen>[0], timeoutMs = 5000): Promise<Verdict> {
  return decodeVerdict(await exchange(endpoint, encodeOpen(o), timeoutMs));
}

/** A snapshot of the daemon's sessions (all, or one). */
export async function requestStatus(endpoint: string, session = '', timeoutMs = 5000) {
  return decodeStatusReply(await exchange(endpoint, encodeStatusRequest(session), timeoutMs));
}
