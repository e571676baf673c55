/**
 * The one typed facade over native/ (the node-addon-api addon). Maps errno
 * to NativeError with a stable code and the errno name.
 */
import { constants } from 'node:os';
import { resolve } from 'node:path';
import { NativeError, errnoName } from '../errors';
import { projectRoot } from '../paths';

interface Addon {
  pidfdOpen(pid: number): number;
  pidfdSendSignal(fd: number, signo: number): void;
  close(fd: number): void;
  setChildSubreaper(): void;
  raiseNofileLimit(): { before: number; after: number };
  processVmReadMany(pid: number, addrs: BigUint64Array, len: number): Promise<Buffer>;
  kfdCriuOp(device: string, op: number, pid: number): Promise<void>;
  lockFile(path: string): number;
  KFD_IOC_CRIU_OP: number;
  KFD_CRIU_ARGS_SIZE: number;
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
