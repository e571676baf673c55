/** The journal: replay after a restart (incl. a torn last line), and a full disk. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { appendFileSync, chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import winston from 'winston';
import { Coordinator } from '../../src/coordinator';
import { Journal } from '../../src/state/journal';
import { reduceInPlace } from '../../src/core/session-reducer';
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
      assert.deepEqual([...state.sessions.get('j')!.trees.keys()].sort(), ['a', 'b']);
      assert.ok(state.sessions.get('j')!.gates['post-restore'].arrived.has('a'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('on a full disk, logs the failure and keeps serving without a journal', async () => {
    const dir = mkdtempSync('/tmp/sg-full-');
    const state = join(dir, 'state');
    mkdirSync(state);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'tmpfs', state]);
    const { lines, logger } = memoryLogger();
    let c: Coordinator | null = null;
    try {
      c = await Coordinator.start({
        listen: [`ipc://${dir}/h.sock`],
        events: [`ipc://${dir}/e.sock`],
        deadlineMs: 10_000,
        activator: 'none',
        stateDir: state,
        logger,
      });
      writeFileSync(join(state, 'filler'), Buffer.alloc(60 * 1024)); // ...and the disk is full
      try {
        appendFileSync(join(state, 'filler'), Buffer.alloc(8 * 1024));
      } catch {
        // full indeed
      }
      const r = await runHook(hookEnv(`ipc://${dir}/h.sock`, 'post-restore', { STAGEGATE_SESSION: 'full', CRTOOLS_INIT_PID: '999' }));
      assert.equal(r.code, 0, r.stderr);
      assert.ok(
        lines.some((l) => /journal write failed: continuing without a journal/.test(l) && /ENOSPC/.test(l)),
        lines.join(''),
      );
    } finally {
      c?.close();
      execFileSync('umount', [state]);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('skips crafted lines with a warning, keeps them, and replays everything around them', () => {
    const dir = mkdtempSync('/tmp/sg-journal-');
    try {
      const { journal } = Journal.open(dir, config, Date.now());
      journal.append(ev('a', 'post-restore', Date.now(), { session: 'k' }));
      journal.close();
      appendFileSync(join(dir, 'journal.jsonl'), 'null\n42\nnot json at all\n{"type":"nope"}\n{"type":"event","event":null}\n');
      const j2 = Journal.open(dir, config, Date.now());
      j2.journal.append(ev('b', 'post-restore', Date.now(), { session: 'k' }));
      j2.journal.close();
      assert.equal(j2.replayed, 1);
      assert.equal(j2.skipped.length, 5, j2.skipped.join('\n'));
      assert.match(j2.skipped[0]!, /line 2: not a journal input, skipped and kept: null/);
      const { state, replayed, skipped } = Journal.open(dir, config, Date.now());
      assert.equal(replayed, 2, 'the line after the crafted ones is replayed too');
      assert.equal(skipped.length, 5, 'crafted lines are kept for a human, not silently dropped');
      assert.match(readFileSync(join(dir, 'journal.jsonl'), 'utf8'), /\nnot json at all\n/);
      assert.deepEqual([...state.sessions.get('k')!.trees.keys()].sort(), ['a', 'b']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('never follows a symlink planted at its temporary file, and refuses a state directory others can write', () => {
    const dir = mkdtempSync('/tmp/sg-journal-');
    try {
      const victim = join(dir, 'victim');
      writeFileSync(victim, 'precious\n');
      const state = join(dir, 'state');
      mkdirSync(state, { mode: 0o700 });
      symlinkSync(victim, join(state, 'journal.jsonl.tmp'));
      Journal.open(state, config, Date.now()).journal.close();
      assert.equal(readFileSync(victim, 'utf8'), 'precious\n');
      symlinkSync(victim, join(dir, 'journal-link'));
      const open = mkdtempSync(join(dir, 'open-'));
      chmodSync(open, 0o1777);
      assert.throws(() => Journal.open(open, config, Date.now()), /state directory .* is writable by others \(mode 1777\)/);
      assert.throws(() => Journal.open(join(dir, 'journal-link'), config, Date.now()), /is not a directory/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a real daemon serves and journals sessions named like Object.prototype members, and restarts from that journal', async () => {
    const dir = mkdtempSync('/tmp/sg-proto-');
    const state = join(dir, 'state');
    const names = ['__proto__', 'constructor', 'toString', 'hasOwnProperty'];
    const start = () =>
      Coordinator.start({
        listen: [`ipc://${dir}/h.sock`],
        events: [`ipc://${dir}/e.sock`],
        deadlineMs: 10_000,
        activator: 'none',
        stateDir: state,
        logger: memoryLogger().logger,
      });
    let c: Coordinator | null = null;
    try {
      c = await start();
      for (const n of names) {
        const r = await runHook(hookEnv(`ipc://${dir}/h.sock`, 'post-restore', { STAGEGATE_SESSION: n, CRTOOLS_INIT_PID: '999' }));
        assert.equal(r.code, 0, `${n}: ${r.stderr}`);
      }
      c.close();
      c = await start();
      assert.deepEqual([...c.snapshot()!.sessions.keys()].sort(), [...names].sort());
      const again = await runHook(hookEnv(`ipc://${dir}/h.sock`, 'post-restore', { STAGEGATE_SESSION: 'after', CRTOOLS_INIT_PID: '999' }));
      assert.equal(again.code, 0, again.stderr);
    } finally {
      c?.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a coordinator restarted from its journal still knows each tree's run: another run is refused, the same run goes on", () => {
    const dir = mkdtempSync('/tmp/sg-journal-');
    try {
      const { journal } = Journal.open(dir, config, Date.now());
      journal.append(ev('a', 'post-restore', Date.now(), { session: 'r', run: 'first' }));
      journal.close();
      const { state, journal: j2 } = Journal.open(dir, config, Date.now());
      j2.close();
      assert.equal(state.sessions.get('r')!.trees.get('a')!.run, 'first');
      const [, other] = reduceInPlace(state, ev('a', 'post-restore', Date.now(), { session: 'r', run: 'second' }, 'intruder'));
      assert.deepEqual(
        other.flatMap((e) => (e.type === 'reply' ? [[e.peer, e.verdict.code]] : [])),
        [['intruder', 'E_RUN_CONFLICT']],
      );
      const [, same] = reduceInPlace(state, ev('a', 'post-restore', Date.now(), { session: 'r', run: 'first', resent: true }, 'again'));
      assert.ok(!same.some((e) => e.type === 'reply' && !e.verdict.proceed), 'the run it knows is not refused');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
