/**
 * ZeroMQ PUB adapter: republishes every event and decision as a Published
 * message, topic = session name, with a gap-free sequence number.
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
  private seq = 0n;

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
    this.seq += 1n;
    this.sender.push([session, encodePublished(this.seq, body)]);
    return this.seq;
  }

  close(): void {
    this.pub.close();
    removeIpcSockets(this.endpoints);
  }
}
