/**
 * ZeroMQ PUB adapter: republishes every event and decision as a Published
 * message, topic = session name, with a gap-free sequence number per session.
 */
import { Publisher } from 'zeromq';
import type { Decision, StageEvent } from '../core/model';
import { encodePublished } from '../protocol/codec';
import { EndpointError } from '../errors';
import { prepareEndpoint, removeIpcSockets } from './endpoints';
import { SerialSender } from './serial-sender';

export class EventPublisher {
  private constructor(private readonly endpoints: string[]) {}

  private readonly pub = new Publisher({ linger: 0, sendHighWaterMark: 100_000 });
  private readonly sender = new SerialSender<[string, Uint8Array]>((m) => this.pub.send(m));
  /** per session (topic): a subscriber of one session sees no gap unless it missed something */
  private readonly seqs = new Map<string, bigint>();

  static async bind(endpoints: string[]): Promise<EventPublisher> {
    const p = new EventPublisher(endpoints);
    for (const ep of endpoints) {
      prepareEndpoint(ep);
      try {
        await p.pub.bind(ep);
      } catch (err) {
        p.pub.close();
        throw new EndpointError(`cannot bind events endpoint ${ep}: ${(err as Error).message}`, { cause: err });
      }
    }
    return p;
  }

  publish(session: string, body: { event: StageEvent } | { decision: Decision }): bigint {
    const seq = (this.seqs.get(session) ?? 0n) + 1n;
    this.seqs.set(session, seq);
    this.sender.push([session, encodePublished(seq, body)]);
    return seq;
  }

  close(): void {
    this.pub.close();
    removeIpcSockets(this.endpoints);
  }
}
