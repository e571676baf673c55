/**
 * What CRIU's VMA entries mean (criu/include/image.h: the status bits are part
 * of the image ABI): which object backs a mapping, and the mappings of a
 * checkpoint that share an object. The pure BO logic (src/core/bo-graph.ts)
 * only sees the MappingRefs made here.
 *
 * How mappings are matched to objects:
 * - SysV shm and classic shared anonymous memory: the VMA's shmid, which is
 *   only meaningful within one checkpoint (one tree);
 * - memfd (which is also how CRIU stores MAP_SHARED|MAP_ANONYMOUS memory in a
 *   privileged dump, named "/dev/zero"): shmid is a files.img id, which can
 *   differ between tasks for the same object, so group by the memfd's inode;
 * - regular files (e.g. /dev/shm segments): path plus mount id, which is the
 *   same object across trees restored on one host.
 */
import type { BoKind, MappingRef } from '../core/model';
import { type Bo, boGraph } from '../core/bo-graph';
import type { Checkpoint, FileObject, MemfdInode, Mount, Vma } from './checkpoint-model';
import { posix } from 'node:path';

export const VMA_FILE_PRIVATE = 1 << 6;
export const VMA_FILE_SHARED = 1 << 7;
export const VMA_ANON_SHARED = 1 << 8;
export const VMA_AREA_SYSVIPC = 1 << 10;
export const VMA_AREA_MEMFD = 1 << 14;
const MAP_SHARED = 0x01;

/** PROT_* as /proc/PID/maps writes them: "rw-". */
export const protString = (p: number): string => `${p & 1 ? 'r' : '-'}${p & 2 ? 'w' : '-'}${p & 4 ? 'x' : '-'}`;

/** What kind of mapping a VMA is, for people. */
export function vmaKind(v: Vma): string {
  if (v.status & VMA_AREA_SYSVIPC) return 'sysv-shm';
  if (v.status & VMA_AREA_MEMFD) return v.flags & MAP_SHARED ? 'memfd shared' : 'memfd private';
  if (v.status & VMA_ANON_SHARED) return 'anon shared';
  if (v.status & VMA_FILE_SHARED) return 'file shared';
  if (v.status & VMA_FILE_PRIVATE) return 'file private';
  return 'anon private';
}

/** The shmem id whose pagemap (pagemap-shmem-ID.img) holds this mapping's content, or null (a file, private memory). */
export function shmemOf(v: Vma, cp: Checkpoint): number | null {
  if (v.status & VMA_AREA_SYSVIPC || (v.status & VMA_ANON_SHARED && !(v.status & VMA_AREA_MEMFD))) return Number(v.shmid);
  if (v.status & VMA_AREA_MEMFD) {
    const f = cp.files.get(Number(v.shmid));
    const inode = f?.kind === 'memfd' ? cp.memfdInodes.get(f.inodeId) : undefined;
    return inode ? inode.shmid : null;
  }
  return null;
}

/**
 * A mapped file's identity across trees: in a tree with a mount namespace of
 * its own (a container), its filesystem's device and its path on that
 * filesystem, so that one file bind-mounted into two containers (at two mount
 * ids) is one object; otherwise (the host's mounts) its mount id and path.
 */
function fileKey(f: { name: string; mntId: number }, mounts: Map<number, Mount> | undefined): string {
  const m = mounts?.get(f.mntId);
  if (!m) return `file:${f.mntId}:${f.name}`;
  const under = m.mountpoint === '/' ? f.name : f.name.startsWith(`${m.mountpoint}/`) ? f.name.slice(m.mountpoint.length) : null;
  return under === null ? `file:${f.mntId}:${f.name}` : `file:dev${m.rootDev}:${posix.join(m.root || '/', under)}`;
}

function objectOf(
  tree: string,
  v: Vma,
  files: Map<number, FileObject>,
  inodes: Map<number, MemfdInode>,
  mounts?: Map<number, Mount>,
): { key: string; kind: BoKind; label: string } | null {
  const { status, flags, shmid } = v;
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
    return { key: fileKey(f, mounts), kind: 'file', label: f.name };
  }
  return null;
}

/** Every shared mapping of a tree's checkpoint, keyed (`bo`) by the object behind it. */
export function sharedMappings(tree: string, cp: Checkpoint): MappingRef[] {
  const out: MappingRef[] = [];
  for (const t of cp.tasks) {
    for (const v of t.vmas) {
      const o = objectOf(tree, v, cp.files, cp.memfdInodes, cp.mounts);
      if (o)
        out.push({
          bo: o.key,
          kind: o.kind,
          label: o.label,
          tree,
          pid: t.pid,
          start: v.start,
          size: v.end - v.start,
          prot: v.prot,
          pgoff: v.pgoff,
        });
    }
  }
  return out;
}

/** The BOs of several trees' checkpoints (what `stagegate images` lists). */
export function bosOfCheckpoints(trees: { tree: string; checkpoint: Checkpoint }[]): Bo[] {
  return boGraph(trees.flatMap(({ tree, checkpoint }) => sharedMappings(tree, checkpoint)));
}
