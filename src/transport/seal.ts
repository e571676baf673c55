/**
 * Sealed requests: a request signed with the sender's CURVE key pair, so the
 * daemon knows which allow-listed key sent each message (and so which
 * sessions and trees it may act on). The MAC key is derived from the X25519
 * shared secret of the client's and the server's long-term CURVE keys;
 * hooks/stagegate-hook.c computes the same with libsodium.
 */
import { createHash, createHmac, createPrivateKey, createPublicKey, diffieHellman, timingSafeEqual, type KeyObject } from 'node:crypto';
import { decode, encode } from 'z85';

// DER prefixes of X25519 keys (RFC 8410): PKCS#8 private, SubjectPublicKeyInfo public
const PKCS8 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI = Buffer.from('302a300506032b656e032100', 'hex');
const CONTEXT = 'stagegate seal v1';

function raw(z85: string): Buffer {
  const b = decode(z85);
  if (!b || b.length !== 32) throw new Error('not a 32-byte Z85 key');
  return Buffer.from(b);
}

const privateKey = (secretZ85: string): KeyObject => createPrivateKey({ key: Buffer.concat([PKCS8, raw(secretZ85)]), format: 'der', type: 'pkcs8' });
const publicKey = (key: Buffer): KeyObject => createPublicKey({ key: Buffer.concat([SPKI, key]), format: 'der', type: 'spki' });

/** The MAC key shared by one client key pair and one server key pair. */
export function sealKey(ourSecretZ85: string, theirPublic: Buffer): Buffer {
  const shared = diffieHellman({ privateKey: privateKey(ourSecretZ85), publicKey: publicKey(theirPublic) });
  return createHash('sha256').update(CONTEXT).update(shared).digest();
}

export function mac(key: Buffer, request: Uint8Array): Buffer {
  return createHmac('sha256', key).update(request).digest();
}

/** Client side: the seal of `request` (client key pair, server public key, all Z85). */
export function seal(request: Uint8Array, client: { publicKey: string; secretKey: string }, serverPublic: string) {
  return { clientKey: raw(client.publicKey), mac: mac(sealKey(client.secretKey, raw(serverPublic)), request) };
}

/**
 * Server side: checks a seal; returns the sender's Z85 public key, or null
 * when the seal does not hold. Derived keys are cached per client key.
 */
export class SealVerifier {
  private readonly keys = new Map<string, Buffer>();

  constructor(private readonly serverSecret: string) {}

  verify(request: Uint8Array, clientKey: Uint8Array, tag: Uint8Array): string | null {
    if (clientKey.length !== 32 || tag.length !== 32) return null;
    const z85 = encode(Buffer.from(clientKey));
    if (!z85) return null;
    let key = this.keys.get(z85);
    if (!key) {
      try {
        key = sealKey(this.serverSecret, Buffer.from(clientKey));
      } catch {
        return null; // not a usable X25519 point
      }
      if (this.keys.size > 4096) this.keys.clear(); // allow-lists are small; bound the cache anyway
      this.keys.set(z85, key);
    }
    return timingSafeEqual(mac(key, request), Buffer.from(tag)) ? z85 : null;
  }
}
