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

export interface Checkpoint {
  dir: string;
  tasks: Task[];
  files: Map<number, FileObject>;
  memfdInodes: Map<number, MemfdInode>;
}
