/**
 * Reads what stagegate needs from a CRIU checkpoint directory: the process
 * tree, each task's VMAs and the objects behind shared mappings. Plain data
 * out; every problem is an ImageError naming the file (and offset).
 */
import { existsSync, lstatSync, accessSync, constants, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type Long from 'long';
import { criu } from './generated/criu';
import { MAGIC, big, readEntries } from './image-file';
import { ImageError } from '../errors';
import type { Checkpoint, FileObject, MemfdInode, Mount, Task, Vma } from './checkpoint-model';
import { readCheckpointShared } from '../native';

export type { Checkpoint };

/** A name as criu reads it (protobuf-c gives C strings): up to a NUL, which no path or memfd name holds. */
const cString = (s: string | null | undefined): string => {
  const v = s ?? '';
  const nul = v.indexOf('\0');
  return nul < 0 ? v : v.slice(0, nul);
};

/** More tasks than any tree restored through one criu (PID_MAX_LIMIT is 4,194,304; 65,536 tasks is already huge). */
const MAX_TASKS = 65536;

/** Refuses anything but a readable real directory (no symlink is followed). */
export function checkImageDir(dir: string): void {
  let st;
  try {
    st = lstatSync(dir);
  } catch (err) {
    throw new ImageError(dir, 0, `cannot open checkpoint directory: ${(err as Error).message}`, { cause: err });
  }
  if (!st.isDirectory()) throw new ImageError(dir, 0, 'not a directory (symlinks are not followed)');
  try {
    accessSync(dir, constants.R_OK | constants.X_OK);
  } catch (err) {
    throw new ImageError(dir, 0, 'checkpoint directory is not readable', { cause: err });
  }
}

export function readCheckpoint(dir: string): Checkpoint {
  checkImageDir(dir);
  const pstreePath = join(dir, 'pstree.img');
  const pstree = readEntries(pstreePath, MAGIC.pstree, (b) => criu.PstreeEntry.decode(b), undefined, {
    maxBytes: 16 << 20,
    maxEntries: MAX_TASKS,
  });
  if (pstree.length === 0) throw new ImageError(pstreePath, 8, 'no task in the process tree');
  const tasks: Task[] = pstree.map((p, i) => {
    if (!p.pid) throw new ImageError(pstreePath, 8, `entry ${i} has no pid`);
    const mmPath = join(dir, `mm-${p.pid}.img`);
    const mm = existsSync(mmPath) ? readEntries(mmPath, MAGIC.mm, (b) => criu.MmEntry.decode(b), undefined, { maxEntries: 1 }) : [];
    const vmas = (mm[0]?.vmas ?? []).map((v, j): Vma => {
      const start = big(v.start as Long);
      const end = big(v.end as Long);
      if (end <= start) throw new ImageError(mmPath, 8, `VMA ${j} ends (0x${end.toString(16)}) before it starts (0x${start.toString(16)})`);
      return {
        start,
        end,
        pgoff: big(v.pgoff as Long),
        shmid: big(v.shmid as Long),
        prot: v.prot ?? 0,
        flags: v.flags ?? 0,
        status: v.status ?? 0,
      };
    });
    return { pid: p.pid, ppid: p.ppid ?? 0, threads: p.threads ?? [], vmas };
  });

  const files = new Map<number, FileObject>();
  const filesPath = join(dir, 'files.img');
  if (existsSync(filesPath)) {
    for (const f of readEntries(filesPath, MAGIC.files, (b) => criu.FileEntry.decode(b))) {
      const id = f.id ?? 0;
      if (f.reg) files.set(id, { kind: 'reg', id, name: cString(f.reg.name), mntId: f.reg.mntId ?? -1, size: big(f.reg.size as Long) });
      else if (f.memfd) files.set(id, { kind: 'memfd', id, inodeId: f.memfd.inodeId ?? 0 });
      else files.set(id, { kind: 'other', id, type: f.type ?? 0 });
    }
  }
  const memfdInodes = new Map<number, MemfdInode>();
  const memfdPath = join(dir, 'memfd.img');
  if (existsSync(memfdPath)) {
    for (const m of readEntries(memfdPath, MAGIC.memfd, (b) => criu.MemfdInodeEntry.decode(b))) {
      const inodeId = Number(big(m.inodeId as Long));
      memfdInodes.set(inodeId, { inodeId, name: cString(m.name), size: big(m.size as Long), shmid: m.shmid ?? 0 });
    }
  }
  const mounts = new Map<number, Mount>();
  for (const name of readdirSync(dir).filter((n) => /^mountpoints-\d{1,10}\.img$/.test(n))) {
    for (const m of readEntries(join(dir, name), MAGIC.mnts, (b) => criu.MntEntry.decode(b), undefined, { maxEntries: 100_000 })) {
      const mntId = m.mntId ?? 0;
      mounts.set(mntId, { mntId, rootDev: m.rootDev ?? 0, root: cString(m.root), mountpoint: cString(m.mountpoint) });
    }
  }
  return { dir, tasks, files, memfdInodes, mounts };
}

/**
 * What sharedMappings needs of a checkpoint, read natively off the event loop
 * (the daemon at every restore): every task, only its VMAs that can share an
 * object, and the files, memfd inodes and mounts those name. The same files,
 * bounds, checks and errors as readCheckpoint, which reads everything.
 */
export async function readSharedCheckpoint(dir: string): Promise<Checkpoint> {
  const r = await readCheckpointShared(dir);
  const tasks: Task[] = r.tasks.map((t) => {
    const vmas: Vma[] = [];
    for (let i = 0; i < t.vmas.length; i += 7) {
      const v = t.vmas;
      vmas.push({
        start: v[i]!,
        end: v[i + 1]!,
        pgoff: v[i + 2]!,
        shmid: v[i + 3]!,
        prot: Number(v[i + 4]),
        flags: Number(v[i + 5]),
        status: Number(v[i + 6]),
      });
    }
    return { pid: t.pid, ppid: t.ppid, threads: t.threads, vmas };
  });
  const files = new Map(r.files.map((f) => [f.id, f]));
  const memfdInodes = new Map(r.memfds.map((m) => [m.inodeId, m]));
  const mounts = new Map(r.mounts.map((m) => [m.mntId, m]));
  return { dir, tasks, files, memfdInodes, mounts };
}
