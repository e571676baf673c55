/**
 * The BO graph of a session (pure): every shared object mapped by two or more
 * tasks, within a tree or across the trees of a session, with each mapper's
 * (tree, task, address, size, protection). The mappings come from the images
 * (src/images/vma.ts says how a VMA names its object) or from a manifest.
 */
import type { BoKind, MappingRef } from './model';

export type { BoKind };

/** One task's mapping of a BO: (tree, task, address, size, protection). */
export type Mapper = Pick<MappingRef, 'tree' | 'pid' | 'start' | 'size' | 'prot' | 'pgoff'>;

export interface Bo {
  /** stable within a session: derived from the object, not from enumeration order */
  id: string;
  kind: BoKind;
  /** what a person recognises: a path, a memfd name, a SysV id */
  label: string;
  mappers: Mapper[];
}

/** Objects that can be shared across trees: only these make a tree wait for others' images. */
export const crossTree = (kind: BoKind): boolean => kind === 'file' || kind === 'manifest';

/** Groups mappings by object: the BOs are the groups with two or more mappers (manifest BOs always). */
export function groupBos(mappings: Iterable<MappingRef>): Map<string, MappingRef[]> {
  const groups = new Map<string, MappingRef[]>();
  for (const m of mappings) {
    const g = groups.get(m.bo);
    if (g) g.push(m);
    else groups.set(m.bo, [m]);
  }
  for (const [k, g] of groups) if (g.length < 2 && g[0]!.kind !== 'manifest') groups.delete(k);
  return groups;
}

/** The BOs of a session: objects with two or more mappers, in a stable order. */
export function boGraph(mappings: Iterable<MappingRef>): Bo[] {
  const groups = groupBos(mappings);
  const bos: Bo[] = [];
  for (const [key, ms] of groups) {
    const sorted = ms.sort((a, b) => (a.tree < b.tree ? -1 : a.tree > b.tree ? 1 : a.pid - b.pid || Number(a.start - b.start)));
    bos.push({
      id: key,
      kind: sorted[0]!.kind,
      label: sorted[0]!.label,
      mappers: sorted.map(({ tree, pid, start, size, prot, pgoff }) => ({ tree, pid, start, size, prot, pgoff })),
    });
  }
  return bos.sort((a, b) => (a.id < b.id ? -1 : 1));
}
