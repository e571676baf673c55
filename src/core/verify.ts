/**
 * Pure comparison of a BO's live observations (one per mapper): each mapping
 * must be present exactly as recorded, every mapper must be backed by the same
 * object, and sampled bytes must agree. Returns the first problem as a reason
 * naming the BO, the task and the address, or null when the BO is consistent.
 */
import type { MappingRef, Observation } from './model';

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
  const first = obs[0]!;
  for (const o of obs.slice(1)) {
    if (o.object !== first.object) {
      return `BO ${label} (${bo}): ${where(o)} is backed by object ${o.object}, but ${where(first)} by ${first.object}`;
    }
  }
  for (const o of obs.slice(1)) {
    for (const [offset, hash] of Object.entries(o.samples)) {
      const h = first.samples[offset];
      if (h !== undefined && h !== hash) {
        return `BO ${label} (${bo}): content differs at object offset 0x${Number(offset).toString(16)} between ${where(first)} and ${where(o)}`;
      }
    }
  }
  return null;
}
