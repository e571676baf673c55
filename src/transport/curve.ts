/**
 * Which socket gets which security: IPC endpoints share one plain socket
 * (guarded by their 0700 directory), each TCP endpoint gets its own, a CURVE
 * server checked by the ZAP handler (zap.ts) when keys are given. Key files
 * are in keys.ts, the allow-list and scopes in allow-list.ts.
 */
import type { AllowList } from './allow-list';
import { ZAP_DOMAIN } from './zap';

export interface CurveServer {
  secretKey: string;
  /** the clients allowed to connect, and what each may act on */
  allow: AllowList;
}

/** Socket options that make a socket a CURVE server checked by the ZAP handler. */
export function serverOptions(c: CurveServer | null, domain = ZAP_DOMAIN): Record<string, unknown> {
  return c ? { curveServer: true, curveSecretKey: c.secretKey, zapDomain: domain } : {};
}

/**
 * Which endpoints share a socket: all IPC endpoints one plain socket (local,
 * protected by the 0700 directory), each TCP endpoint its own, a CURVE server
 * when keys are given (security is a property of the socket in ZeroMQ).
 */
export function socketGroups(endpoints: string[], curve: CurveServer | null): [string[], CurveServer | null][] {
  const ipc = endpoints.filter((ep) => ep.startsWith('ipc://'));
  return [
    ...(ipc.length ? [[ipc, null] as [string[], null]] : []),
    ...endpoints.filter((ep) => !ep.startsWith('ipc://')).map((ep): [string[], CurveServer | null] => [[ep], curve]),
  ];
}
