import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { initialState, reduce, reduceInPlace } from '../../src/core/session-reducer';
import type { CoordinatorState, Effect, Input } from '../../src/core/model';
import { decisions, ev, feed as feedWith, replies } from './fixtures';

const config = { defaultDeadlineMs: 1000, defaultActivator: 'none' as const };

const feed = (inputs: Input[], state?: CoordinatorState) => feedWith(config, inputs, state);

describe('session reducer', () => {
  it('opens a session implicitly from the first event, with its tree count and a deadline', () => {
    const { state, effects } = feed([ev('a', 'pre-restore', 5)]);
    const s = state.sessions.get('s1')!;
    assert.equal(s.expectedTrees, 2);
    assert.equal(s.attempt, 1);
    assert.equal(s.status, 'open');
    assert.deepEqual(
      decisions(effects[0]!).map((d) => d.kind),
      ['session-opened'],
    );
    assert.ok(effects[0]!.some((e) => e.type === 'schedule-deadline' && e.inMs === 1000));
    assert.ok(effects[0]!.some((e) => e.type === 'publish-event'));
  });

  it('holds post-restore until every expected tree arrives, then releases all together', () => {
    const { effects } = feed([ev('a', 'post-restore', 1), ev('b', 'post-restore', 4)]);
    assert.deepEqual(replies(effects[0]!), []);
    assert.deepEqual(replies(effects[1]!), [
      { peer: 'a:post-restore', proceed: true, code: '' },
      { peer: 'b:post-restore', proceed: true, code: '' },
    ]);
    const opened = decisions(effects[1]!).find((d) => d.kind === 'gate-opened')!;
    assert.equal(opened.action, 'post-restore');
    assert.equal(opened.waitedMs, 3);
    assert.deepEqual(opened.trees, ['a', 'b']);
  });

  it('releases the resume barrier together, marks the session released and cancels its deadline', () => {
    const { state, effects } = feed([ev('a', 'post-restore'), ev('b', 'post-restore'), ev('b', 'pre-resume', 2), ev('a', 'pre-resume', 3)]);
    assert.deepEqual(replies(effects[2]!), []);
    assert.deepEqual(
      replies(effects[3]!).map((r) => r.peer),
      ['a:pre-resume', 'b:pre-resume'],
    );
    assert.equal(state.sessions.get('s1')!.status, 'released');
    assert.ok(effects[3]!.some((e) => e.type === 'cancel-deadline'));
  });

  it('completes the session once every tree reports post-resume', () => {
    const { state, all } = feed([
      ev('a', 'post-restore'),
      ev('b', 'post-restore'),
      ev('a', 'pre-resume'),
      ev('b', 'pre-resume'),
      ev('a', 'post-resume', 9, {}, null),
      ev('b', 'post-resume', 10, {}, null),
    ]);
    assert.equal(state.sessions.get('s1')!.status, 'completed');
    assert.equal(decisions(all).filter((d) => d.kind === 'session-completed').length, 1);
  });

  it('aborts every waiting tree when the deadline passes, naming the missing trees', () => {
    const { state, effects } = feed([ev('a', 'post-restore'), { type: 'deadline', session: 's1', attempt: 1, at: 1000 }]);
    assert.deepEqual(replies(effects[1]!), [{ peer: 'a:post-restore', proceed: false, code: 'E_DEADLINE' }]);
    const abort = decisions(effects[1]!).find((d) => d.kind === 'session-aborted')!;
    assert.match(abort.reason, /post-restore gate; still missing: 1 tree\(s\) not seen yet/);
    assert.equal(state.sessions.get('s1')!.status, 'aborted');
  });

  it("answers later gated events of an aborted session's runs with the same abort", () => {
    const { effects } = feed([
      ev('a', 'post-restore'),
      ev('b', 'pre-restore', 10),
      { type: 'deadline', session: 's1', attempt: 1, at: 1000 },
      ev('b', 'post-restore', 1001),
    ]);
    assert.deepEqual(replies(effects[3]!), [{ peer: 'b:post-restore', proceed: false, code: 'E_DEADLINE' }]);
  });

  it('ignores a deadline of an older attempt or of a released session', () => {
    const { effects } = feed([
      ev('a', 'post-restore'),
      ev('b', 'post-restore'),
      ev('a', 'pre-resume'),
      ev('b', 'pre-resume'),
      { type: 'deadline', session: 's1', attempt: 1, at: 1000 },
      { type: 'deadline', session: 's1', attempt: 7, at: 1000 },
    ]);
    assert.deepEqual(effects[4], []);
    assert.deepEqual(effects[5], []);
  });

  it('aborts the session at once when a tree reports restore-failed', () => {
    const { effects } = feed([ev('a', 'post-restore'), ev('b', 'restore-failed', 2, { reason: 'criu exited with 1' }, null)]);
    assert.deepEqual(replies(effects[1]!), [{ peer: 'a:post-restore', proceed: false, code: 'E_TREE_FAILED' }]);
    assert.match(decisions(effects[1]!)[0]!.reason, /tree b failed to restore: criu exited with 1/);
  });

  it('does not abort on restore-failed once every tree was released (they already run)', () => {
    const { state } = feed([
      ev('a', 'post-restore'),
      ev('b', 'post-restore'),
      ev('a', 'pre-resume'),
      ev('b', 'pre-resume'),
      ev('b', 'restore-failed', 5, {}, null),
    ]);
    assert.equal(state.sessions.get('s1')!.status, 'released');
  });

  it('answers a duplicate gated event after release with the same PROCEED', () => {
    const { effects } = feed([ev('a', 'post-restore'), ev('b', 'post-restore'), ev('a', 'post-restore', 3, {}, 'retry')]);
    assert.deepEqual(replies(effects[2]!), [{ peer: 'retry', proceed: true, code: '' }]);
  });

  it('lets the newest peer wait when a hook re-sends before release, counting the tree once', () => {
    const { effects } = feed([ev('a', 'post-restore', 1, {}, 'old'), ev('a', 'post-restore', 2, {}, 'new'), ev('b', 'post-restore', 3)]);
    assert.deepEqual(replies(effects[1]!), []);
    assert.deepEqual(
      replies(effects[2]!).map((r) => r.peer),
      ['new', 'b:post-restore'],
    );
  });

  it('aborts the session on a contradictory tree count', () => {
    const { effects } = feed([ev('a', 'post-restore'), ev('b', 'post-restore', 2, { expectedTrees: 3 })]);
    assert.deepEqual(replies(effects[1]!), [
      { peer: 'a:post-restore', proceed: false, code: 'E_CONTRADICTION' },
      { peer: 'b:post-restore', proceed: false, code: 'E_CONTRADICTION' },
    ]);
  });

  it('rejects a tree beyond the expected count without disturbing the session', () => {
    const { state, effects } = feed([ev('a', 'post-restore'), ev('b', 'pre-restore'), ev('c', 'post-restore')]);
    assert.deepEqual(replies(effects[2]!), [{ peer: 'c:post-restore', proceed: false, code: 'E_TOO_MANY_TREES' }]);
    assert.equal(state.sessions.get('s1')!.status, 'open');
    assert.deepEqual([...state.sessions.get('s1')!.trees.keys()].sort(), ['a', 'b']);
  });

  it('aborts when a tree reaches pre-resume before the post-restore gate opened', () => {
    const { effects } = feed([ev('a', 'pre-resume')]);
    assert.deepEqual(replies(effects[0]!), [{ peer: 'a:pre-resume', proceed: false, code: 'E_CONTRADICTION' }]);
  });

  it('starts a new attempt after an abort, superseding nothing that is closed', () => {
    const { state, effects } = feed([
      ev('a', 'post-restore'),
      { type: 'deadline', session: 's1', attempt: 1, at: 1000 },
      ev('a', 'post-restore', 2000, { attempt: 2 }),
      ev('b', 'post-restore', 2001, { attempt: 2 }),
    ]);
    assert.equal(state.sessions.get('s1')!.attempt, 2);
    assert.deepEqual(
      replies(effects[3]!).map((r) => r.proceed),
      [true, true],
    );
  });

  it('supersedes an open attempt by a newer one and refuses stale attempts', () => {
    const { effects } = feed([
      ev('a', 'post-restore', 1),
      ev('a', 'post-restore', 2, { attempt: 2 }, 'a2'),
      ev('b', 'post-restore', 3, { attempt: 1 }, 'b1'),
    ]);
    assert.deepEqual(replies(effects[1]!), [{ peer: 'a:post-restore', proceed: false, code: 'E_SUPERSEDED' }]);
    assert.deepEqual(replies(effects[2]!), [{ peer: 'b1', proceed: false, code: 'E_STALE_ATTEMPT' }]);
  });

  it('rejects invalid events with a specific reason and never opens a session for them', () => {
    const { state, effects } = feed([ev('bad tree!', 'post-restore')]);
    assert.equal(state.sessions.size, 0);
    assert.deepEqual(
      replies(effects[0]!).map((r) => r.code),
      ['E_BAD_EVENT'],
    );
    assert.match(decisions(effects[0]!)[0]!.reason, /tree "bad tree!" is not 1-128 characters/);
  });

  it('opens sessions explicitly, idempotently, and refuses a contradicting re-open', () => {
    const open = (trees: number, peer: string): Input => ({
      type: 'open',
      session: 's1',
      expectedTrees: trees,
      attempt: 1,
      deadlineMs: 500,
      manifest: [],
      activator: '',
      peer,
      at: 0,
    });
    const { state, effects } = feed([open(3, 'p1'), open(3, 'p2'), open(2, 'p3')]);
    assert.equal(state.sessions.get('s1')!.expectedTrees, 3);
    assert.equal(state.sessions.get('s1')!.deadlineMs, 500);
    assert.deepEqual(
      replies(effects.flat()).map((r) => [r.peer, r.proceed]),
      [
        ['p1', true],
        ['p2', true],
        ['p3', false],
      ],
    );
  });

  it('never mutates the state it is given', () => {
    const s0 = feed([ev('a', 'post-restore')]).state;
    const copy = structuredClone(s0);
    reduce(s0, ev('b', 'post-restore'));
    reduce(s0, { type: 'deadline', session: 's1', attempt: 1, at: 9 });
    assert.deepEqual(s0, copy);
    assert.equal(s0.sessions.get('s1')!.gates['post-restore'].waiting.size, 1);
  });

  it('in place, produces exactly the states and effects of the pure reducer', () => {
    const inputs: Input[] = [
      ev('a', 'pre-restore'),
      ev('a', 'post-restore', 1),
      ev('c', 'post-restore', 2, { session: 's2', expectedTrees: 1 }),
      ev('b', 'post-restore', 3),
      ev('a', 'post-restore', 4, {}, 'dup'),
      ev('a', 'pre-resume', 5),
      { type: 'deadline', session: 's1', attempt: 1, at: 6 },
      ev('b', 'pre-resume', 7),
      ev('a', 'post-restore', 8, { attempt: 2 }),
      ev('x y', 'post-restore', 9),
    ];
    let pure = initialState(config);
    let owned = initialState(config);
    for (const i of inputs) {
      const [p, pe] = reduce(pure, i);
      const [o, oe] = reduceInPlace(owned, i);
      assert.deepEqual(oe, pe);
      assert.deepEqual(o, p);
      pure = p;
      owned = o;
    }
  });

  it('forgets sessions closed longer than the retention period when a new one opens, never open ones', () => {
    const cfg = { ...config, retentionMs: 100 };
    const { state } = feedWith(cfg, [
      ev('a', 'post-restore', 0, { session: 'old', expectedTrees: 1 }),
      ev('a', 'pre-resume', 1, { session: 'old', expectedTrees: 1 }), // released at 1
      ev('a', 'post-restore', 2, { session: 'waiting', expectedTrees: 2 }), // stays open
      ev('a', 'pre-restore', 50, { session: 'mid', expectedTrees: 1 }),
      ev('a', 'pre-restore', 500, { session: 'new', expectedTrees: 1 }),
    ]);
    assert.deepEqual([...state.sessions.keys()].sort(), ['mid', 'new', 'waiting']);
  });
});

describe('session reducer: runs, ended sessions and the arrival barrier', () => {
  const r = (run: string) => ({ run });
  /** Trees a and b of run ra/rb through every stage: the session completes. */
  const completed: Input[] = [
    ev('a', 'pre-restore', 0, r('ra')),
    ev('b', 'pre-restore', 0, r('rb')),
    ev('a', 'post-restore', 1, r('ra')),
    ev('b', 'post-restore', 1, r('rb')),
    ev('a', 'pre-resume', 2, r('ra')),
    ev('b', 'pre-resume', 2, r('rb')),
    ev('a', 'post-resume', 3, r('ra'), null),
    ev('b', 'post-resume', 3, r('rb'), null),
  ];
  const proceeds = (effects: Effect[]) => replies(effects).filter((x) => x.proceed);

  it('refuses a new run of a completed session at every gate and keeps its outcome', () => {
    const done = feed(completed);
    assert.equal(done.state.sessions.get('s1')!.status, 'completed');
    const replay = feed(
      [ev('a', 'pre-restore', 10, r('again')), ev('a', 'post-restore', 11, r('again')), ev('a', 'pre-resume', 12, r('again'))],
      done.state,
    );
    assert.deepEqual(proceeds(replay.all), [], 'a lone replay never passes');
    assert.deepEqual(
      replies(replay.all).map((x) => x.code),
      ['E_SESSION_CLOSED', 'E_SESSION_CLOSED', 'E_SESSION_CLOSED'],
    );
    const rejected = decisions(replay.all).filter((d) => d.kind === 'event-rejected');
    assert.equal(rejected.length, 3);
    assert.match(
      rejected[0]!.reason,
      /session s1 attempt 1 has completed and takes no new restore run .*--attempt 2, or use a new session name/,
    );
    assert.equal(replay.state.sessions.get('s1')!.status, 'completed');
    assert.equal(replay.state.sessions.get('s1')!.trees.get('a')!.run, 'ra');
  });

  it('refuses a new run of an aborted session with E_SESSION_CLOSED, and answers its own runs with the abort', () => {
    const aborted = feed([ev('a', 'post-restore', 0, r('ra')), { type: 'deadline', session: 's1', attempt: 1, at: 1000 }]);
    const later = feed(
      [ev('a', 'post-restore', 1001, r('ra2')), ev('a', 'post-restore', 1002, { ...r('ra'), resent: true })],
      aborted.state,
    );
    assert.deepEqual(
      replies(later.all).map((x) => [x.proceed, x.code]),
      [
        [false, 'E_SESSION_CLOSED'],
        [false, 'E_DEADLINE'],
      ],
    );
    assert.equal(later.state.sessions.get('s1')!.abort!.code, 'E_DEADLINE');
  });

  it('refuses a second run of a tree: it never gets PROCEED, its failure does not abort, the owner goes on', () => {
    const { state, effects, all } = feed([
      ev('a', 'pre-restore', 0, r('first')),
      ev('a', 'pre-restore', 1, r('second'), 'a2:pre-restore'),
      ev('a', 'post-restore', 2, r('second'), 'a2:post-restore'),
      ev('a', 'restore-failed', 3, r('second'), null),
      ev('a', 'post-restore', 4, r('first')),
      ev('b', 'post-restore', 5, r('rb')),
      ev('a', 'pre-resume', 6, r('first')),
      ev('b', 'pre-resume', 7, r('rb')),
      ev('a', 'pre-resume', 8, r('second'), 'a2:pre-resume'),
    ]);
    const second = replies(all).filter((x) => x.peer.startsWith('a2:'));
    assert.deepEqual(
      second.map((x) => [x.proceed, x.code]),
      [
        [false, 'E_RUN_CONFLICT'],
        [false, 'E_RUN_CONFLICT'],
        [false, 'E_SESSION_CLOSED'],
      ],
    );
    assert.match(
      decisions(effects[1]!)[0]!.reason,
      /tree a of session s1 attempt 1 is already being restored by run first; this run \(second\) is refused.*--attempt 2/,
    );
    assert.equal(decisions(all).filter((d) => d.kind === 'session-aborted').length, 0);
    assert.equal(state.sessions.get('s1')!.status, 'released');
    assert.deepEqual(
      replies(effects[7]!).map((x) => x.peer),
      ['a:pre-resume', 'b:pre-resume'],
    );
  });

  it('keeps re-sends of one run idempotent, and derives a run for older clients from host and criu pid', () => {
    const { all } = feed([
      ev('a', 'post-restore', 0),
      ev('a', 'post-restore', 1, { resent: true }, 'again'),
      ev('b', 'post-restore', 2, { criuPid: 99 }),
      ev('b', 'post-restore', 3, { criuPid: 98 }, 'other-criu'),
    ]);
    assert.deepEqual(
      replies(all).map((x) => [x.peer, x.proceed, x.code]),
      [
        ['again', true, ''],
        ['b:post-restore', true, ''],
        ['other-criu', false, 'E_RUN_CONFLICT'],
      ],
    );
  });

  it('never lets a late contradictory event rewrite a completed session', () => {
    const done = feed(completed);
    const late = feed(
      [ev('c', 'post-restore', 20, { ...r('rc'), expectedTrees: 3 }), ev('a', 'post-resume', 21, { ...r('ra'), expectedTrees: 5 }, null)],
      done.state,
    );
    assert.equal(late.state.sessions.get('s1')!.status, 'completed');
    assert.equal(late.state.sessions.get('s1')!.abort, null);
    assert.deepEqual(
      decisions(late.all).map((d) => [d.kind, d.code]),
      [
        ['event-rejected', 'E_SESSION_CLOSED'],
        ['event-rejected', 'E_SESSION_CLOSED'],
      ],
    );
  });

  it('arrival barrier: no pre-restore is answered before every tree has started', () => {
    const open: Input = {
      type: 'open',
      session: 's1',
      expectedTrees: 2,
      attempt: 1,
      deadlineMs: 500,
      manifest: [],
      activator: '',
      holdAt: 'pre-restore',
      peer: null,
      at: 0,
    };
    const { state, effects } = feed([open, ev('a', 'pre-restore', 1, r('ra')), ev('b', 'pre-restore', 5, r('rb'))]);
    assert.deepEqual(replies(effects[1]!), []);
    assert.deepEqual(
      replies(effects[2]!).map((x) => [x.peer, x.proceed]),
      [
        ['a:pre-restore', true],
        ['b:pre-restore', true],
      ],
    );
    const gate = decisions(effects[2]!).find((d) => d.kind === 'gate-opened')!;
    assert.equal(gate.action, 'pre-restore');
    assert.equal(gate.waitedMs, 4);
    assert.equal(state.sessions.get('s1')!.holdAt, 'pre-restore');
  });

  it('arrival barrier: a tree that never comes aborts the waiting ones at pre-restore (nothing restored yet)', () => {
    const cfg = { ...config, defaultHoldAt: 'pre-restore' as const };
    const { state, effects } = feedWith(cfg, [
      ev('a', 'pre-restore', 1, r('ra')),
      { type: 'deadline', session: 's1', attempt: 1, at: 1000 },
    ]);
    assert.deepEqual(replies(effects[0]!), []);
    assert.deepEqual(replies(effects[1]!), [{ peer: 'a:pre-restore', proceed: false, code: 'E_DEADLINE' }]);
    assert.match(
      decisions(effects[1]!).find((d) => d.kind === 'session-aborted')!.reason,
      /at the pre-restore gate; still missing: 1 tree\(s\) not seen yet/,
    );
    assert.equal(state.sessions.get('s1')!.status, 'aborted');
  });

  it('arrival barrier: a tree at post-restore that never passed it is a contradiction', () => {
    const cfg = { ...config, defaultHoldAt: 'pre-restore' as const };
    const { effects } = feedWith(cfg, [ev('a', 'pre-restore', 1, r('ra')), ev('b', 'post-restore', 2, r('rb'))]);
    assert.deepEqual(
      replies(effects[1]!).map((x) => x.code),
      ['E_CONTRADICTION', 'E_CONTRADICTION'],
    );
    assert.match(
      decisions(effects[1]!).find((d) => d.kind === 'session-aborted')!.reason,
      /tree b reached post-restore before its pre-restore was answered/,
    );
  });
});

describe('session reducer: what a client may not choose', () => {
  const open = (over: Partial<Extract<Input, { type: 'open' }>> = {}): Input => ({
    type: 'open',
    session: 's1',
    expectedTrees: 2,
    attempt: 1,
    deadlineMs: 0,
    manifest: [],
    activator: '',
    peer: 'p',
    at: 0,
    ...over,
  });

  it('refuses a client-chosen exec or kfd activator unless the operator allowed it by name', () => {
    const refused = feed([open({ activator: 'exec:touch /tmp/pwned' }), open({ session: 's2', activator: 'kfd' })]);
    assert.deepEqual(
      replies(refused.all).map((r) => [r.proceed, r.code]),
      [
        [false, 'E_FORBIDDEN'],
        [false, 'E_FORBIDDEN'],
      ],
    );
    assert.match(
      decisions(refused.all)[0]!.reason,
      /activator exec:touch \/tmp\/pwned is not allowed by this coordinator.*serve --allow-activator/,
    );
    assert.equal(refused.state.sessions.size, 0);
    const cfg = { ...config, allowedActivators: ['exec:/usr/local/bin/activate-gpu' as const] };
    const allowed = feedWith(cfg, [
      open({ activator: 'exec:/usr/local/bin/activate-gpu' }),
      open({ session: 's2', activator: 'exec:/usr/local/bin/other' }),
      open({ session: 's3', activator: 'verify' }),
    ]);
    assert.deepEqual(
      replies(allowed.all).map((r) => r.proceed),
      [true, false, true],
    );
  });

  it('refuses a repeated open that asks for another activator, deadline or manifest', () => {
    const { all } = feed([open({ deadlineMs: 500 }), open({ deadlineMs: 500 }), open({ deadlineMs: 900 }), open({ activator: 'verify' })]);
    assert.deepEqual(
      replies(all).map((r) => [r.proceed, r.code]),
      [
        [true, ''],
        [true, ''],
        [false, 'E_CONTRADICTION'],
        [false, 'E_CONTRADICTION'],
      ],
    );
  });

  it('never lets a verify session borrow the root pid or images of another live session on the same host', () => {
    const cfg = { ...config, defaultActivator: 'verify' as const };
    const { all, state } = feedWith(cfg, [
      ev('a', 'post-restore', 0, { session: 'job1', initPid: 100, imageDir: '/img/job1-a', run: 'r1' }),
      ev('x', 'post-restore', 1, { session: 'job2', initPid: 100, imageDir: '/img/job2-x', run: 'r2' }, 'pid-thief'),
      ev('y', 'pre-restore', 2, { session: 'job2', imageDir: '/img/job1-a', run: 'r3' }, 'dir-thief'),
      ev('z', 'post-restore', 3, { session: 'job2', initPid: 100, host: 'other-host', imageDir: '/img/z', run: 'r4' }, 'elsewhere'),
    ]);
    const r = replies(all);
    assert.deepEqual(
      r.filter((x) => x.peer !== 'elsewhere').map((x) => [x.peer, x.code]),
      [
        ['pid-thief', 'E_FORBIDDEN'],
        ['dir-thief', 'E_FORBIDDEN'],
      ],
    );
    assert.match(
      decisions(all).find((d) => d.tree === 'x' && d.kind === 'event-rejected')!.reason,
      /pid 100 on h is the root of tree a of session job1/,
    );
    assert.ok(!state.sessions.get('job2')!.trees.has('x'));
    assert.ok(state.sessions.get('job2')!.trees.has('z'), 'the same pid on another host is another process');
  });

  it('keeps the root pid a run first named', () => {
    const { all, state } = feed([
      ev('a', 'post-restore', 0, { initPid: 100 }),
      ev('a', 'post-restore', 1, { initPid: 200, resent: true }, 'moved'),
    ]);
    assert.deepEqual(
      replies(all)
        .filter((x) => x.peer === 'moved')
        .map((x) => x.code),
      ['E_CONTRADICTION'],
    );
    assert.equal(state.sessions.get('s1')!.trees.get('a')!.initPid, 100);
  });
});

describe('session reducer: bounds and shutdown', () => {
  it('refuses new sessions beyond its limit (E_LIMIT), making room from ended sessions first; known sessions go on', () => {
    const cfg = { ...config, maxSessions: 2, retentionMs: 100 };
    const one = (session: string, at: number, action: 'post-restore' | 'pre-resume' = 'post-restore') =>
      ev('a', action, at, { session, expectedTrees: 1 }, `${session}@${at}`);
    const { all, state } = feedWith(cfg, [
      one('s1', 0),
      one('s2', 1),
      one('s3', 2), // full: s3 refused
      one('s1', 3, 'pre-resume'), // s1 goes on (and ends: released)
      one('s4', 200), // s1 ended more than 100 ms ago: room is made
    ]);
    assert.deepEqual(
      replies(all).map((r) => [r.peer, r.code]),
      [
        ['s1@0', ''],
        ['s2@1', ''],
        ['s3@2', 'E_LIMIT'],
        ['s1@3', ''],
        ['s4@200', ''],
      ],
    );
    assert.match(
      decisions(all).find((d) => d.code === 'E_LIMIT')!.reason,
      /already holds 2 sessions, its limit \(serve --max-sessions\): session s3 is refused/,
    );
    assert.deepEqual([...state.sessions.keys()].sort(), ['s2', 's4']);
  });

  it('prunes at most once per interval: a flood of new sessions does not rescan every session each time', () => {
    const cfg = { ...config, retentionMs: 60_000 };
    const inputs: Input[] = [];
    for (let i = 0; i < 3000; i++) inputs.push(ev('a', 'pre-restore', 1000 + i / 10, { session: `f${i}`, expectedTrees: 1 }, null));
    let state = initialState(cfg);
    for (const i of inputs) state = reduceInPlace(state, i)[0];
    assert.equal(state.sessions.size, 3000);
    assert.equal(state.prunedAt, 1000, 'one scan in the first second of daemon time, not 3,000');
  });

  it('on shutdown without a journal, aborts every open session and tells its waiting hooks; ended sessions stay as they were', () => {
    const { all, state } = feed([
      ev('a', 'post-restore', 0, { session: 'done', expectedTrees: 1 }),
      ev('a', 'pre-resume', 1, { session: 'done', expectedTrees: 1 }),
      ev('a', 'post-restore', 2),
      { type: 'shutdown', at: 3 },
    ]);
    assert.deepEqual(
      replies(all)
        .filter((r) => !r.proceed)
        .map((r) => [r.peer, r.code]),
      [['a:post-restore', 'E_SHUTDOWN']],
    );
    assert.equal(state.sessions.get('s1')!.status, 'aborted');
    assert.equal(state.sessions.get('done')!.status, 'released');
  });
});
