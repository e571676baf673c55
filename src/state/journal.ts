/**
 * The coordinator's journal: every input that changes session state, appended
 * as a JSON line and fsync'd before it is acted on, in a private state
 * directory. A restarted daemon replays it through the same reducer and
 * resumes the open sessions; hooks that were waiting re-send their events.
 *
 * The directory and its files are treated as hostile until checked: the
 * directory must be this user's own and private (a planted symlink or another
 * user's file is never followed), and a line that is not a known input is
 * skipped with a warning, never trusted and never lost.
 */
import { closeSync, constants, fdatasyncSync, lstatSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { FileRefused, readBoundedFile } from '../files';
import { join } from 'node:path';
import type { CoordinatorConfig, CoordinatorState, Input } from '../core/model';
import { initialState, prune, reduceInPlace } from '../core/session-reducer';
import { UsageError } from '../errors';

const encode = (i: Input) => JSON.stringify(i, (_k, v) => (typeof v === 'bigint' ? { $big: v.toString() } : v));
const decode = (line: string): unknown =>
  JSON.parse(line, (_k, v) => (v && typeof v === 'object' && typeof v.$big === 'string' ? BigInt(v.$big) : v));

/** Inputs that change state; queries and rejected frames are not journaled. */
export const journaled = (i: Input) => i.type !== 'rejected' && i.type !== 'shutdown';

const INPUT_TYPES = new Set(['event', 'open', 'tree-images', 'bo-activation', 'tree-observed', 'deadline', 'hook-lost']);
/** A journal this large is not one this daemon wrote in any sane period: refused rather than read. */
export const MAX_JOURNAL_BYTES = 256 * 1024 * 1024;

/** The shape a journal line must have to be replayed (the reducer validates the fields). */
function isInput(x: unknown): x is Input {
  if (typeof x !== 'object' || x === null) return false;
  const i = x as Record<string, unknown>;
  if (typeof i.type !== 'string' || !INPUT_TYPES.has(i.type)) return false;
  if (i.type === 'event') {
    const e = i.event as Record<string, unknown> | null;
    return (
      typeof e === 'object' && e !== null && typeof e.session === 'string' && typeof e.tree === 'string' && typeof e.action === 'string'
    );
  }
  return typeof i.session === 'string';
}

const O_NOFOLLOW = constants.O_NOFOLLOW;

/** Creates DIR (0700) or checks that it is a directory of this user's, private to it. */
function privateDir(dir: string): void {
  let st;
  try {
    st = lstatSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    st = lstatSync(dir);
  }
  const uid = process.getuid?.();
  if (!st.isDirectory()) throw new UsageError(`state directory ${dir} is not a directory (a symlink?)`);
  if (uid !== undefined && st.uid !== uid)
    throw new UsageError(`state directory ${dir} belongs to uid ${st.uid}, not to this user (${uid})`);
  if ((st.mode & 0o022) !== 0) {
    throw new UsageError(
      `state directory ${dir} is writable by others (mode ${(st.mode & 0o7777).toString(8)}): use a private one (chmod 700)`,
    );
  }
}

/** The journal's text, bounded (see files.ts); '' when there is none. */
function readJournal(path: string): string {
  try {
    return readBoundedFile(path, MAX_JOURNAL_BYTES).toString('utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    if (err instanceof FileRefused) {
      throw new UsageError(
        err.why === 'not-regular' ? `${path} is not a regular file` : `${path} is ${err.size} bytes, more than ${MAX_JOURNAL_BYTES}`,
      );
    }
    throw err;
  }
}

export interface Replay {
  journal: Journal;
  state: CoordinatorState;
  /** inputs replayed */
  replayed: number;
  /** lines not replayed, and why (1-based line numbers) */
  skipped: string[];
}

export class Journal {
  private constructor(
    private fd: number,
    readonly path: string,
  ) {}

  /**
   * Opens (creating) DIR/journal.jsonl, replays it, and rewrites it with the
   * inputs of sessions still remembered. A torn last line (a crash mid-write)
   * is dropped; any other line that is not a valid input is skipped, reported
   * and kept as it is.
   */
  static open(dir: string, config: CoordinatorConfig, now: number): Replay {
    privateDir(dir);
    const path = join(dir, 'journal.jsonl');
    const lines = readJournal(path).split('\n');
    while (lines.length && !lines[lines.length - 1]!.trim()) lines.pop();
    const entries: ({ input: Input; line: string } | { input: null; line: string })[] = [];
    const skipped: string[] = [];
    lines.forEach((line, n) => {
      if (!line.trim()) return;
      let parsed: unknown;
      try {
        parsed = decode(line);
      } catch {
        if (n === lines.length - 1) {
          skipped.push(`line ${n + 1}: torn (a crash mid-write), dropped`);
          return;
        }
        parsed = undefined;
      }
      if (isInput(parsed)) entries.push({ input: parsed, line });
      else {
        skipped.push(`line ${n + 1}: not a journal input, skipped and kept: ${line.slice(0, 80)}`);
        entries.push({ input: null, line });
      }
    });
    let state = initialState(config);
    let replayed = 0;
    for (const [n, e] of entries.entries()) {
      if (!e.input) continue;
      try {
        state = reduceInPlace(state, e.input)[0];
        replayed++;
      } catch (err) {
        skipped.push(`entry ${n + 1}: the reducer failed on it (${(err as Error).message}), skipped`);
      }
    }
    // forget what retention already dropped: keep the inputs of remembered sessions (and lines kept for a human)
    state = prune(state, now, true);
    const keep = entries.filter((e) => !e.input || state.sessions.has(sessionOf(e.input))).map((e) => (e.input ? encode(e.input) : e.line));
    const tmp = `${path}.tmp`;
    rmSync(tmp, { force: true }); // a leftover (or planted) file or symlink: unlinked, never followed
    const t = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | O_NOFOLLOW, 0o600);
    try {
      writeSync(t, keep.join('\n') + (keep.length ? '\n' : ''));
      fdatasyncSync(t);
    } finally {
      closeSync(t);
    }
    renameSync(tmp, path);
    const fd = openSync(path, constants.O_WRONLY | constants.O_APPEND | O_NOFOLLOW, 0o600);
    return { journal: new Journal(fd, path), state, replayed, skipped };
  }

  /** Appends and syncs one input; throws when the disk refuses (the caller decides what that means). */
  append(i: Input): void {
    writeSync(this.fd, encode(i) + '\n');
    fdatasyncSync(this.fd);
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

function sessionOf(i: Input): string {
  return i.type === 'event' ? i.event.session : 'session' in i ? i.session : '';
}
