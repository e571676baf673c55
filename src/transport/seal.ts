/**
 * Sealed requests: a request signed with the sender's CURVE key pair, so the
 * daemon knows which allow-listed key sent each message (and so which
 * sessions and trees it may act on). The MAC key is derived from the X25519
 * shared secret of the client's and the server's long-term CURVE keys;
 * hooks/stagegate-hook.c computes the same with libsodium.
 */
import {
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  randomBytes,
  timingSafeEqual,
  type KeyObject,
} from 'node:crypto';
import { decode, encode } from 'z85';
import { UsageError } from '../errors';

// DER prefixes of X25519 keys (RFC 8410): PKCS#8 private, SubjectPublicKeyInfo public
const PKCS8 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI = Buffer.from('302a300506032b656e032100', 'hex');
const CONTEXT = 'stagegate seal v1';

function raw(z85: string): Buffer {
  const b = decode(z85);
  if (!b || b.length !== 32) throw new UsageError('not a 32-byte Z85 key');
  return Buffer.from(b);
}

const privateKey = (secretZ85: string): KeyObject =>
  createPrivateKey({ key: Buffer.concat([PKCS8, raw(secretZ85)]), format: 'der', type: 'pkcs8' });
const publicKey = (key: Buffer): KeyObject => createPublicKey({ key: Buffer.concat([SPKI, key]), format: 'der', type: 'spki' });

/** The MAC key shared by one client key pair and one server key pair. */
export function sealKey(ourSecretZ85: string, theirPublic: Buffer): Buffer {
  const shared = diffieHellman({ privateKey: privateKey(ourSecretZ85), publicKey: publicKey(theirPublic) });
  return createHash('sha256').update(CONTEXT).update(shared).digest();
}

const le64 = (n: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(n);
  return b;
};

/** The MAC of one sealed frame: single-use (nonce) and dated (sent_ns). */
export function mac(key: Buffer, request: Uint8Array, nonce: Uint8Array, sentNs: bigint): Buffer {
  return createHmac('sha256', key).update('stagegate seal v2').update(nonce).update(le64(sentNs)).update(request).digest();
}

/** The tag of a connection's routing id: proves that whoever connected holds the seal key. */
export function connectionTag(key: Buffer, connNonce: Uint8Array): Buffer {
  return createHmac('sha256', key).update('stagegate conn v1').update(connNonce).digest().subarray(0, 16);
}

/** Client side: one client key pair sealing for one server (keys in Z85); the seal key is derived once. */
export class Sealer {
  private readonly key: Buffer;
  private readonly clientKey: Buffer;

  constructor(client: { publicKey: string; secretKey: string }, serverPublic: string) {
    this.key = sealKey(client.secretKey, raw(serverPublic));
    this.clientKey = raw(client.publicKey);
  }

  /** The routing id to set before connecting: proves the connection is this key's (see Sealed). */
  connectionId(): string {
    const nonce = randomBytes(8);
    return `S${connectionTag(this.key, nonce).toString('hex')}${nonce.toString('hex')}`;
  }

  /** The seal of `request`, fresh for each frame sent. */
  seal(request: Uint8Array, nowNs = BigInt(Date.now()) * 1_000_000n) {
    const nonce = randomBytes(16);
    return { clientKey: this.clientKey, nonce, sentNs: nowNs, mac: mac(this.key, request, nonce, nowNs) };
  }
}

/** How far a seal's time may be from the daemon's (clocks of several hosts differ a little). */
export const SEAL_WINDOW_MS = 5 * 60 * 1000;

/** Why a seal was refused. */
export type SealRefusal = 'mac' | 'connection' | 'stale' | 'replayed';

/**
 * Server side: checks a seal: its MAC, that the connection it came on was
 * made by the holder of the same key (its routing id), its time, and that its
 * nonce was never seen. Returns the sender's Z85 public key, or why not.
 * Derived keys are cached per client key; nonces are remembered for the
 * window (a seal older than that is refused as stale anyway).
 */
export class SealVerifier {
  private readonly keys = new Map<string, Buffer>();
  /** nonce (hex) -> when it was seen (ms), in insertion order */
  private readonly seen = new Map<string, number>();

  constructor(
    private readonly serverSecret: string,
    private readonly maxNonces = 1_000_000,
  ) {}

  verify(
    s: { request: Uint8Array; clientKey: Uint8Array; mac: Uint8Array; nonce: Uint8Array; sentNs: bigint },
    routingId: string,
    nowMs: number,
  ): { key: string } | { refused: SealRefusal } {
    if (s.clientKey.length !== 32 || s.mac.length !== 32 || s.nonce.length !== 16) return { refused: 'mac' };
    const z85 = encode(Buffer.from(s.clientKey));
    if (!z85) return { refused: 'mac' };
    let key = this.keys.get(z85);
    if (!key) {
      try {
        key = sealKey(this.serverSecret, Buffer.from(s.clientKey));
      } catch {
        return { refused: 'mac' }; // not a usable X25519 point
      }
      if (this.keys.size > 4096) this.keys.clear(); // allow-lists are small; bound the cache anyway
      this.keys.set(z85, key);
    }
    if (!timingSafeEqual(mac(key, s.request, s.nonce, s.sentNs), Buffer.from(s.mac))) return { refused: 'mac' };
    const id = /^S([0-9a-f]{32})([0-9a-f]{16})$/.exec(routingId);
    if (!id || !timingSafeEqual(connectionTag(key, Buffer.from(id[2]!, 'hex')), Buffer.from(id[1]!, 'hex')))
      return { refused: 'connection' };
    const sentMs = Number(s.sentNs / 1_000_000n);
    if (Math.abs(nowMs - sentMs) > SEAL_WINDOW_MS) return { refused: 'stale' };
    const nonce = Buffer.from(s.nonce).toString('hex');
    for (const [n, at] of this.seen) {
      if (at >= nowMs - 2 * SEAL_WINDOW_MS && this.seen.size < this.maxNonces) break;
      this.seen.delete(n);
    }
    if (this.seen.has(nonce)) return { refused: 'replayed' };
    this.seen.set(nonce, nowMs);
    return { key: z85 };
  }
}
