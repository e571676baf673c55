/**
 * ZeroMQ PUB adapter: republishes every event and decision as a Published
 * message, topic = session name, with a gap-free sequence number per session.
 */
import { Publisher } from 'zeromq';
import type { Decision, StageEvent } from '../core/model';
import { encodePublished } from '../protocol/codec';
import { bindSockets, removeIpcSockets } from './endpoints';
import { SerialSender } from './serial-sender';
import type { ConnectionGuard } from './connection-guard';
import { type CurveServer, serverOptions } from './curve';
import { ZAP_EVENTS_DOMAIN } from './zap';

export class EventPublisher {
  private constructor(private readonly endpoints: string[]) {}

  private readonly sockets: { pub: Publisher; sender: SerialSender<[string, Uint8Array]> }[] = [];
  /** per session (topic): a subscriber of one session sees no gap unless it missed something */
  private readonly seqs = new Map<string, bigint>();

  /** IPC endpoints share a plain socket; each TCP endpoint gets its own (a CURVE server when keys are given). */
  static async bind(endpoints: string[], curve: CurveServer | null = null, guard: ConnectionGuard | null = null): Promise<EventPublisher> {
    const p = new EventPublisher(endpoints);
    const sockets = await bindSockets(
      endpoints,
      curve,
      'events',
      (security) => new Publisher({ linger: 0, sendHighWaterMark: 100_000, ...serverOptions(security, ZAP_EVENTS_DOMAIN) }),
      (pub, eps) => guard?.watch(pub, eps),
    );
    for (const { socket: pub } of sockets) p.sockets.push({ pub, sender: new SerialSender((m) => pub.send(m)) });
    return p;
  }

  publish(session: string, body: { event: StageEvent } | { decision: Decision }): bigint {
    const seq = (this.seqs.get(session) ?? 0n) + 1n;
    this.seqs.set(session, seq);
    const frame = encodePublished(seq, body);
    for (const s of this.sockets) s.sender.push([session, frame]);
    return seq;
  }

  close(): void {
    for (const s of this.sockets) s.pub.close();
    removeIpcSockets(this.endpoints);
  }
}
