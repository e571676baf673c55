/**
 * /proc adapters for restored trees: descendants of a task, namespace pids,
 * and a race-free kill of a whole tree (every task pinned by a pidfd before
 * any signal is sent).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { PidFd } from '../native';

/** Direct children of a task (every thread's), empty when it is gone. */
export function childrenOf(pid: number): number[] {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const tid of tids) {
    try {
      for (const c of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/)) {
        if (c) out.push(Number(c));
      }
    } catch {
      // thread or task gone meanwhile
    }
  }
  return out;
}

/** Whether a task exists and has not exited (a zombie has exited). */
export function isLive(pid: number | string): boolean {
  try {
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** `root` and all its descendants (host pids), breadth first. */
export function treePids(root: number): number[] {
  const seen: number[] = [];
  const queue = [root];
  while (queue.length) {
    const p = queue.shift()!;
    try {
      readFileSync(`/proc/${p}/stat`);
    } catch {
      continue;
    }
    seen.push(p);
    queue.push(...childrenOf(p));
  }
  return seen;
}

/** The pid of a host task in its innermost pid namespace (NSpid's last field). */
export function innermostPid(hostPid: number): number {
  const line = readFileSync(`/proc/${hostPid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('NSpid:'));
  const fields = line?.split(/\s+/).slice(1).filter(Boolean) ?? [];
  return Number(fields[fields.length - 1] ?? hostPid);
}

/** Sends `sig` to every task of the tree rooted at `root`; returns how many tasks were signalled. */
export function signalTree(root: number, sig: number): number {
  const pinned: PidFd[] = [];
  for (const p of treePids(root)) {
    try {
      pinned.push(PidFd.open(p));
    } catch {
      // already gone
    }
  }
  let n = 0;
  for (const fd of pinned) {
    try {
      fd.signal(sig);
      n++;
    } catch {
      // exited between pin and signal
    } finally {
      fd.close();
    }
  }
  return n;
}

/** SIGKILLs the tree rooted at `root`; returns how many tasks were signalled. */
export const killTree = (root: number): number => signalTree(root, 9);

/** Start time of a task, in clock ticks since boot (/proc/PID/stat field 22); null when gone. */
export function startTime(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name may contain spaces: fields are counted after its closing parenthesis
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
  } catch {
    return null;
  }
}

/**
 * Sends `sig` to the tree rooted at `root` only if that root started no
 * earlier than `since` (a pid recycled by an older process is left alone).
 * The root is pinned by a pidfd before the check, so the check holds until
 * the signal.
 */
export function signalTreeStartedSince(root: number, since: number, sig: number): number {
  let pin: PidFd;
  try {
    pin = PidFd.open(root);
  } catch {
    return 0; // already gone
  }
  try {
    const started = startTime(root);
    return started !== null && started >= since ? signalTree(root, sig) : 0;
  } finally {
    pin.close();
  }
}
