/**
 * CURVE key files: `stagegate keygen` writes a pair, the daemon reads its
 * secret (private, never a .public file), clients and the allow-list read
 * public keys. 40 Z85 characters each, as ZeroMQ writes them.
 */
import { closeSync, constants, fchmodSync, lstatSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { curveKeyPair } from 'zeromq';
import { decode } from 'z85';
import { UsageError } from '../errors';

/** A Z85 CURVE key: 40 characters of ZeroMQ's alphabet. */
export const KEY = /^[0-9a-zA-Z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/;

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
