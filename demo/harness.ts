/**
 * Drives real workloads through real CRIU: start trees in their own pid
 * namespaces, read their status slots, checkpoint them, restore them through
 * stagegate, and run a coordinator as a child process. Used by the demo and
 * by the end-to-end tests.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, statSync, ftruncateSync, existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { Subscriber } from 'zeromq';
import { decodePublished, type PublishedMessage } from '../src/protocol/codec';
import { projectRoot, criuPath } from '../src/paths';
import { killTree } from '../src/proc/tree';

export const WORKLOAD = resolve(projectRoot, 'build/workload');
export const STAGEGATE = resolve(projectRoot, 'bin/stagegate');

// Layout shared with demo/workload.c.
const SLOTS_OFFSET = 4096;
const SLOT_SIZE = 128;
const SLOT_MAGIC = 0x53474154;
export const SHM_SIZE = 1 << 20;
export const PATTERN_SIZE = 1 << 20;

export interface Slot {
  tree: number;
  idx: number;
  pid: number;
  aAddr: bigint;
  bAddr: bigint;
  counter: bigint;
  lastMs: number;
  frozenAtMs: number;
  resumedAtMs: number;
  gaps: number;
  patternOk: boolean;
  peerSeen: bigint;
}

export function createShm(path: string): void {
  const fd = openSync(path, 'w+', 0o600);
  ftruncateSync(fd, SHM_SIZE);
  closeSync(fd);
}

export function readSlots(shm: string): Slot[] {
  const b = readFileSync(shm);
  const out: Slot[] = [];
  for (let off = SLOTS_OFFSET; off + SLOT_SIZE <= b.length; off += SLOT_SIZE) {
    if (b.readUInt32LE(off) !== SLOT_MAGIC) continue;
    out.push({
      tree: b.readUInt32LE(off + 4),
      idx: b.readUInt32LE(off + 8),
      pid: b.readInt32LE(off + 12),
      aAddr: b.readBigUInt64LE(off + 16),
      bAddr: b.readBigUInt64LE(off + 24),
      counter: b.readBigUInt64LE(off + 32),
      lastMs: Number(b.readBigUInt64LE(off + 40)),
      frozenAtMs: Number(b.readBigUInt64LE(off + 48)),
      resumedAtMs: Number(b.readBigUInt64LE(off + 56)),
      gaps: b.readUInt32LE(off + 64),
      patternOk: b.readUInt32LE(off + 68) === 1,
      peerSeen: b.readBigUInt64LE(off + 72),
    });
  }
  return out;
}

export const slotOf = (slots: Slot[], tree: number, idx: number): Slot | undefined => slots.find((s) => s.tree === tree && s.idx === idx);

/** The pattern demo/workload.c writes into A (for content checks). */
export function expectedPattern(tree: number): Buffer {
  const b = Buffer.alloc(PATTERN_SIZE);
  for (let i = 0; i < PATTERN_SIZE; i++) b[i] = (i * 131 + 17 * tree + (i >>> 12)) & 0xff;
  return b;
}

export interface RunningTree {
  index: number;
  /** host pid of the tree's root (pid 1 of its namespace) */
  rootPid: number;
  /** the `unshare` process that holds the namespace open until the root exits */
  unshare: ChildProcess;
}

/** Starts tree `index` of `procs` processes in new pid and IPC namespaces and a new session. */
export async function startTree(index: number, procs: number, shm: string, cwd?: string): Promise<RunningTree> {
  const unshare = spawn(
    'unshare',
    ['--pid', '--ipc', '--fork', 'setsid', WORKLOAD, '--tree', String(index), '--procs', String(procs), '--shm', shm],
    { stdio: 'ignore', detached: true, cwd },
  );
  return { index, rootPid: await firstChild(unshare.pid!), unshare };
}

/** The first child of `pid` (the root of what `unshare --fork` started), once there is one. */
export async function firstChild(pid: number, timeoutMs = 10_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
      if (kids) return Number(kids.split(/\s+/)[0]);
    } catch {
      // not there yet
    }
    await sleep(10);
  }
  throw new Error(`process ${pid} started no child in ${timeoutMs} ms`);
}

/** Waits until every process of the given trees has ticked a few times. */
export async function waitRunning(shm: string, trees: number[], procs: number, timeoutMs = 10_000): Promise<Slot[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const slots = readSlots(shm);
    const ok = trees.every((t) => [...Array(procs).keys()].every((i) => (slotOf(slots, t, i)?.counter ?? 0n) >= 5n));
    if (ok) return slots;
    if (Date.now() > deadline) throw new Error(`workload trees ${trees.join(',')} not running after ${timeoutMs} ms`);
    await sleep(20);
  }
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export function exited(child: ChildProcess): Promise<Exit> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode as NodeJS.Signals | null });
  }
  return new Promise((res) => child.once('exit', (code, signal) => res({ code, signal })));
}

/**
 * `child`'s exit once what it wrote to its pipes has been read: 'exit' can come before the last
 * 'data' of its stdout and stderr (a C driver that prints and exits at once loses its last line).
 * Their close is awaited for at most `graceMs`: a descendant that inherited them may hold them.
 */
export async function finished(child: ChildProcess, graceMs = 2000): Promise<Exit> {
  const e = await exited(child);
  const open = [child.stdout, child.stderr].filter((s): s is Readable => !!s && !s.closed);
  if (open.length > 0) {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(open.map((s) => new Promise((r) => s.once('close', r)))),
      new Promise((r) => (timer = setTimeout(r, graceMs))),
    ]);
    clearTimeout(timer);
  }
  return e;
}

export async function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Exit & { output: string }> {
  const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const e = await finished(child);
  return { ...e, output };
}

/** Checkpoints a running tree into `dir` (criu dump kills it) and waits until it is gone. */
export async function dumpTree(t: RunningTree, dir: string, log: string): Promise<void> {
  const r = await run(criuPath(), ['dump', '-t', String(t.rootPid), '-D', dir, '-o', log, '-v4']);
  if (r.code !== 0) throw new Error(`criu dump of tree ${t.index} failed (${r.code}):${tail(log)}`);
  await exited(t.unshare);
  // The dumped tasks' pids must be free again before a restore (see README).
  const deadline = Date.now() + 5000;
  while (existsSync(`/proc/${t.rootPid}`) && Date.now() < deadline) await sleep(20);
}

/** One tree's `stagegate dump` as part of a set of `trees` (criu kills it once the set is committed). */
async function dumpTogether(
  t: RunningTree,
  dir: string,
  log: string,
  trees: number,
  o: { endpoint: string; session: string },
): Promise<void> {
  const args = ['dump', '--session', o.session, '--tree', `tree${t.index}`, '--trees', String(trees), '--endpoint', o.endpoint];
  const r = await run(STAGEGATE, [...args, '--', '-t', String(t.rootPid), '-D', dir, '-o', log, '-v4']);
  if (r.code !== 0) throw new Error(`stagegate dump of tree ${t.index} failed (${r.code}): ${r.output}${tail(log)}`);
  await exited(t.unshare);
  const deadline = Date.now() + 5000;
  while (existsSync(`/proc/${t.rootPid}`) && Date.now() < deadline) await sleep(20);
}

/** sha256 of every file of a directory, by name. */
export function hashDir(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of readdirSync(dir).sort()) {
    const p = join(dir, f);
    if (statSync(p).isFile()) out[f] = createHash('sha256').update(readFileSync(p)).digest('hex');
  }
  return out;
}

export interface RestoreRun {
  child: ChildProcess;
  done: Promise<Exit & { output: string }>;
  pidfile: string;
}

/** Runs `stagegate restore` for one tree (criu -d: returns once the tree runs). */
export function restoreTree(o: {
  endpoint: string;
  session: string;
  tree: string;
  trees: number;
  images: string;
  workDir: string;
  attempt?: number;
  timeoutS?: number;
  extraEnv?: NodeJS.ProcessEnv;
  criuArgs?: string[];
  /** a command that runs `stagegate restore`, e.g. ['ip', 'netns', 'exec', 'host1'] */
  via?: string[];
  /** in a process group of its own (as a batch scheduler runs it) */
  detached?: boolean;
}): RestoreRun {
  const workDir = join(o.workDir, `restore-${o.tree}.a${o.attempt ?? 1}`);
  mkdirSync(workDir, { recursive: true });
  const pidfile = join(workDir, 'root.pid');
  const log = join(workDir, 'restore.log');
  const args = [
    'restore',
    '--session',
    o.session,
    '--tree',
    o.tree,
    '--trees',
    String(o.trees),
    '--endpoint',
    o.endpoint,
    '--attempt',
    String(o.attempt ?? 1),
    '--timeout',
    String(o.timeoutS ?? 30),
    '--',
    // A work dir of its own: criu writes stats-restore into its work dir, and
    // the images dir must stay byte-for-byte unchanged.
    '-D',
    o.images,
    '-W',
    workDir,
    '-d',
    '--pidfile',
    pidfile,
    '-o',
    log,
    '-v4',
    ...(o.criuArgs ?? []),
  ];
  const [cmd, ...pre] = [...(o.via ?? []), STAGEGATE];
  const child = spawn(cmd!, [...pre, ...args], {
    env: { ...process.env, ...o.extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: o.detached ?? false,
  });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  return { child, pidfile, done: finished(child).then((e) => ({ ...e, output: output + tail(log) })) };
}

function tail(path: string): string {
  try {
    return '\n--- criu log tail ---\n' + readFileSync(path, 'utf8').split('\n').slice(-15).join('\n');
  } catch {
    return '';
  }
}

export function readPidfile(path: string): number | null {
  try {
    return Number(readFileSync(path, 'utf8').trim()) || null;
  } catch {
    return null;
  }
}

/** A coordinator daemon run as a child process (`stagegate serve`), logging to DIR/daemon.log. */
export class Daemon {
  readonly messages: PublishedMessage[] = [];
  private sub: Subscriber | null = null;

  private constructor(
    readonly child: ChildProcess,
    readonly endpoint: string,
    readonly events: string,
    readonly logFile: string,
  ) {}

  /** The daemon's JSON log lines so far. */
  logs(): string[] {
    return readFileSync(this.logFile, 'utf8').split('\n').filter(Boolean);
  }

  static async start(
    dir: string,
    timeoutS = 30,
    activator: 'verify' | 'none' = 'verify',
    name = '',
    extra: string[] = [],
    env: NodeJS.ProcessEnv = process.env,
    /** a command that runs `stagegate serve`, e.g. ['prlimit', '--nofile=1024:'] */
    via: string[] = [],
    /**
     * collect what it publishes into `messages` (tests, the demo); the benchmarks that do not read
     * them say false: decoding every message in the measuring process took the same cores the
     * measured restores run on (~6 ms of CPU per restored tree)
     */
    subscribe = true,
  ): Promise<Daemon> {
    const endpoint = `ipc://${dir}/hooks${name}.sock`;
    const events = `ipc://${dir}/events${name}.sock`;
    // A file, not a pipe: a pipe the parent is slow to drain would block the daemon's writes.
    // a restarted daemon on the same endpoints gets a log of its own
    let logFile = join(dir, `daemon${name}.log`);
    for (let n = 2; existsSync(logFile); n++) logFile = join(dir, `daemon${name}-${n}.log`);
    const fd = openSync(logFile, 'a');
    const [cmd, ...pre] = [...via, STAGEGATE];
    const child = spawn(
      cmd!,
      [...pre, 'serve', '--listen', endpoint, '--events', events, '--deadline', String(timeoutS), '--activator', activator, ...extra],
      {
        stdio: ['ignore', 'ignore', fd],
        env,
      },
    );
    closeSync(fd);
    const d = new Daemon(child, endpoint, events, logFile);
    const deadline = Date.now() + 15_000;
    while (!d.logs().some((l) => l.includes('coordinator listening'))) {
      if (child.exitCode !== null) throw new Error(`stagegate serve exited: ${d.logs().join('\n')}`);
      if (Date.now() > deadline) throw new Error('stagegate serve did not start in 15 s');
      await sleep(20);
    }
    if (!subscribe) return d;
    d.sub = new Subscriber({ receiveHighWaterMark: 0 });
    d.sub.connect(events);
    d.sub.subscribe();
    void (async () => {
      for await (const [, frame] of d.sub!) d.messages.push(decodePublished(frame!));
    })().catch(() => {});
    await sleep(100); // let the subscription reach the publisher
    return d;
  }

  async stop(): Promise<void> {
    this.sub?.close();
    if (this.child.exitCode === null) {
      this.child.kill('SIGTERM');
      await exited(this.child);
    }
  }
}

export { killTree, sleep };

/**
 * The benchmark's Node.js floor (bench/floor-daemon.ts: a bare zeromq.js ROUTER that answers every
 * gate at once) on an endpoint of its own in `dir`, once it listens (15 s at most, as Daemon.start).
 */
export async function startFloorDaemon(dir: string): Promise<{ endpoint: string; child: ChildProcess }> {
  const endpoint = `ipc://${dir}/floor.sock`;
  const child = spawn('node', ['--import', 'tsx', join(projectRoot, 'bench/floor-daemon.ts'), endpoint], {
    stdio: ['ignore', 'ignore', 'pipe'],
    cwd: projectRoot,
  });
  let err = '';
  let timer: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((res, rej) => {
      child.stderr!.on('data', (b: Buffer) => {
        err += b.toString();
        if (err.includes('floor daemon listening')) res();
      });
      child.once('exit', () => rej(new Error(`floor daemon exited: ${err}`)));
      timer = setTimeout(() => rej(new Error(`floor daemon did not start in 15 s: ${err}`)), 15_000);
    });
  } catch (e) {
    if (child.exitCode === null) {
      child.kill('SIGKILL');
      await exited(child);
    }
    throw e;
  } finally {
    clearTimeout(timer);
  }
  return { endpoint, child };
}

export interface Checkpoint {
  shm: string;
  /** every status file of the trees (one, or one per tree when separate) */
  shmFiles: string[];
  /** images dir per tree index */
  images: string[];
  /** the slots as they were when the trees were checkpointed */
  slots: Slot[];
  /** sha256 of every image file, per tree index */
  hashes: Record<string, string>[];
}

/**
 * Starts `trees` workload trees of `procs` processes, lets them run, and
 * checkpoints each into dir/images-K. With `separate`, each tree gets its own
 * status file (shm-K), so the trees share nothing.
 */
export async function checkpointTrees(
  dir: string,
  trees: number,
  procs: number,
  shm: string,
  separate = false,
  /** dump every tree at once through `stagegate dump` (one committed set) instead of one plain criu dump after another */
  coordinated?: { endpoint: string; session: string },
): Promise<Checkpoint> {
  const shmOf = (k: number) => (separate ? `${shm}-${k}` : shm);
  for (let k = 0; k < (separate ? trees : 1); k++) createShm(shmOf(k));
  const running: RunningTree[] = [];
  for (let k = 0; k < trees; k++) {
    // a cwd of its own: trees dumped at once must not share one (criu's parasite mounts proc at ./proc.crtools)
    const cwd = join(dir, `cwd-${k}`);
    mkdirSync(cwd, { recursive: true });
    running.push(await startTree(k, procs, shmOf(k), cwd));
  }
  for (let k = 0; k < (separate ? trees : 1); k++) await waitRunning(shmOf(k), separate ? [k] : [...Array(trees).keys()], procs);
  const images = running.map((t) => join(dir, `images-${t.index}`));
  for (const d of images) mkdirSync(d);
  if (coordinated) {
    await Promise.all(running.map((t) => dumpTogether(t, images[t.index]!, join(dir, `dump-${t.index}.log`), trees, coordinated)));
  } else {
    for (const t of running) await dumpTree(t, images[t.index]!, join(dir, `dump-${t.index}.log`));
  }
  const shmFiles = [...new Set([...Array(trees).keys()].map(shmOf))];
  return { shm, shmFiles, images, slots: shmFiles.flatMap(readSlots), hashes: images.map(hashDir) };
}

/**
 * libfaketime keeps a shared-memory segment and a semaphore per process, named
 * after its pid; the shell that execs a faked daemon creates them and never
 * removes them (exec runs no destructor). Removes those of `pid`.
 */
export function removeFaketimeShm(pid: number | undefined): void {
  if (!pid) return;
  for (const f of [`/dev/shm/faketime_shm_${pid}`, `/dev/shm/sem.faketime_sem_${pid}`]) rmSync(f, { force: true });
}
