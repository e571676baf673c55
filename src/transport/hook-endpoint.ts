/**
 * ZeroMQ ROUTER adapter for hooks: decodes each frame into a core Input and
 * sends verdicts back to the hook's routing id. Sends are serialised because
 * a zeromq.js socket allows one send in flight.
 */
import { Router } from 'zeromq';
import { Observable } from 'rxjs';
import type { Input, Verdict } from '../core/model';
import { FrameError, MAX_FRAME_BYTES, decodeRequest, encodeVerdict } from '../protocol/codec';
import { EndpointError, ErrorCodes } from '../errors';
import { prepareEndpoint, removeIpcSockets } from './endpoints';
import { SerialSender } from './serial-sender';

export class HookEndpoint {
  private constructor(private readonly endpoints: string[]) {}

  private readonly router = new Router({ maxMessageSize: MAX_FRAME_BYTES, linger: 0 });
  private readonly sender = new SerialSender<[Buffer, Uint8Array]>(
    (m) => this.router.send(m),
    (err) => this.onSendError(err),
  );
  /** Answers a status request (a query: it does not go through the pipeline). */
  onStatus: (peer: string, session: string) => void = () => {};

  /** Sends a raw reply frame (status replies). */
  replyFrame(peer: string, frame: Uint8Array): void {
    this.sender.push([Buffer.from(peer, 'hex'), frame]);
  }

  /** Told about replies that could not be sent (the hook then times out and aborts). */
  onSendError: (err: unknown) => void = () => {};

  static async bind(endpoints: string[]): Promise<HookEndpoint> {
    const h = new HookEndpoint(endpoints);
    for (const ep of endpoints) {
      prepareEndpoint(ep);
      try {
        await h.router.bind(ep);
      } catch (err) {
        h.router.close();
        throw new EndpointError(`cannot bind hook endpoint ${ep}: ${(err as Error).message}`, { cause: err });
      }
    }
    return h;
  }

  /** Inputs from hooks, until close(). */
  inputs(now: () => number = Date.now): Observable<Input> {
    return new Observable<Input>((sub) => {
      (async () => {
        for await (const frames of this.router) {
          const [id, frame] = frames;
          if (!id || !frame || frames.length !== 2) continue; // a hook sends exactly one frame
          const peer = id.toString('hex');
          try {
            const req = decodeRequest(frame);
            if (req.type === 'status') this.onStatus(peer, req.session);
            else sub.next({ ...req, peer, at: now() });
          } catch (err) {
            const e = err as FrameError;
            if (e.address) {
              this.reply(peer, { ...e.address, proceed: false, code: e.code, reason: e.message });
            }
            sub.next({ type: 'rejected', code: e.code ?? ErrorCodes.BAD_FRAME, reason: e.message, peer, at: now() });
          }
        }
        sub.complete();
      })().catch((err) => sub.error(err));
    });
  }

  reply(peer: string, verdict: Verdict): void {
    this.sender.push([Buffer.from(peer, 'hex'), encodeVerdict(verdict)]);
  }

  close(): void {
    this.router.close();
    removeIpcSockets(this.endpoints);
  }
}
