/**
 * Pure comparison of a BO's live observations (one per mapper): each mapping
 * must be present exactly as recorded, every mapper must be backed by the same
 * object, and sampled bytes must agree. Returns the first problem as a reason
 * naming the BO, the task and the address, or null when the BO is consistent.
 */
import { createHash } from 'node:crypto';
import type { MappingRef, Observation } from './model';

const PAGE = 4096n;
/** Sampled object offsets are multiples of this, so every mapper samples the same offsets. */
export const SAMPLE_STRIDE = 256n * 1024n;
export const MAX_SAMPLES = 64;

/** Object offsets to sample for a mapping (the same for every mapper of an object). */
export function sampleOffsets(pgoff: bigint, size: bigint): bigint[] {
  const out: bigint[] = [];
  let off = ((pgoff + SAMPLE_STRIDE - 1n) / SAMPLE_STRIDE) * SAMPLE_STRIDE;
  for (; off + PAGE <= pgoff + size && out.length < MAX_SAMPLES; off += SAMPLE_STRIDE) out.push(off);
  return out;
}

/** How a sampled page is compared (between mappers, and with the checkpoint's copy). */
export const sampleDigest = (page: Uint8Array): string => createHash('sha1').update(page).digest('hex').slice(0, 16);

export const mapperKey = (m: { tree: string; pid: number; start: bigint }): string => `${m.tree}/${m.pid}@0x${m.start.toString(16)}`;

export function compareBo(bo: string, mappers: MappingRef[], observations: Map<string, Observation>): string | null {
  const label = mappers[0]?.label ?? bo;
  const where = (m: { tree: string; pid: number; start: bigint }) => `tree ${m.tree} task ${m.pid} at 0x${m.start.toString(16)}`;
  const obs: Observation[] = [];
  for (const m of mappers) {
    const o = observations.get(mapperKey(m));
    if (!o) return `BO ${label} (${bo}): ${where(m)} was not observed`;
    if (o.problem) return `BO ${label} (${bo}): ${where(m)}: ${o.problem}`;
    obs.push(o);
  }
  // Report what differs: the backing object and the bytes, both when both do.
  const first = obs[0]!;
  const problems: string[] = [];
  const other = obs.slice(1).find((o) => o.object !== first.object);
  if (other) problems.push(`${where(other)} is backed by object ${other.object}, but ${where(first)} by ${first.object}`);
  content: for (const o of obs.slice(1)) {
    for (const [offset, hash] of Object.entries(o.samples)) {
      const h = first.samples[offset];
      if (h !== undefined && h !== hash) {
        problems.push(`content differs at object offset 0x${Number(offset).toString(16)} between ${where(first)} and ${where(o)}`);
        break content;
      }
    }
  }
  return problems.length ? `BO ${label} (${bo}): ${problems.join('; ')}` : null;
}
