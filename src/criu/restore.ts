/**
 * `stagegate restore`: runs `criu restore` with the stagegate hook as action
 * script and the STAGEGATE_* environment set, and returns criu's exit code.
 * - When criu fails, tells the coordinator at once (restore-failed) so the
 *   session aborts now instead of at its deadline, and kills what a killed
 *   criu left behind (unless the barrier had already released it).
 * - When criu succeeds but the hook never passed the resume barrier (it was
 *   killed while it waited: criu only logs a failed pre-resume script), the
 *   tree is held stopped by the hook's SIGSTOP; the wrapper then waits at the
 *   barrier in the hook's place and resumes or kills the tree by the verdict.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { readAbortNote } from './abort-note';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { wrapperEvent } from './wrapper-event';
import { criuPath, hookPath } from '../paths';
import { spawn } from 'node:child_process';
import { type TreeRun, exitCode, hookEnv, runCriu } from './criu-run';
import { childrenOf, signalTreeStartedSince, startTime } from '../proc/tree';
import { setChildSubreaper } from '../native';
import { ErrorCodes } from '../errors';

export interface RestoreOptions extends TreeRun {
  criuArgs: string[];
  criu?: string;
  /** restoring a committed set (restore --set): its commit id, which every tree of the session must name */
  commit?: string;
}

const { SIGCONT, SIGKILL } = constants.signals;

/**
 * One tree restored through `criu swrk` by the hook executable
 * (hooks/swrk-restore.c: no process per stage), as `stagegate restore` runs
 * it from bin/stagegate; it hands back to this module's restore() what it
 * does not take (STAGEGATE_NO_SWRK set, or arguments criu's RPC cannot
 * carry). Its exit code.
 */
export async function restoreOverRpc(o: RestoreOptions): Promise<number> {
  const args = ['restore', '--session', o.session, '--tree', o.tree, '--trees', String(o.trees)];
  args.push('--endpoint', o.endpoint, '--attempt', String(o.attempt), '--timeout', String(o.timeoutS), '--', ...o.criuArgs);
  const env = { ...process.env, ...(o.commit ? { STAGEGATE_COMMIT: o.commit } : {}), ...(o.criu ? { STAGEGATE_CRIU: o.criu } : {}) };
  const child = spawn(hookPath(), args, { env, stdio: 'inherit' });
  return new Promise((res, rej) => {
    child.once('error', rej);
    child.once('exit', (code, signal) => res(exitCode(code, signal)));
  });
}

export async function restore(o: RestoreOptions): Promise<number> {
  const criu = o.criu ?? criuPath();
  const markDir = mkdtempSync(join(tmpdir(), 'stagegate-restore-'));
  // this restore's identity: every hook of this criu, and this wrapper, speak as this run
  const run = `sg-${randomUUID()}`;
  const mark = join(markDir, 'released');
  const note = join(markDir, 'abort');
  const env = hookEnv(o, run, note, { STAGEGATE_RELEASE_MARK: mark, ...(o.commit ? { STAGEGATE_COMMIT: o.commit } : {}) });
  try {
    // a killed criu's tasks (at any stage) become our children, not init's
    setChildSubreaper();
    // criu's start time, read while it runs: the tasks a killed criu leaves are those started after it
    const started: { ticks: number | null } = { ticks: null };
    const exit = await runCriu(criu, 'restore', o.criuArgs, env, (pid) => (started.ticks = startTime(pid)));
    const ctx = { o, run, criuPid: exit.pid, criuStarted: started.ticks };
    const released = existsSync(mark);
    if (exit.rc !== 0) {
      // the hook's reason, which criu may only have written to its log file
      const why = readAbortNote(note);
      if (why) say(`aborted at ${why}`);
      await reportFailure(ctx, exit.why, exit.signal !== null && !released);
      return exit.rc;
    }
    return released ? 0 : await standIn(ctx);
  } finally {
    rmSync(markDir, { recursive: true, force: true });
  }
}

interface Ctx {
  o: RestoreOptions;
  run: string;
  criuPid: number;
  /** criu's start time (clock ticks): tasks older than this are not ours */
  criuStarted: number | null;
}

const event = (ctx: Ctx, action: 'restore-failed' | 'pre-resume', initPid = 0, reason = '') => wrapperEvent(ctx, action, initPid, reason);

// zeromq is loaded only on these paths: it costs start-up time on every restore
const client = () => import('../transport/client');

/**
 * This tree's status in the coordinator, or null when it cannot be asked or
 * the tree belongs to another run (whose tasks are never ours to touch).
 */
async function treeStatus(ctx: Ctx) {
  const { requestStatus } = await client();
  const status = await requestStatus(ctx.o.endpoint, ctx.o.session, 2000).catch(() => null);
  const session = status?.sessions.find((s) => s.session === ctx.o.session && s.attempt === ctx.o.attempt);
  const tree = session?.trees.find((t) => t.tree === ctx.o.tree && t.run === ctx.run);
  return session && tree ? { session, tree } : null;
}

function say(line: string): void {
  process.stderr.write(`stagegate restore: ${line}\n`);
}

/** Kills the tree rooted at `root` if criu restored it (it started after criu). */
function killOurs(ctx: Ctx, root: number, why: string): void {
  const killed = root && ctx.criuStarted !== null ? signalTreeStartedSince(root, ctx.criuStarted, SIGKILL) : 0;
  if (killed) say(`${why}; killed ${killed} leftover task(s) of tree ${ctx.o.tree} (root ${root})`);
}

/** `unreleased`: criu was killed and its tree never passed the resume barrier (no release mark). */
async function reportFailure(ctx: Ctx, reason: string, unreleased: boolean): Promise<void> {
  const { sendEvent } = await client();
  await sendEvent(ctx.o.endpoint, event(ctx, 'restore-failed', 0, reason)).catch(() => {});
  if (!unreleased) return;
  // A killed criu leaves its tasks behind: waiting in its restore code (at
  // setup-namespaces), asleep in the restorer, or stopped at pre-resume. As
  // subreaper we inherited them. Not if the barrier released the tree (the
  // hook may have died before marking it): then it runs legitimately.
  const st = await treeStatus(ctx);
  if (st?.tree.preResumeReleased) return;
  const orphans = childrenOf(process.pid);
  for (const pid of orphans) killOurs(ctx, pid, 'criu was killed');
  if (orphans.length === 0 && st) killOurs(ctx, st.tree.initPid, 'criu was killed');
}

/** criu succeeded but the hook never passed the barrier: wait there in its place. */
async function standIn(ctx: Ctx): Promise<number> {
  const st = await treeStatus(ctx);
  if (!st) {
    say(
      `tree ${ctx.o.tree} did not pass the resume barrier and the coordinator cannot say why; its tasks stay stopped (kill -CONT or kill -KILL them)`,
    );
    return 1;
  }
  const root = st.tree.initPid;
  const resume = () => (root && ctx.criuStarted !== null ? signalTreeStartedSince(root, ctx.criuStarted, SIGCONT) : 0);
  if (st.tree.preResumeReleased) {
    resume(); // the hook died after the release, perhaps before its SIGCONT
    return 0;
  }
  if (st.session.status !== 'open') {
    killOurs(ctx, root, `session ${ctx.o.session} was aborted while the hook waited`);
    return 1;
  }
  say(`the hook of tree ${ctx.o.tree} died at the resume barrier; waiting there in its place`);
  const { awaitVerdict } = await client();
  const v = await awaitVerdict(ctx.o.endpoint, event(ctx, 'pre-resume', root), ctx.o.timeoutS * 1000).catch((err: Error) => ({
    proceed: false,
    code: ErrorCodes.ENDPOINT,
    reason: err.message,
  }));
  if (v.proceed) {
    resume();
    return 0;
  }
  killOurs(ctx, root, `aborted at the resume barrier: [${v.code}] ${v.reason}`);
  return 1;
}
