/**
 * Endpoint defaults and preparation. IPC sockets live in a private directory
 * (0700) so only its owner can talk to the coordinator.
 */
import { chmodSync, lstatSync, mkdirSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { constants } from 'node:os';
import { EndpointError } from '../errors';
import { FileLock, NativeError } from '../native';
import { type CurveServer, socketGroups } from './curve';

export function runtimeDir(): string {
  if (process.env.STAGEGATE_RUNTIME_DIR) return process.env.STAGEGATE_RUNTIME_DIR;
  if (process.getuid?.() === 0) return '/run/stagegate';
  return `${process.env.XDG_RUNTIME_DIR ?? '/tmp'}/stagegate-${process.getuid?.() ?? 'user'}`;
}

export const defaultHookEndpoint = (): string => `ipc://${runtimeDir()}/hooks.sock`;
export const defaultEventsEndpoint = (): string => `ipc://${runtimeDir()}/events.sock`;

const IPC_PATH_MAX = 107; // sizeof(sun_path) - 1

/** The socket path of an ipc:// endpoint, null for other transports. */
export function ipcPath(ep: string): string | null {
  return ep.startsWith('ipc://') ? ep.slice('ipc://'.length) : null;
}

/** Removes the socket files of IPC endpoints (ZeroMQ leaves them behind). */
export function removeIpcSockets(endpoints: string[]): void {
  for (const ep of endpoints) {
    const p = ipcPath(ep);
    if (p) rmSync(p, { force: true });
  }
}

/**
 * Locks an IPC endpoint for this daemon (PATH.lock, flock): a second daemon
 * would otherwise silently take the socket over. Null for other transports.
 */
export function lockEndpoint(ep: string): FileLock | null {
  const path = ipcPath(ep);
  if (!path) return null;
  try {
    return FileLock.acquire(`${path}.lock`);
  } catch (err) {
    if (err instanceof NativeError && err.errno === constants.errno.EWOULDBLOCK) {
      throw new EndpointError(`${ep} is in use by another stagegate daemon (${path}.lock is locked)`);
    }
    throw new EndpointError(`cannot lock ${ep}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * A client's check of an IPC endpoint before it connects: its directory must
 * exist, belong to this user or root, and be private, or another local user
 * could put a socket there and answer in the coordinator's place.
 */
export function checkClientEndpoint(ep: string): void {
  if (!/^(ipc|tcp):\/\/./.test(ep)) throw new EndpointError(`endpoint '${ep.slice(0, 200)}' is neither ipc://PATH nor tcp://HOST:PORT`);
  const path = ipcPath(ep);
  if (!path) return;
  const dir = dirname(path);
  let st;
  try {
    st = lstatSync(dir);
  } catch {
    throw new EndpointError(`IPC endpoint ${ep}: directory ${dir} does not exist (is the coordinator running?)`);
  }
  const uid = process.getuid?.();
  if (!st.isDirectory()) throw new EndpointError(`refusing IPC endpoint ${ep}: ${dir} is not a directory`);
  if (uid !== undefined && st.uid !== uid && st.uid !== 0) {
    throw new EndpointError(
      `refusing IPC endpoint ${ep}: ${dir} belongs to uid ${st.uid}, neither this user nor root (another user could answer in the coordinator's place)`,
    );
  }
  if ((st.mode & 0o077) !== 0) {
    throw new EndpointError(
      `refusing IPC endpoint ${ep}: ${dir} is not private (mode ${(st.mode & 0o7777).toString(8)}; the coordinator makes it 0700)`,
    );
  }
}

/**
 * Validates an endpoint and, for IPC, prepares its directory: one stagegate
 * creates is made private (0700); one that exists must already be private and
 * this user's own (it is never changed: it may be a shared directory like /tmp).
 */
export function prepareEndpoint(ep: string): void {
  const m = /^(ipc|tcp):\/\/(.+)$/.exec(ep);
  if (!m) throw new EndpointError(`endpoint '${ep}' is neither ipc://PATH nor tcp://HOST:PORT`);
  if (m[1] !== 'ipc') return;
  const path = m[2]!;
  if (!path.startsWith('/')) throw new EndpointError(`IPC endpoint '${ep}' must be an absolute path`);
  if (path.length > IPC_PATH_MAX) throw new EndpointError(`IPC path '${path}' is longer than ${IPC_PATH_MAX} bytes`);
  const dir = dirname(path);
  const made = mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (made) chmodSync(dir, 0o700); // ours, whatever the umask
  const st = lstatSync(dir);
  if (!st.isDirectory()) throw new EndpointError(`IPC directory ${dir} is not a directory`);
  if (st.uid !== process.getuid?.()) throw new EndpointError(`IPC directory ${dir} is not owned by this user`);
  if ((st.mode & 0o077) !== 0) {
    throw new EndpointError(
      `IPC directory ${dir} is accessible to others (mode ${(st.mode & 0o7777).toString(8)}): give an endpoint in a private directory, or one that does not exist yet (stagegate creates it 0700)`,
    );
  }
}

/** Binds `socket` to each endpoint (preparing IPC directories); a failure names the endpoint. */
export async function bindEach(socket: { bind(ep: string): Promise<void> }, endpoints: string[], what: string): Promise<void> {
  for (const ep of endpoints) {
    prepareEndpoint(ep);
    try {
      await socket.bind(ep);
    } catch (err) {
      throw new EndpointError(`cannot bind ${what} endpoint ${ep}: ${(err as Error).message}`, { cause: err });
    }
  }
}

/**
 * Makes one socket per group of endpoints (socketGroups: the IPC ones share a
 * plain socket, each TCP one a CURVE server when keys are given) and binds it;
 * if any bind fails, every socket made so far is closed and the error names
 * the endpoint.
 */
export async function bindSockets<S extends { bind(ep: string): Promise<void>; close(): void }>(
  endpoints: string[],
  curve: CurveServer | null,
  what: string,
  make: (security: CurveServer | null) => S,
  bound: (socket: S, endpoints: string[]) => void = () => {},
): Promise<{ socket: S; security: CurveServer | null }[]> {
  const made: { socket: S; security: CurveServer | null }[] = [];
  try {
    for (const [eps, security] of socketGroups(endpoints, curve)) {
      const socket = make(security);
      made.push({ socket, security });
      await bindEach(socket, eps, what);
      bound(socket, eps);
    }
  } catch (err) {
    for (const m of made) m.socket.close();
    throw err;
  }
  return made;
}
