/**
 * The ZAP handler: ZeroMQ asks it about every new connection to a socket with
 * a ZAP domain (our CURVE servers); allowed client keys get 200, everyone else
 * 400. The events endpoint has a domain of its own: it republishes every
 * session, so only keys without scopes may subscribe there.
 */
import { Router } from 'zeromq';
import { encode } from 'z85';
import { EndpointError } from '../errors';
import type { AllowList } from './allow-list';

export const ZAP_DOMAIN = 'stagegate';
/** The events endpoint's domain: it republishes every session, so only keys without scopes may subscribe. */
export const ZAP_EVENTS_DOMAIN = 'stagegate-events';
const ZAP_ENDPOINT = 'inproc://zeromq.zap.01';

/** Answers ZAP requests: CURVE clients whose public key is allowed get 200, everyone else 400. */
export class ZapHandler {
  private readonly router = new Router();

  static async start(allow: AllowList, onDecision: (key: string, ok: boolean, address: string) => void): Promise<ZapHandler> {
    const z = new ZapHandler();
    try {
      await z.router.bind(ZAP_ENDPOINT);
    } catch (err) {
      throw new EndpointError(`cannot start the ZAP handler: ${(err as Error).message}`, { cause: err });
    }
    void (async () => {
      for await (const frames of z.router) {
        // [routing id, "", version, request id, domain, address, identity, mechanism, credentials...]
        const [id, , version, requestId, domain, address, , mechanism, key] = frames;
        const clientKey = key && key.length === 32 ? (encode(key) ?? '') : '';
        const d = domain?.toString();
        // the events endpoint carries every session: only keys that may act on any session subscribe there
        const ok =
          version?.toString() === '1.0' &&
          mechanism?.toString() === 'CURVE' &&
          allow.has(clientKey) &&
          (d === ZAP_DOMAIN || (d === ZAP_EVENTS_DOMAIN && allow.get(clientKey) === null));
        onDecision(clientKey, ok, address?.toString() ?? '');
        await z.router.send([
          id!,
          '',
          '1.0',
          requestId ?? '',
          ok ? '200' : '400',
          ok ? 'OK' : 'client key not allowed',
          ok ? clientKey : '',
          '',
        ]);
      }
    })().catch(() => {});
    return z;
  }

  close(): void {
    this.router.close();
  }
}
