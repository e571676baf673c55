/** Reads a user BO manifest (JSON) into the wire form, with a specific error for every bad field. */
import { readFileSync } from 'node:fs';
import type { ManifestBo } from '../protocol/codec';
import { UsageError } from '../errors';

function num(where: string, v: unknown): bigint {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  if (typeof v === 'string' && /^(0x[0-9a-fA-F]+|[0-9]+)$/.test(v)) return BigInt(v);
  throw new UsageError(`manifest: ${where} must be a non-negative integer or a 0x… string, got ${JSON.stringify(v)}`);
}

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
  return bos.map((b, i) => {
    const id = (b as { id?: unknown })?.id;
    const mappers = (b as { mappers?: unknown })?.mappers;
    if (typeof id !== 'string') throw new UsageError(`${source}: bos[${i}].id must be a string`);
    if (!Array.isArray(mappers) || mappers.length === 0) throw new UsageError(`${source}: bos[${i}].mappers must be a non-empty list`);
    return {
      id,
      mappers: mappers.map((m, j) => {
        const at = `bos[${i}].mappers[${j}]`;
        const r = m as Record<string, unknown>;
        if (typeof r?.tree !== 'string') throw new UsageError(`${source}: ${at}.tree must be a string`);
        return { tree: r.tree, pid: Number(num(`${at}.pid`, r.pid)), start: num(`${at}.start`, r.start), size: num(`${at}.size`, r.size), prot: prot(`${at}.prot`, r.prot ?? 'rw-') };
      }),
    };
  });
}

export function readManifest(path: string): ManifestBo[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`manifest ${path}: ${(err as Error).message}`);
  }
  return parseManifest(text, `manifest ${path}`);
}
