/**
 * Loaded into every test file's process (scripts/test.sh, --import): once the
 * file's tests and cleanups are done, any process started since the file
 * began that is still running fails the file, listed by pid and command line,
 * and is killed so that it cannot disturb the next file; so does anything new
 * left in /tmp or /dev/shm, a network namespace or a mount (listed, then
 * removed). Every test must end what it started (restored trees, daemons,
 * guardians, helpers, temporary directories, namespaces, mounts).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, rmSync, writeSync } from 'node:fs';

/** How long leftovers may take to go (a guardian or watchdog finishing its work). */
const GRACE_MS = 5000;
const ESBUILD_SERVICE = /\/node_modules\/@esbuild\/[^/]+\/bin\/esbuild --service=/;

interface Proc {
  pid: number;
  ppid: number;
  state: string;
  start: number;
}

function stat(pid: number): Proc | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { pid, state: f[0]!, ppid: Number(f[1]), start: Number(f[19]) };
  } catch {
    return null;
  }
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return '';
  }
}

/** Our own ancestors: the test runner and whatever started it. */
function ancestors(): Set<number> {
  const out = new Set<number>();
  for (let p = stat(process.pid); p && p.ppid > 0 && !out.has(p.ppid); p = stat(p.ppid)) out.add(p.ppid);
  return out;
}

/**
 * Processes started since `since` and still running that this file's tests
 * may have left: descendants of this process, of its ancestors, or orphans
 * adopted by init. Whatever descends from some other older process (a
 * developer's shell, a cron job) is not ours.
 */
function leftovers(since: number, mine: Set<number>): { pid: number; cmd: string }[] {
  const all = new Map<number, Proc>();
  for (const name of readdirSync('/proc')) {
    const p = Number.isInteger(Number(name)) ? stat(Number(name)) : null;
    if (p) all.set(p.pid, p);
  }
  const out: { pid: number; cmd: string }[] = [];
  for (const p of all.values()) {
    if (p.pid === process.pid || p.start < since || p.state === 'Z' || p.ppid === 2) continue;
    let a = all.get(p.ppid);
    while (a && a.start >= since && a.pid !== process.pid) a = all.get(a.ppid);
    if (a && a.pid !== 1 && a.pid !== process.pid && !mine.has(a.pid)) continue; // another old process's child
    const cmd = cmdline(p.pid);
    if (!cmd) continue; // kernel threads have no command line
    if (p.ppid === process.pid && ESBUILD_SERVICE.test(cmd)) continue; // tsx's compiler, ends with this process
    out.push({ pid: p.pid, cmd });
  }
  return out;
}

const TEMP_DIRS = ['/tmp', '/dev/shm'];
const entries = (dir: string) => new Set(readdirSync(dir).map((n) => `${dir}/${n}`));
const netns = () => new Set(readdirSync('/run/netns'));
/**
 * iproute2 makes /run/netns a shared mount of itself on its first `ip netns
 * add` and leaves it so, for every later namespace: whichever test file
 * comes first makes it, and it is no test's leftover (the namespaces in it
 * and their mounts are).
 */
const NETNS_DIR_MOUNT = '/run/netns';
const mounts = () =>
  new Set(
    readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .map((l) => l.split(' ')[4] ?? '')
      .filter((m) => m && m !== NETNS_DIR_MOUNT),
  );
const safe = <T>(f: () => Set<T>) => {
  try {
    return f();
  } catch {
    return new Set<T>();
  }
};

/** What the file left that was not there when it began: temp entries, network namespaces, mount points. */
function leftoverThings(before: { temp: Set<string>; netns: Set<string>; mounts: Set<string> }) {
  const added = <T>(now: Set<T>, then: Set<T>) => [...now].filter((x) => !then.has(x));
  return {
    temp: TEMP_DIRS.flatMap((d) =>
      added(
        safe(() => entries(d)),
        before.temp,
      ),
    ),
    netns: added(safe(netns), before.netns),
    mounts: added(safe(mounts), before.mounts),
  };
}

/** Sleeps without the event loop: the check runs in the 'exit' handler, where nothing asynchronous runs. */
const pause = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
const say = (line: string) => writeSync(2, `${line}\n`);

if (process.env.NODE_TEST_CONTEXT) {
  const since = stat(process.pid)!.start;
  const mine = ancestors();
  const before = { temp: new Set(TEMP_DIRS.flatMap((d) => [...safe(() => entries(d))])), netns: safe(netns), mounts: safe(mounts) };
  // On 'exit', not 'beforeExit': a test that fails before stopping what it started (a daemon with
  // its pipes, a subscriber) keeps the event loop alive, so the file would never end. scripts/test.sh
  // runs with --test-force-exit, which exits once the file's tests and hooks are done; this check then
  // finds and kills what they left.
  process.on('exit', () => {
    const end = Date.now() + GRACE_MS;
    let left = leftovers(since, mine);
    while (left.length && Date.now() < end) {
      pause(100);
      left = leftovers(since, mine);
    }
    if (left.length) {
      say(`leak check: ${left.length} process(es) this test file started are still running ${GRACE_MS} ms after its tests ended:`);
      for (const l of left) {
        say(`  ${l.pid} ${l.cmd.slice(0, 200)}`);
        try {
          process.kill(l.pid, 'SIGKILL');
        } catch {
          // gone meanwhile
        }
      }
      process.exitCode = 1;
    }
    const things = leftoverThings(before);
    for (const m of things.mounts.sort().reverse()) {
      say(`leak check: mount left behind: ${m}`);
      try {
        execFileSync('umount', ['-l', m]);
      } catch {
        // not ours to undo after all
      }
    }
    for (const n of things.netns) {
      say(`leak check: network namespace left behind: ${n}`);
      try {
        execFileSync('ip', ['netns', 'delete', n]);
      } catch {
        // gone meanwhile
      }
    }
    for (const t of things.temp) {
      say(`leak check: temporary file left behind: ${t}`);
      rmSync(t, { recursive: true, force: true });
    }
    if (things.mounts.length || things.netns.length || things.temp.length) process.exitCode = 1;
  });
}
