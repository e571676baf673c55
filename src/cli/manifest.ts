/** Reads a user BO manifest (JSON) into the wire form, with a specific error for every bad field. */
import { FileRefused, readBoundedFile } from '../files';
import type { ManifestBo } from '../protocol/codec';
import { UsageError } from '../errors';

/** Wire fields are u64 (addresses, sizes) and u32 (pids): a larger number would wrap silently. */
function num(where: string, v: unknown, max: bigint = (1n << 64n) - 1n): bigint {
  let n: bigint | null = null;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) n = BigInt(v);
  if (typeof v === 'string' && /^(0x[0-9a-fA-F]{1,16}|[0-9]{1,20})$/.test(v)) n = BigInt(v);
  if (n === null)
    throw new UsageError(`manifest: ${where} must be a non-negative integer or a 0x… string, got ${JSON.stringify(v)?.slice(0, 60)}`);
  if (n > max) throw new UsageError(`manifest: ${where} ${v} is larger than ${max}`);
  return n;
}

/** An open request must fit one frame (src/protocol/codec.ts MAX_FRAME_BYTES) with room to spare. */
const MAX_MANIFEST_BYTES = 768 * 1024;
const MAX_PID = 4_194_304n;

function prot(where: string, v: unknown): number {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 7) return v;
  if (typeof v === 'string' && /^[r-][w-][x-]$/.test(v)) return (v[0] === 'r' ? 1 : 0) | (v[1] === 'w' ? 2 : 0) | (v[2] === 'x' ? 4 : 0);
  throw new UsageError(`manifest: ${where} must be like "rw-" or a PROT_* number, got ${JSON.stringify(v)}`);
}

export function parseManifest(text: string, source = 'manifest'): ManifestBo[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${source}: not JSON: ${(err as Error).message}`);
  }
  const bos = (doc as { bos?: unknown })?.bos;
  if (!Array.isArray(bos)) throw new UsageError(`${source}: expected {"bos": [...]}`);
  const seen = new Set<string>();
  return bos.map((b, i) => {
    const id = (b as { id?: unknown })?.id;
    if (typeof id === 'string' && seen.has(id))
      throw new UsageError(`${source}: bos[${i}].id ${JSON.stringify(id.slice(0, 140))} is used twice (BO ids are unique)`);
    if (typeof id === 'string') seen.add(id);
    const mappers = (b as { mappers?: unknown })?.mappers;
    if (typeof id !== 'string') throw new UsageError(`${source}: bos[${i}].id must be a string`);
    if (!Array.isArray(mappers) || mappers.length === 0) throw new UsageError(`${source}: bos[${i}].mappers must be a non-empty list`);
    return {
      id,
      mappers: mappers.map((m, j) => {
        const at = `bos[${i}].mappers[${j}]`;
        const r = m as Record<string, unknown>;
        if (typeof r?.tree !== 'string') throw new UsageError(`${source}: ${at}.tree must be a string`);
        return {
          tree: r.tree,
          pid: Number(num(`${at}.pid`, r.pid, MAX_PID)),
          start: num(`${at}.start`, r.start),
          size: num(`${at}.size`, r.size),
          prot: prot(`${at}.prot`, r.prot ?? 'rw-'),
        };
      }),
    };
  });
}

export function readManifest(path: string): ManifestBo[] {
  let text: string;
  try {
    text = readBoundedFile(path, MAX_MANIFEST_BYTES).toString('utf8');
  } catch (err) {
    if (err instanceof FileRefused) {
      throw new UsageError(
        err.why === 'not-regular'
          ? `manifest ${path} is not a regular file`
          : `manifest ${path} is ${err.size} bytes, more than ${MAX_MANIFEST_BYTES}: an open request must fit one frame`,
      );
    }
    throw new UsageError(`manifest ${path}: ${(err as Error).message}`);
  }
  return parseManifest(text, `manifest ${path}`);
}
