/**
 * The BO graph of a session (pure): every shared object mapped by two or more
 * tasks, within a tree or across the trees of a session, with each mapper's
 * (tree, task, address, size, protection).
 *
 * How mappings are matched to objects (CRIU's image semantics):
 * - SysV shm and classic shared anonymous memory: the VMA's shmid, which is
 *   only meaningful within one checkpoint (one tree);
 * - memfd (which is also how CRIU stores MAP_SHARED|MAP_ANONYMOUS memory in a
 *   privileged dump, named "/dev/zero"): shmid is a files.img id, which can
 *   differ between tasks for the same object, so group by the memfd's inode;
 * - regular files (e.g. /dev/shm segments): path plus mount id, which is the
 *   same object across trees restored on one host.
 */
import type { Checkpoint, FileObject, MemfdInode } from './checkpoint-model';
import type { MappingRef } from './model';

// criu/include/image.h (VMA status bits, part of the image ABI)
export const VMA_FILE_SHARED = 1 << 7;
export const VMA_ANON_SHARED = 1 << 8;
export const VMA_AREA_SYSVIPC = 1 << 10;
export const VMA_AREA_MEMFD = 1 << 14;
const MAP_SHARED = 0x01;

export type BoKind = 'anon-shared' | 'memfd' | 'file' | 'sysv-shm' | 'manifest';

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

function objectOf(
  tree: string,
  status: number,
  flags: number,
  shmid: bigint,
  files: Map<number, FileObject>,
  inodes: Map<number, MemfdInode>,
): { key: string; kind: BoKind; label: string } | null {
  if (status & VMA_AREA_SYSVIPC) return { key: `sysv:${tree}:${shmid}`, kind: 'sysv-shm', label: `SysV shm ${shmid}` };
  if (status & VMA_AREA_MEMFD) {
    if (!(flags & MAP_SHARED)) return null;
    const f = files.get(Number(shmid));
    const inode = f?.kind === 'memfd' ? inodes.get(f.inodeId) : undefined;
    const id = f?.kind === 'memfd' ? f.inodeId : Number(shmid);
    return { key: `memfd:${tree}:${id}`, kind: 'memfd', label: inode ? `memfd ${inode.name}` : `memfd #${id}` };
  }
  if (status & VMA_ANON_SHARED) return { key: `anon:${tree}:${shmid}`, kind: 'anon-shared', label: `shared anonymous #${shmid}` };
  if (status & VMA_FILE_SHARED) {
    const f = files.get(Number(shmid));
    if (f?.kind !== 'reg') return { key: `file:${tree}:${shmid}`, kind: 'file', label: `file #${shmid}` };
    return { key: `file:${f.mntId}:${f.name}`, kind: 'file', label: f.name };
  }
  return null;
}

/** Every shared mapping of a tree's checkpoint, keyed (`bo`) by the object behind it. */
export function sharedMappings(tree: string, cp: Checkpoint): MappingRef[] {
  const out: MappingRef[] = [];
  for (const t of cp.tasks) {
    for (const v of t.vmas) {
      const o = objectOf(tree, v.status, v.flags, v.shmid, cp.files, cp.memfdInodes);
      if (o) out.push({ bo: o.key, kind: o.kind, label: o.label, tree, pid: t.pid, start: v.start, size: v.end - v.start, prot: v.prot, pgoff: v.pgoff });
    }
  }
  return out;
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
export function boGraph(trees: { tree: string; checkpoint: Checkpoint }[]): Bo[] {
  const groups = groupBos(trees.flatMap(({ tree, checkpoint }) => sharedMappings(tree, checkpoint)));
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
