/**
 * CURVE security for TCP endpoints: key files, the allow-list of client
 * public keys, and the ZAP handler that enforces it (ZeroMQ asks the ZAP
 * handler about every new connection to a socket with a ZAP domain).
 */
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { Router, curveKeyPair } from 'zeromq';
import { decode, encode } from 'z85';
import { EndpointError, UsageError } from '../errors';

export const ZAP_DOMAIN = 'stagegate';
const ZAP_ENDPOINT = 'inproc://zeromq.zap.01';
const KEY = /^[0-9a-zA-Z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/;

export interface CurveServer {
  secretKey: string;
  /** z85 public keys of the clients allowed to connect */
  allow: Set<string>;
}

/** Reads a 40-character Z85 key from a file (as written by `stagegate keygen`). */
export function readKey(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8').trim();
  } catch (err) {
    throw new UsageError(`cannot read key file ${path}: ${(err as Error).message}`);
  }
  if (!KEY.test(text) || decode(text)?.length !== 32) throw new UsageError(`${path} does not hold a CURVE key (40 Z85 characters)`);
  return text;
}

/** One Z85 public key per line; blank lines and other lines starting with # are ignored ('#' is also a Z85 character). */
export function readAllowList(path: string): Set<string> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read allow-list ${path}: ${(err as Error).message}`);
  }
  const keys = new Set<string>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    const isKey = KEY.test(line) && decode(line)?.length === 32;
    if (!line || (!isKey && line.startsWith('#'))) return;
    if (!isKey) throw new UsageError(`${path}:${i + 1}: not a CURVE public key`);
    keys.add(line);
  });
  if (keys.size === 0) throw new UsageError(`${path}: the allow-list is empty`);
  return keys;
}

/** Writes PREFIX.secret (0600) and PREFIX.public; returns the public key. */
export function keygen(prefix: string): string {
  const { publicKey, secretKey } = curveKeyPair();
  writeFileSync(`${prefix}.secret`, secretKey + '\n', { mode: 0o600 });
  chmodSync(`${prefix}.secret`, 0o600);
  writeFileSync(`${prefix}.public`, publicKey + '\n');
  return publicKey;
}

/** Socket options that make a socket a CURVE server checked by the ZAP handler. */
export function serverOptions(c: CurveServer | null): Record<string, unknown> {
  return c ? { curveServer: true, curveSecretKey: c.secretKey, zapDomain: ZAP_DOMAIN } : {};
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

/** Answers ZAP requests: CURVE clients whose public key is allowed get 200, everyone else 400. */
export class ZapHandler {
  private readonly router = new Router();

  static async start(allow: Set<string>, onDecision: (key: string, ok: boolean, address: string) => void): Promise<ZapHandler> {
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
        const clientKey = key && key.length === 32 ? encode(key) ?? '' : '';
        const ok = version?.toString() === '1.0' && domain?.toString() === ZAP_DOMAIN && mechanism?.toString() === 'CURVE' && allow.has(clientKey);
        onDecision(clientKey, ok, address?.toString() ?? '');
        await z.router.send([id!, '', '1.0', requestId ?? '', ok ? '200' : '400', ok ? 'OK' : 'client key not allowed', ok ? clientKey : '', '']);
      }
    })().catch(() => {});
    return z;
  }

  close(): void {
    this.router.close();
  }
}
