/** What stagegate knows of one tree's checkpoint, as plain data (read by src/images/). */
export interface Vma {
  start: bigint;
  end: bigint;
  pgoff: bigint;
  shmid: bigint;
  prot: number;
  flags: number;
  status: number;
}

export interface Task {
  pid: number;
  ppid: number;
  threads: number[];
  vmas: Vma[];
}

export type FileObject =
  | { kind: 'reg'; id: number; name: string; mntId: number; size: bigint }
  | { kind: 'memfd'; id: number; inodeId: number }
  | { kind: 'other'; id: number; type: number };

export interface MemfdInode {
  inodeId: number;
  name: string;
  size: bigint;
  shmid: number;
}

/** A mount of a tree with its own mount namespace (mountpoints-*.img). */
export interface Mount {
  mntId: number;
  /** the filesystem's device */
  rootDev: number;
  /** the subtree of the filesystem it mounts */
  root: string;
  /** where, in the tree's root */
  mountpoint: string;
}

export interface Checkpoint {
  dir: string;
  tasks: Task[];
  files: Map<number, FileObject>;
  memfdInodes: Map<number, MemfdInode>;
  /** by mount id; empty when the tree shares the host's mount namespace (criu then saves none) */
  mounts?: Map<number, Mount>;
}
