/**
 * ZeroMQ ROUTER adapter for hooks: decodes each frame into a core Input and
 * sends verdicts back to the hook's routing id. IPC endpoints share one plain
 * socket; TCP endpoints get their own socket, a CURVE server when keys are
 * given (security is per socket in ZeroMQ). A peer is "socket:routing-id".
 * Sends are serialised per socket: zeromq.js allows one send in flight.
 */
import { Router } from 'zeromq';
import { Observable, merge } from 'rxjs';
import type { Input, Verdict } from '../core/model';
import { MAX_FRAME_BYTES, decodeRequest, encodeVerdict } from '../protocol/codec';
import { BadFrameError, ErrorCodes, type FrameError } from '../errors';
import { bindSockets, removeIpcSockets } from './endpoints';
import { SerialSender } from './serial-sender';
import { type CurveServer, serverOptions } from './curve';
import type { Scope } from './allow-list';
import { openSealed } from './authorize';
import { SealVerifier } from './seal';
import type { ConnectionGuard } from './connection-guard';

interface Bound {
  router: Router;
  sender: SerialSender<[Buffer, Uint8Array]>;
  /** CURVE sockets: every request must be sealed by an allowed key */
  curve: { server: CurveServer; verifier: SealVerifier } | null;
}

/** What the endpoint calls back, given at bind time (before any frame can arrive). */
export interface HookHandlers {
  /** Answers a status request (a query: it does not go through the pipeline), limited to `scopes` (null: all). */
  onStatus(peer: string, session: string, scopes: Scope[] | null): void;
  /** Told about replies that could not be sent (the hook then times out and aborts). */
  onSendError(err: unknown): void;
}

export class HookEndpoint {
  private readonly sockets: Bound[] = [];

  private constructor(
    private readonly endpoints: string[],
    private readonly handlers: HookHandlers,
  ) {}

  static async bind(
    endpoints: string[],
    handlers: HookHandlers,
    curve: CurveServer | null = null,
    guard: ConnectionGuard | null = null,
  ): Promise<HookEndpoint> {
    const h = new HookEndpoint(endpoints, handlers);
    const sockets = await bindSockets(
      endpoints,
      curve,
      'hook',
      (security) => new Router({ maxMessageSize: MAX_FRAME_BYTES, linger: 0, ...serverOptions(security) }),
      (router, eps) => guard?.watch(router, eps),
    );
    for (const { socket: router, security } of sockets) {
      const sender = new SerialSender<[Buffer, Uint8Array]>(
        (m) => router.send(m),
        (err) => handlers.onSendError(err),
      );
      h.sockets.push({ router, sender, curve: security ? { server: security, verifier: new SealVerifier(security.secretKey) } : null });
    }
    return h;
  }

  /** Inputs from hooks, until close(). */
  inputs(now: () => number = Date.now): Observable<Input> {
    return merge(...this.sockets.map((s, i) => this.inputsOf(s, i, now)));
  }

  private inputsOf({ router, curve }: Bound, index: number, now: () => number): Observable<Input> {
    return new Observable<Input>((sub) => {
      (async () => {
        for await (const frames of router) {
          const [id, frame] = frames;
          if (!id || !frame || frames.length !== 2) continue; // a hook sends exactly one frame
          const peer = `${index}:${id.toString('hex')}`;
          try {
            const outer = decodeRequest(frame);
            const { inner: req, scopes } = curve
              ? openSealed(outer, curve.server, curve.verifier, id.toString('latin1'), now())
              : { inner: outer, scopes: null };
            if (req.type === 'sealed') throw new BadFrameError('sealed requests are only taken on CURVE endpoints', null);
            if (req.type === 'status') this.handlers.onStatus(peer, req.session, scopes);
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
    this.replyFrame(peer, encodeVerdict(verdict));
  }

  /** Sends a raw reply frame to a peer. */
  replyFrame(peer: string, frame: Uint8Array): void {
    const [index, id] = peer.split(':');
    this.sockets[Number(index)]?.sender.push([Buffer.from(id ?? '', 'hex'), frame]);
  }

  /** Waits until every queued reply is sent, at most `timeoutMs`. */
  async flush(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(this.sockets.map((s) => s.sender.idle())), new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
  }

  close(): void {
    for (const s of this.sockets) s.router.close();
    removeIpcSockets(this.endpoints);
  }
}
