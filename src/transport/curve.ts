/**
 * CURVE security for TCP endpoints: key files, the allow-list of client
 * public keys, and the ZAP handler that enforces it (ZeroMQ asks the ZAP
 * handler about every new connection to a socket with a ZAP domain).
 */
import { closeSync, constants, fchmodSync, lstatSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { Router, curveKeyPair } from 'zeromq';
import { decode, encode } from 'z85';
import { EndpointError, UsageError } from '../errors';

export const ZAP_DOMAIN = 'stagegate';
/** The events endpoint's domain: it republishes every session, so only keys without scopes may subscribe. */
export const ZAP_EVENTS_DOMAIN = 'stagegate-events';
const ZAP_ENDPOINT = 'inproc://zeromq.zap.01';
const KEY = /^[0-9a-zA-Z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/;

/** What one client key may act on: session and tree name globs (`*` matches any run of characters). */
export interface Scope {
  session: string;
  tree: string;
}

/** z85 client public key -> its scopes; null: any session and tree (an operator's key). */
export type AllowList = Map<string, Scope[] | null>;

export interface CurveServer {
  secretKey: string;
  /** the clients allowed to connect, and what each may act on */
  allow: AllowList;
}

const GLOB = /^[A-Za-z0-9._:*-]{1,128}$/;

function globMatch(glob: string, name: string): boolean {
  const re = new RegExp(`^${glob.replace(/[.]/g, '\\.').replace(/\*/g, '.*')}$`);
  return re.test(name);
}

/**
 * Whether a key with `scopes` may act on `session` and `tree`; tree null asks
 * for the whole session (opening it), which only a scope with tree `*` grants.
 */
export function permits(scopes: Scope[] | null, session: string, tree: string | null): boolean {
  if (scopes === null) return true;
  return scopes.some((s) => globMatch(s.session, session) && (tree === null ? s.tree === '*' : globMatch(s.tree, tree)));
}

function parseScope(text: string): Scope | null {
  const [session, tree = '*', extra] = text.split('/');
  return extra === undefined && GLOB.test(session!) && GLOB.test(tree) ? { session: session!, tree } : null;
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

/**
 * The allow-list: one client per line, `KEY [SESSION[/TREE]]...`: a Z85 public
 * key, then the sessions (and trees) that key may act on, as globs; a key with
 * no scope may act on any. Blank lines and other lines starting with # are
 * ignored ('#' is also a Z85 character).
 */
export function readAllowList(path: string): AllowList {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read allow-list ${path}: ${(err as Error).message}`);
  }
  const keys: AllowList = new Map();
  text.split('\n').forEach((raw, i) => {
    const [key = '', ...scopeTexts] = raw.trim().split(/\s+/);
    const isKey = KEY.test(key) && decode(key)?.length === 32;
    if (!key || (!isKey && key.startsWith('#'))) return;
    if (!isKey) throw new UsageError(`${path}:${i + 1}: not a CURVE public key`);
    const scopes = scopeTexts.map((t) => {
      const scope = parseScope(t);
      if (!scope)
        throw new UsageError(
          `${path}:${i + 1}: scope '${t.slice(0, 140)}' is not SESSION or SESSION/TREE (names or globs of [A-Za-z0-9._:-*])`,
        );
      return scope;
    });
    const before = keys.get(key);
    keys.set(key, scopes.length === 0 || before === null ? null : [...(before ?? []), ...scopes]);
  });
  if (keys.size === 0) throw new UsageError(`${path}: the allow-list is empty`);
  return keys;
}

/** Writes PREFIX.secret (0600) and PREFIX.public; returns the public key. */
export function keygen(prefix: string): string {
  const { publicKey, secretKey } = curveKeyPair();
  // never over an existing key, never through a symlink planted at its name
  const exists = (path: string) => new UsageError(`${path} exists: keygen never overwrites a key (remove it first)`);
  const create = (path: string, text: string, mode: number) => {
    let fd: number;
    try {
      fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw code === 'EEXIST' ? exists(path) : new UsageError(`cannot write ${path}: ${(err as Error).message}`);
    }
    try {
      writeSync(fd, text);
      fchmodSync(fd, mode);
    } finally {
      closeSync(fd);
    }
  };
  // both checked first, so that a refusal leaves no half pair (a dangling symlink counts as present)
  for (const path of [`${prefix}.secret`, `${prefix}.public`]) if (present(path)) throw exists(path);
  create(`${prefix}.secret`, secretKey + '\n', 0o600);
  create(`${prefix}.public`, publicKey + '\n', 0o644);
  return publicKey;
}

/** Whether anything (a file, a directory, a symlink even dangling) is at `path`. */
function present(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Reads the daemon's secret key: not a .public file, not readable by others. */
export function readSecretKey(path: string): string {
  if (path.endsWith('.public')) throw new UsageError(`${path} is a public key: --curve-secret takes the .secret file (stagegate keygen)`);
  let mode = 0;
  try {
    mode = statSync(path).mode;
  } catch (err) {
    throw new UsageError(`cannot read key file ${path}: ${(err as Error).message}`);
  }
  if (mode & 0o077) throw new UsageError(`${path} is readable by others (mode ${(mode & 0o777).toString(8)}): a secret key must be 0600`);
  return readKey(path);
}

/** Whether a key with `scopes` may see `session` at all (some scope names it). */
export function touches(scopes: Scope[] | null, session: string): boolean {
  return scopes === null || scopes.some((s) => globMatch(s.session, session));
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
