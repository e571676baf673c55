/**
 * A small Node client of the hook endpoint, for the CLI and the restore
 * wrapper (the hook itself is C: hooks/stagegate-hook.c).
 */
import { Dealer } from 'zeromq';
import type { StageEvent, Verdict } from '../core/model';
import { decodeStatusReply, decodeVerdict, encodeOpen, encodeRequestEvent, encodeSealed, encodeStatusRequest } from '../protocol/codec';
import { EndpointError } from '../errors';
import { checkClientEndpoint, ipcPath } from './endpoints';
import { existsSync } from 'node:fs';
import { readKey } from './keys';
import { Sealer } from './seal';

interface CurveClient {
  /** socket options of a CURVE client (any socket type) */
  options: Record<string, string>;
  /** socket options of a CURVE client that sends requests (a Dealer): the keys and its routing id */
  requester: Record<string, string>;
  /** the frame as sent: sealed with the client key on CURVE, as is otherwise */
  wrap: (frame: Uint8Array) => Uint8Array;
}

/**
 * CURVE client setup for a TCP endpoint, from the same environment as the
 * hook: STAGEGATE_CURVE_SERVER_PUBLIC (the daemon's .public file) and
 * STAGEGATE_CURVE_CLIENT (PREFIX of this client's PREFIX.public/.secret).
 */
export function curveClient(endpoint: string): CurveClient {
  checkClientEndpoint(endpoint); // every client connection starts here
  const server = process.env.STAGEGATE_CURVE_SERVER_PUBLIC;
  const client = process.env.STAGEGATE_CURVE_CLIENT;
  if (!endpoint.startsWith('tcp://') || !server || !client) return { options: {}, requester: {}, wrap: (f) => f };
  const curveServerKey = readKey(server);
  const keys = { publicKey: readKey(`${client}.public`), secretKey: readKey(`${client}.secret`) };
  const sealer = new Sealer(keys, curveServerKey);
  const options = { curveServerKey, curvePublicKey: keys.publicKey, curveSecretKey: keys.secretKey };
  return {
    options,
    // the routing id proves to the daemon that this connection was made by the holder of these keys
    requester: { ...options, routingId: sealer.connectionId() },
    // a fresh seal (nonce, time) for every frame sent: seals are single-use
    wrap: (frame) => encodeSealed(frame, sealer.seal(frame)),
  };
}

/** Sends one event without waiting for an answer; gives delivery `lingerMs`. */
export async function sendEvent(endpoint: string, ev: StageEvent, lingerMs = 500): Promise<void> {
  const curve = curveClient(endpoint);
  const d = new Dealer({ linger: lingerMs, sendTimeout: lingerMs, ...curve.requester });
  try {
    d.connect(endpoint);
    await d.send(curve.wrap(encodeRequestEvent(ev)));
  } finally {
    d.close();
  }
}

/** Says why a request got no answer, as precisely as the client can tell. */
function whyNoAnswer(endpoint: string, timeoutMs: number, err: unknown): string {
  const path = ipcPath(endpoint);
  if (path && !existsSync(path)) return `no coordinator listens at ${endpoint}: ${path} does not exist (is stagegate serve running?)`;
  if ((err as { code?: string })?.code !== 'EAGAIN')
    return `cannot talk to the coordinator at ${endpoint}: ${(err as Error)?.message ?? String(err)}`;
  const curve = endpoint.startsWith('tcp://') && process.env.STAGEGATE_CURVE_CLIENT;
  return `no answer from the coordinator at ${endpoint} within ${timeoutMs} ms${curve ? " (is it running, and is this client's key in its allow-list?)" : ' (is it running?)'}`;
}

/** Sends a request and waits for one reply frame, at most `timeoutMs`. */
async function exchange(endpoint: string, frame: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
  const curve = curveClient(endpoint);
  const d = new Dealer({ linger: 0, sendTimeout: timeoutMs, receiveTimeout: timeoutMs, ...curve.requester });
  try {
    d.connect(endpoint);
    await d.send(curve.wrap(frame));
    const [reply] = await d.receive();
    return reply!;
  } catch (err) {
    throw new EndpointError(whyNoAnswer(endpoint, timeoutMs, err), { cause: err });
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

/**
 * Waits at a gate as the hook does: sends `ev`, re-sends it every `resendMs`
 * (so the daemon's lease on this waiter stays alive), and returns the verdict
 * for this session, tree and action; throws EndpointError after `timeoutMs`.
 */
export async function awaitVerdict(endpoint: string, ev: StageEvent, timeoutMs: number, resendMs = 1000): Promise<Verdict> {
  const curve = curveClient(endpoint);
  const d = new Dealer({ linger: 0, sendTimeout: resendMs, receiveTimeout: resendMs, ...curve.requester });
  const frame = encodeRequestEvent({ ...ev, resent: true, resendMs });
  const end = Date.now() + timeoutMs;
  try {
    d.connect(endpoint);
    while (Date.now() < end) {
      await d.send(curve.wrap(frame)).catch(() => {}); // sealed anew: a seal is single-use
      const reply = await d.receive().catch(() => null);
      if (!reply) continue; // nothing within a period: send again
      const v = decodeVerdict(reply[0]!);
      if (v.session === ev.session && v.tree === ev.tree && v.action === ev.action) return v;
    }
    throw new EndpointError(`no verdict from the coordinator at ${endpoint} within ${timeoutMs} ms`);
  } finally {
    d.close();
  }
}
