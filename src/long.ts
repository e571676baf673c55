/**
 * protobufjs's 64-bit integers (Long) as bigint, for both protobuf schemas
 * the project decodes: its own wire contract (proto/stagegate.proto) and
 * CRIU's images (proto/criu). Absent is 0.
 */
import type Long from 'long';

/**
 * From the two 32-bit halves: Long's toString is a decimal conversion by long
 * division, which cost a division per digit on every event and decision the
 * daemon decodes or publishes and on every 64-bit image field (issue #11).
 */
export const bigOfLong = (v: Long | number | null | undefined): bigint => {
  if (v === null || v === undefined) return 0n;
  if (typeof v === 'number') return BigInt(v);
  const u = (BigInt(v.high >>> 0) << 32n) | BigInt(v.low >>> 0);
  return v.unsigned ? u : BigInt.asIntN(64, u);
};
