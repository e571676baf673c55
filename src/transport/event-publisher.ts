/**
 * ZeroMQ XPUB adapter: republishes every event and decision as a Published
 * message, topic = session name, with a gap-free sequence number per session.
 * XPUB rather than PUB so that it knows what its subscribers want: a message
 * nobody subscribed to is neither encoded nor sent (with no `stagegate watch`
 * running, encoding every event was a tenth of the daemon's work in a
 * restore, issue #11). Subscribers see what a PUB socket would have sent them.
 */
import { XPublisher } from 'zeromq';
import type { Decision, StageEvent } from '../core/model';
import { encodePublished } from '../protocol/codec';
import { bindSockets, removeIpcSockets } from './endpoints';
import { SerialSender } from './serial-sender';
import type { ConnectionGuard } from './connection-guard';
import { type CurveServer, serverOptions } from './curve';
import { ZAP_EVENTS_DOMAIN } from './zap';
import { Subscriptions } from './subscriptions';

/** Session names are short; a longer subscription disconnects its subscriber. */
const MAX_SUBSCRIPTION_BYTES = 1024;

interface Bound {
  pub: XPublisher;
  sender: SerialSender<[string, Uint8Array]>;
  subs: Subscriptions;
  /**
   * A subscription libzmq holds that `subs` may not have yet: seen waiting on the socket, and
   * not yet applied by the read loop. zeromq.js can take it off the socket inside a send (it
   * serves a pending receive there) and hand it to the loop only in a later microtask, so
   * `readable` alone turned false while `subs` still lacked it, and the next message for the
   * new subscriber was skipped (the event-publisher test failed about one run in four).
   */
  pending: boolean;
}

export class EventPublisher {
  private constructor(private readonly endpoints: string[]) {}

  private readonly sockets: Bound[] = [];
  /** per session (topic): a subscriber of one session sees no gap unless it missed something */
  private readonly seqs = new Map<string, bigint>();

  /** IPC endpoints share a plain socket; each TCP endpoint gets its own (a CURVE server when keys are given). */
  static async bind(endpoints: string[], curve: CurveServer | null = null, guard: ConnectionGuard | null = null): Promise<EventPublisher> {
    const p = new EventPublisher(endpoints);
    const sockets = await bindSockets(
      endpoints,
      curve,
      'events',
      (security) =>
        new XPublisher({
          linger: 0,
          sendHighWaterMark: 100_000,
          maxMessageSize: MAX_SUBSCRIPTION_BYTES,
          ...serverOptions(security, ZAP_EVENTS_DOMAIN),
        }),
      (pub, eps) => guard?.watch(pub, eps),
    );
    for (const { socket: pub } of sockets) {
      const b: Bound = { pub, sender: new SerialSender((m) => pub.send(m)), subs: new Subscriptions(), pending: false };
      p.sockets.push(b);
      void p.readSubscriptions(b);
    }
    return p;
  }

  private async readSubscriptions(b: Bound): Promise<void> {
    try {
      for await (const [msg] of b.pub) {
        if (msg) b.subs.apply(msg);
        b.pending = b.pub.readable;
      }
    } catch {
      // closed
    }
  }

  /** Returns the number of sockets it went out on (0: no subscriber wanted it, nothing was encoded). */
  publish(session: string, body: { event: StageEvent } | { decision: Decision }): number {
    const seq = (this.seqs.get(session) ?? 0n) + 1n;
    this.seqs.set(session, seq);
    let frame: Uint8Array | null = null;
    let sent = 0;
    for (const s of this.sockets) {
      // a subscription ZeroMQ has taken but this loop has not applied yet (`pending`): libzmq
      // would already deliver to it, so the message is sent as a PUB socket would have
      if (s.pub.readable) s.pending = true;
      if (!s.subs.wants(session) && !s.pending) continue;
      frame ??= encodePublished(seq, body);
      s.sender.push([session, frame]);
      sent++;
    }
    return sent;
  }

  close(): void {
    for (const s of this.sockets) s.pub.close();
    removeIpcSockets(this.endpoints);
  }
}
