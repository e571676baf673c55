/** The journal: replay after a restart (incl. a torn last line), and a full disk. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import winston from 'winston';
import { Coordinator } from '../../src/coordinator';
import { Journal } from '../../src/state/journal';
import { hookEnv, runHook } from '../support/hook';
import { ev } from '../unit/fixtures';

const config = { defaultDeadlineMs: 60_000, defaultActivator: 'none' as const };

function memoryLogger() {
  const lines: string[] = [];
  const stream = new Writable({ write: (chunk, _e, cb) => (lines.push(String(chunk)), cb()) });
  return { lines, logger: winston.createLogger({ transports: [new winston.transports.Stream({ stream })] }) };
}

describe('journal', () => {
  it('replays what was appended, ignoring a torn last line', () => {
    const dir = mkdtempSync('/tmp/sg-journal-');
    try {
      const { journal } = Journal.open(dir, config, Date.now());
      journal.append(ev('a', 'post-restore', Date.now(), { session: 'j' }));
      journal.append(ev('b', 'pre-restore', Date.now(), { session: 'j' }));
      journal.close();
      appendFileSync(join(dir, 'journal.jsonl'), '{"type":"event","event":{"sess'); // a crash mid-write
      const { state, replayed } = Journal.open(dir, config, Date.now());
      assert.equal(replayed, 2);
      assert.deepEqual([...state.sessions.j!.trees.keys()].sort(), ['a', 'b']);
      assert.ok(state.sessions.j!.gates['post-restore'].arrived.has('a'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('on a full disk, logs the failure and keeps serving without a journal', async () => {
    const dir = mkdtempSync('/tmp/sg-full-');
    const state = join(dir, 'state');
    mkdirSync(state);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', state]);
    const { lines, logger } = memoryLogger();
    let c: Coordinator | null = null;
    try {
      c = await Coordinator.start({ listen: [`ipc://${dir}/h.sock`], events: [`ipc://${dir}/e.sock`], deadlineMs: 10_000, activator: 'none', stateDir: state, logger });
      writeFileSync(join(state, 'filler'), Buffer.alloc(60 * 1024)); // ...and the disk is full
      try {
        appendFileSync(join(state, 'filler'), Buffer.alloc(8 * 1024));
      } catch {
        // full indeed
      }
      const r = await runHook(hookEnv(`ipc://${dir}/h.sock`, 'post-restore', { STAGEGATE_SESSION: 'full', CRTOOLS_INIT_PID: '999' }));
      assert.equal(r.code, 0, r.stderr);
      assert.ok(lines.some((l) => /journal write failed: continuing without a journal/.test(l) && /ENOSPC/.test(l)), lines.join(''));
    } finally {
      c?.close();
      execFileSync('umount', [state]);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
