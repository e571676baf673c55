/**
 * The one typed facade over native/ (the node-addon-api addon). Maps errno
 * to NativeError with a stable code and the errno name.
 */
import { constants } from 'node:os';
import { join, resolve } from 'node:path';
import { ImageError, NativeError, errnoName } from '../errors';
import { projectRoot } from '../paths';
import type { FileObject, MemfdInode, Mount } from '../images/checkpoint-model';

interface Addon {
  pidfdOpen(pid: number): number;
  pidfdSendSignal(fd: number, signo: number): void;
  close(fd: number): void;
  setChildSubreaper(): void;
  raiseNofileLimit(): { before: number; after: number };
  processVmReadMany(pid: number, addrs: BigUint64Array, len: number): Promise<Buffer>;
  observeTree(root: number, wanted: BigUint64Array, samples: BigUint64Array): Promise<{ fields: BigUint64Array; digests: BigUint64Array }>;
  OBSERVED_FIELDS: number;
  kfdCriuOp(device: string, op: number, pid: number): Promise<void>;
  lockFile(path: string): number;
  KFD_IOC_CRIU_OP: number;
  KFD_CRIU_ARGS_SIZE: number;
  readCheckpointShared(dir: string): Promise<SharedObjectsRead>;
}

export { NativeError };

let addon: Addon | null = null;
function load(): Addon {
  if (!addon) {
    const path = resolve(projectRoot, 'native/build/Release/stagegate_native.node');
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      addon = require(path) as Addon;
    } catch (err) {
      throw new NativeError('dlopen', 0, `native addon not built at ${path}: run 'npm run setup'`, { cause: err });
    }
  }
  return addon;
}

function wrap(err: unknown, what: string): never {
  const e = err as { errno?: number; syscall?: string; message?: string };
  if (typeof e?.errno === 'number') {
    throw new NativeError(e.syscall ?? what, e.errno, `${what}: ${errnoName(e.errno)} (${e.message})`, { cause: err });
  }
  throw err;
}

/** A process pinned by a pidfd: signals can never hit a recycled pid. */
export class PidFd {
  private constructor(
    readonly pid: number,
    private fd: number,
  ) {}

  static open(pid: number): PidFd {
    try {
      return new PidFd(pid, load().pidfdOpen(pid));
    } catch (err) {
      return wrap(err, `pidfd_open(${pid})`);
    }
  }

  signal(signo: number): void {
    if (this.fd < 0) throw new NativeError('pidfd_send_signal', constants.errno.EBADF, `pidfd of ${this.pid} is closed`);
    try {
      load().pidfdSendSignal(this.fd, signo);
    } catch (err) {
      wrap(err, `pidfd_send_signal(${this.pid}, ${signo})`);
    }
  }

  close(): void {
    if (this.fd >= 0) load().close(this.fd);
    this.fd = -1;
  }
}

/** Raises this process's soft open-file limit to its hard limit; returns both soft values. */
export function raiseNofileLimit(): { before: number; after: number } {
  try {
    return load().raiseNofileLimit();
  } catch (err) {
    return wrap(err, 'setrlimit(RLIMIT_NOFILE)');
  }
}

/** Makes this process the reaper of its orphaned descendants (PR_SET_CHILD_SUBREAPER). */
export function setChildSubreaper(): void {
  try {
    load().setChildSubreaper();
  } catch (err) {
    wrap(err, 'prctl(PR_SET_CHILD_SUBREAPER)');
  }
}

/** Reads `len` bytes at `addr` of process `pid` (off the JS thread). */
export async function processVmRead(pid: number, addr: bigint, len: number): Promise<Buffer> {
  return (await processVmReadMany(pid, [addr], len))[0]!;
}

/**
 * `len` bytes at each address of another process, in as few system calls as
 * the kernel allows; one Buffer per address. Rejects with the first address
 * that could not be read.
 */
export async function processVmReadMany(pid: number, addrs: bigint[], len: number): Promise<Buffer[]> {
  if (addrs.length === 0 || len === 0) return addrs.map(() => Buffer.alloc(0));
  try {
    const all = await load().processVmReadMany(pid, BigUint64Array.from(addrs), len);
    return addrs.map((_, i) => all.subarray(i * len, (i + 1) * len));
  } catch (err) {
    const at = (err as { address?: bigint }).address ?? addrs[0]!;
    return wrap(err, `process_vm_readv(${pid}, 0x${at.toString(16)}, ${len})`);
  }
}

/** One mapping the verify activator looks for in a restored tree: a task (by its checkpoint pid) and a range. */
export interface WantedMapping {
  nsPid: number;
  start: bigint;
  end: bigint;
  /** the object offset at `start` (the checkpoint's pgoff); 0 when not given */
  pgoff?: bigint;
  /** object offsets of pages to sample (page-aligned, inside the mapping, at most 64) */
  samples?: bigint[];
}

/** What the tree shows of a wanted mapping. */
export interface LiveMapping {
  /** host pid of the task in the tree; 0: no such task in it */
  hostPid: number;
  /** a live VMA starts at the wanted start ('at'), one contains it ('around'), or none does */
  found: 'no-task' | 'at' | 'around' | 'none';
  /** that VMA ('at' or 'around'): its range and the permissions of /proc/PID/maps ('rw-s') */
  start: bigint;
  end: bigint;
  perms: string;
  /** the object behind it (stat of /proc/PID/map_files/START-END) as dev:ino, when 'at' with the wanted end */
  object: string;
  /** errno of that stat when it failed, else 0 */
  statErrno: number;
  /**
   * per wanted sample, the first 64 bits of the SHA-1 of its page as 16 hex digits (the
   * verify activator's sampleDigest); null when the pages were not read: the mapping is not
   * there exactly, has no object, or is not readable and shared
   */
  samples: string[] | null;
}

const FOUND = ['no-task', 'at', 'around', 'none'] as const;

/**
 * The tasks of the tree rooted at host pid `root` (every descendant), and for
 * each wanted mapping its task's VMA and backing object, read from /proc, and
 * the digests of its sampled pages (process_vm_readv), in one call off the JS
 * thread. A page-cache range that several mappings of the tree share (same
 * object, offset and size) is read once. Rejects when a task's maps or a
 * sampled page cannot be read.
 */
export async function observeTree(root: number, wanted: WantedMapping[]): Promise<LiveMapping[]> {
  const flat = new BigUint64Array(wanted.length * 5);
  const samples = new BigUint64Array(wanted.reduce((n, w) => n + (w.samples?.length ?? 0), 0));
  let at = 0;
  wanted.forEach((w, i) => {
    const n = w.samples?.length ?? 0;
    flat.set([BigInt(w.nsPid), w.start, w.end, w.pgoff ?? 0n, BigInt(n)], i * 5);
    if (n) samples.set(w.samples!, at);
    at += n;
  });
  let out: { fields: BigUint64Array; digests: BigUint64Array };
  try {
    out = await load().observeTree(root, flat, samples);
  } catch (err) {
    const e = err as { pid?: number; address?: bigint };
    if (e?.address !== undefined) return wrap(err, `process_vm_readv(${e.pid}, 0x${e.address.toString(16)}, 4096)`);
    return wrap(err, `reading the tree rooted at ${root} from /proc`);
  }
  const n = load().OBSERVED_FIELDS;
  at = 0;
  return wanted.map((w, i) => {
    const f = out.fields.subarray(i * n, (i + 1) * n);
    const perms = Number(f[4]!);
    const found = FOUND[Number(f[1]!)] ?? 'none';
    const statErrno = Number(f[7]!);
    const count = w.samples?.length ?? 0;
    const digests = out.digests.subarray(at, at + count);
    at += count;
    return {
      hostPid: Number(f[0]!),
      found,
      start: f[2]!,
      end: f[3]!,
      perms: String.fromCharCode(perms & 0xff, (perms >> 8) & 0xff, (perms >> 16) & 0xff, (perms >>> 24) & 0xff),
      object: found === 'at' && f[3] === w.end && !statErrno ? `${f[5]}:${f[6]}` : '',
      statErrno,
      samples: f[8] ? Array.from(digests, (d) => d.toString(16).padStart(16, '0')) : null,
    };
  });
}

/** enum kfd_criu_op (include/uapi/linux/kfd_ioctl.h) */
export const KfdCriuOp = { PROCESS_INFO: 0, CHECKPOINT: 1, UNPAUSE: 2, RESTORE: 3, RESUME: 4 } as const;

/** AMDKFD_IOC_CRIU_OP and the size of its argument, as compiled into the addon. */
export function kfdAbi(): { ioctl: number; argsSize: number } {
  return { ioctl: load().KFD_IOC_CRIU_OP, argsSize: load().KFD_CRIU_ARGS_SIZE };
}

/** Runs a KFD CRIU operation for `pid` on `device` (normally /dev/kfd), off the JS thread. */
export async function kfdCriuOp(device: string, op: number, pid: number): Promise<void> {
  try {
    await load().kfdCriuOp(device, op, pid);
  } catch (err) {
    wrap(err, `AMDKFD_IOC_CRIU_OP(op ${op}, pid ${pid}) on ${device}`);
  }
}

/** An exclusive, non-blocking flock on `path`, held until release() (or the process ends). */
export class FileLock {
  private constructor(
    readonly path: string,
    private fd: number,
  ) {}

  /** Throws NativeError EWOULDBLOCK when another process holds the lock. */
  static acquire(path: string): FileLock {
    try {
      return new FileLock(path, load().lockFile(path));
    } catch (err) {
      return wrap(err, `lock ${path}`);
    }
  }

  release(): void {
    if (this.fd >= 0) load().close(this.fd);
    this.fd = -1;
  }
}

/**
 * What a checkpoint holds for the verify activator, read natively
 * (native/checkpoint_reader.cc): every task, with only its VMAs that can share
 * an object ([start, end, pgoff, shmid, prot, flags, status] each), and the
 * files, memfd inodes and mounts those name.
 */
export interface SharedObjectsRead {
  tasks: { pid: number; ppid: number; threads: number[]; vmas: BigUint64Array }[];
  files: FileObject[];
  memfds: MemfdInode[];
  mounts: Mount[];
}

/** Reads checkpoint `dir` off the JS thread; rejects with an ImageError naming the file and offset. */
export async function readCheckpointShared(dir: string): Promise<SharedObjectsRead> {
  try {
    return await load().readCheckpointShared(dir);
  } catch (err) {
    const e = err as { file?: unknown; offset?: unknown; detail?: unknown };
    if (typeof e.file === 'string' && typeof e.offset === 'number' && typeof e.detail === 'string')
      throw new ImageError(e.file ? join(dir, e.file) : dir, e.offset, e.detail);
    throw err;
  }
}
