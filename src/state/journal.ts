/**
 * The coordinator's journal: every input that changes session state, appended
 * as a JSON line and fsync'd before it is acted on, in a private state
 * directory. A restarted daemon replays it through the same reducer and
 * resumes the open sessions; hooks that were waiting re-send their events.
 */
import { closeSync, fdatasyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { CoordinatorConfig, CoordinatorState, Input } from '../core/model';
import { initialState, prune, reduceInPlace } from '../core/session-reducer';

const encode = (i: Input) => JSON.stringify(i, (_k, v) => (typeof v === 'bigint' ? { $big: v.toString() } : v));
const decode = (line: string) =>
  JSON.parse(line, (_k, v) => (v && typeof v === 'object' && typeof v.$big === 'string' ? BigInt(v.$big) : v)) as Input;

/** Inputs that change state; queries and rejected frames are not journaled. */
export const journaled = (i: Input) => i.type !== 'rejected';

export class Journal {
  private constructor(
    private fd: number,
    readonly path: string,
  ) {}

  /**
   * Opens (creating) DIR/journal.jsonl, replays it, and rewrites it with only
   * the inputs of sessions still remembered. Returns the recovered state.
   */
  static open(dir: string, config: CoordinatorConfig, now: number): { journal: Journal; state: CoordinatorState; replayed: number } {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const path = join(dir, 'journal.jsonl');
    const inputs: Input[] = [];
    if (existsSync(path)) {
      for (const line of readFileSync(path, 'utf8').split('\n')) {
        if (!line.trim()) continue;
        try {
          inputs.push(decode(line));
        } catch {
          break; // a torn last line (crash mid-write): everything before it is intact
        }
      }
    }
    let state = initialState(config);
    for (const i of inputs) state = reduceInPlace(state, i)[0];
    // forget what retention already dropped: keep the inputs of remembered sessions
    state = prune(state, now, true);
    const keep = inputs.filter((i) => sessionOf(i) in state.sessions);
    const tmp = `${path}.tmp`;
    const t = openSync(tmp, 'w', 0o600);
    writeSync(t, keep.map(encode).join('\n') + (keep.length ? '\n' : ''));
    fdatasyncSync(t);
    closeSync(t);
    renameSync(tmp, path);
    return { journal: new Journal(openSync(path, 'a', 0o600), path), state, replayed: inputs.length };
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
