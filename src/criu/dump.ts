/**
 * `stagegate dump`: runs `criu dump` with the stagegate hook as action script
 * (the twin of `stagegate restore`), and writes the commit record once the
 * coordinator has committed the whole set. bin/stagegate runs the C driver
 * (hooks/dump.c) first, which does the same without a Node.js start and hands
 * here only what it does not take; this file stays the reference.
 * - The hook holds the tree at pre-dump (until every tree has started), at
 *   network-lock (trees with their own netns) and at post-dump (the group
 *   commit). An ABORT at post-dump makes criu unlock the network and resume
 *   the tree: the job goes on as if nothing happened.
 * - When criu fails, or is killed, the coordinator is told at once
 *   (dump-failed), so every other tree is rolled back now, not at the deadline.
 * - When criu succeeds its post-dump was answered COMMIT; the hook left that
 *   verdict, which names the set's members, in a mark file, and the wrapper
 *   writes the commit record (checkpoint/commit-record.ts); without the mark
 *   it asks the coordinator. Without either answer it writes none: the set is
 *   then not committed, which is the safe side.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { wrapperEvent } from './wrapper-event';
import { criuPath } from '../paths';
import { type TreeRun, hookEnv, runCriu } from './criu-run';
import { readAbortNote } from './abort-note';
import { readBoundedFile } from '../files';
import { type ChecksumMode, type Member, commitId, writeRecord } from '../checkpoint/commit-record';
import { decodeVerdict } from '../protocol/codec';

export interface DumpOptions extends TreeRun {
  criuArgs: string[];
  checksum: ChecksumMode;
  criu?: string;
}

/** The value of a criu option (`-t N`, `--tree N`, `--tree=N`), the last one given. */
export function criuOption(args: string[], short: string, long: string): string | undefined {
  let v: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if ((a === short || a === long) && i + 1 < args.length) v = args[++i];
    else if (a.startsWith(`${long}=`)) v = a.slice(long.length + 1);
  }
  return v;
}

/** Whether the tree rooted at `pid` has a network namespace other than ours (criu then runs network-lock). */
function ownNetns(pid: string | undefined): boolean | undefined {
  if (!pid || !/^\d{1,9}$/.test(pid)) return undefined;
  try {
    return statSync(`/proc/${pid}/ns/net`).ino !== statSync('/proc/self/ns/net').ino;
  } catch {
    return undefined;
  }
}

export async function dump(o: DumpOptions): Promise<number> {
  const criu = o.criu ?? criuPath();
  const noteDir = mkdtempSync(join(tmpdir(), 'stagegate-dump-'));
  const run = `sg-${randomUUID()}`;
  const note = join(noteDir, 'abort');
  const mark = join(noteDir, 'committed');
  const imagesDir = resolve(criuOption(o.criuArgs, '-D', '--images-dir') ?? '.');
  const netLock = ownNetns(criuOption(o.criuArgs, '-t', '--tree'));
  const env = hookEnv(o, run, note, {
    STAGEGATE_COMMIT_MARK: mark,
    ...(netLock === undefined ? {} : { STAGEGATE_NET_LOCK: netLock ? '1' : '0' }),
  });
  try {
    const exit = await runCriu(criu, 'dump', o.criuArgs, env);
    const ctx = { o, run, criuPid: exit.pid };
    if (exit.rc !== 0) {
      const why = readAbortNote(note);
      if (why) say(`aborted at ${why}`);
      const { sendEvent } = await import('../transport/client');
      await sendEvent(o.endpoint, wrapperEvent(ctx, 'dump-failed', 0, exit.why)).catch(() => {});
      return exit.rc;
    }
    return await commit(ctx, imagesDir, mark);
  } finally {
    rmSync(noteDir, { recursive: true, force: true });
  }
}

interface Ctx {
  o: DumpOptions;
  run: string;
  criuPid: number;
}

/** criu succeeded: its post-dump was answered COMMIT. Records the set in this tree's images. */
async function commit(ctx: Ctx, imagesDir: string, mark: string): Promise<number> {
  const { o } = ctx;
  const members = committedSet(ctx, mark) ?? (await askCoordinator(ctx));
  if (typeof members === 'string') {
    say(
      `criu dumped tree ${o.tree}, but the commit is not confirmed (${members}): no commit record written, so this set does not count as committed`,
    );
    return 1;
  }
  const mine = members.find((m) => m.tree === o.tree && m.run === ctx.run)!;
  const record = await writeRecord(
    imagesDir,
    {
      session: o.session,
      attempt: o.attempt,
      commit: commitId(o.session, o.attempt, members),
      tree: o.tree,
      host: mine.host,
      members,
      checksum: o.checksum,
    },
    o.checksum,
  );
  say(`committed tree ${o.tree} of session ${o.session} attempt ${o.attempt} as ${record.commit} (${record.files.length} image files)`);
  return 0;
}

const isOurs = (ctx: Ctx, members: Member[]) => members.some((m) => m.tree === ctx.o.tree && m.run === ctx.run);

/** The set's members from the hook's COMMIT verdict (written at post-dump), if it is this tree's. */
function committedSet(ctx: Ctx, mark: string): Member[] | null {
  try {
    const v = decodeVerdict(readBoundedFile(mark, 1 << 20));
    const ok = v.proceed && v.action === 'post-dump' && v.session === ctx.o.session && v.attempt === ctx.o.attempt && v.tree === ctx.o.tree;
    return ok && v.members && isOurs(ctx, v.members) ? v.members : null;
  } catch {
    return null;
  }
}

/** Without the hook's mark (a hook of an older version): the coordinator's view of the session; why not, as a string. */
async function askCoordinator(ctx: Ctx): Promise<Member[] | string> {
  const { o } = ctx;
  const { requestStatus } = await import('../transport/client');
  const status = await requestStatus(o.endpoint, o.session, 5000).catch((err: Error) => err);
  if (status instanceof Error) return status.message;
  const s = status.sessions.find((x) => x.session === o.session && x.attempt === o.attempt && x.phase === 'dump');
  const members = s?.trees.map((t) => ({ tree: t.tree, host: t.host, run: t.run })) ?? [];
  if (!s || s.status !== 'committed' || !isOurs(ctx, members))
    return s ? `session status ${s.status}` : 'the coordinator no longer knows the session';
  return members;
}

function say(line: string): void {
  process.stderr.write(`stagegate dump: ${line}\n`);
}
