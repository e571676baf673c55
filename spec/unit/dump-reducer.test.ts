/**
 * The dump half of the cycle in the pure reducer: the pre-dump barrier, the
 * network-lock barrier of trees with their own netns, the post-dump group
 * commit, and every way a dump session aborts (each tree's hook then exits
 * non-zero and criu resumes its tree).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { CoordinatorState, Input } from '../../src/core/model';
import { statusView } from '../../src/core/status';
import { decisions, ev, feed as feedWith, replies } from './fixtures';

const config = { defaultDeadlineMs: 1000, defaultActivator: 'verify' as const };
const feed = (inputs: Input[], state?: CoordinatorState) => feedWith(config, inputs, state);
const dumpEv = (tree: string, action: Parameters<typeof ev>[1], at = 0, over = {}) => ev(tree, action, at, { initPid: 0, ...over });

describe('dump sessions', () => {
  it('opens a dump session from a pre-dump event: no activator, no images read', () => {
    const { state, all } = feed([dumpEv('a', 'pre-dump')]);
    const s = state.sessions.get('s1')!;
    assert.equal(s.phase, 'dump');
    assert.equal(s.activator, 'none');
    assert.ok(!all.some((e) => e.type === 'inspect-tree'));
    assert.match(decisions(all).find((d) => d.kind === 'session-opened')!.reason, /^dump: expecting 2/);
  });

  it('holds pre-dump until every tree has started its dump, then lets all freeze together', () => {
    const { effects } = feed([dumpEv('a', 'pre-dump', 1), dumpEv('b', 'pre-dump', 5)]);
    assert.deepEqual(replies(effects[0]!), []);
    assert.deepEqual(replies(effects[1]!), [
      { peer: 'a:pre-dump', proceed: true, code: '' },
      { peer: 'b:pre-dump', proceed: true, code: '' },
    ]);
    assert.equal(decisions(effects[1]!).find((d) => d.kind === 'gate-opened')!.action, 'pre-dump');
  });

  it('commits at post-dump only once every tree has written its images; the session is then committed', () => {
    const { state, effects } = feed([
      dumpEv('a', 'pre-dump'),
      dumpEv('b', 'pre-dump'),
      dumpEv('a', 'post-dump', 10),
      dumpEv('b', 'post-dump', 30),
    ]);
    assert.deepEqual(replies(effects[2]!), []);
    assert.deepEqual(
      replies(effects[3]!).map((r) => [r.peer, r.proceed]),
      [
        ['a:post-dump', true],
        ['b:post-dump', true],
      ],
    );
    // the commit names the set: what each tree's commit record will list
    const commitVerdicts = effects[3]!.flatMap((e) => (e.type === 'reply' ? [e.verdict.members] : []));
    assert.deepEqual(commitVerdicts, [
      [
        { tree: 'a', host: 'h', run: 'legacy:h:6' },
        { tree: 'b', host: 'h', run: 'legacy:h:6' },
      ],
      [
        { tree: 'a', host: 'h', run: 'legacy:h:6' },
        { tree: 'b', host: 'h', run: 'legacy:h:6' },
      ],
    ]);
    const s = state.sessions.get('s1')!;
    assert.equal(s.status, 'committed');
    assert.ok(effects[3]!.some((e) => e.type === 'cancel-deadline'));
    const view = statusView(state)[0]!;
    assert.equal(view.phase, 'dump');
    assert.deepEqual(
      view.trees.map((t) => t.committed),
      [true, true],
    );
  });

  it('holds network-lock until every tree with its own netns is frozen; trees without one do not count', () => {
    const trees3 = { expectedTrees: 3 };
    const { effects } = feed([
      dumpEv('a', 'pre-dump', 0, { ...trees3, netLock: true }),
      dumpEv('b', 'pre-dump', 0, { ...trees3, netLock: true }),
      dumpEv('c', 'pre-dump', 0, trees3),
      dumpEv('a', 'network-lock', 1, trees3),
      dumpEv('c', 'post-dump', 2, trees3),
      dumpEv('b', 'network-lock', 3, trees3),
    ]);
    assert.deepEqual(replies(effects[3]!), []);
    assert.deepEqual(replies(effects[4]!), []);
    assert.deepEqual(
      replies(effects[5]!).map((r) => r.peer),
      ['a:network-lock', 'b:network-lock'],
    );
    const opened = decisions(effects[5]!).find((d) => d.kind === 'gate-opened')!;
    assert.deepEqual(opened.trees, ['a', 'b']);
  });

  it('a network-lock nobody declared still counts: the tree arriving there has a netns', () => {
    const { effects } = feed([dumpEv('a', 'pre-dump'), dumpEv('b', 'pre-dump'), dumpEv('a', 'network-lock')]);
    assert.deepEqual(replies(effects[2]!), [{ peer: 'a:network-lock', proceed: true, code: '' }]);
  });

  it('a tree missing at the deadline aborts every dump before anything is frozen', () => {
    const { state, effects } = feed([dumpEv('a', 'pre-dump'), { type: 'deadline', session: 's1', attempt: 1, at: 1000 }]);
    assert.deepEqual(replies(effects[1]!), [{ peer: 'a:pre-dump', proceed: false, code: 'E_DEADLINE' }]);
    assert.match(decisions(effects[1]!).find((d) => d.kind === 'session-aborted')!.reason, /pre-dump gate; still missing: 1 tree/);
    assert.equal(state.sessions.get('s1')!.status, 'aborted');
  });

  it('a failed dump aborts the commit: every tree waiting at post-dump is answered ABORT (criu resumes it)', () => {
    const { state, effects } = feed([
      dumpEv('a', 'pre-dump'),
      dumpEv('b', 'pre-dump'),
      dumpEv('a', 'post-dump'),
      ev('b', 'dump-failed', 5, { initPid: 0, reason: 'criu exited with 1' }, null),
    ]);
    assert.deepEqual(replies(effects[3]!), [{ peer: 'a:post-dump', proceed: false, code: 'E_TREE_FAILED' }]);
    assert.equal(state.sessions.get('s1')!.status, 'aborted');
    // a hook that re-sends after the abort gets the same answer: never a late commit
    const late = feed([dumpEv('b', 'post-dump', 6)], state);
    assert.deepEqual(replies(late.effects[0]!), [{ peer: 'b:post-dump', proceed: false, code: 'E_TREE_FAILED' }]);
  });

  it('a hook lost at post-dump aborts the commit', () => {
    const { effects } = feed([
      dumpEv('a', 'pre-dump'),
      dumpEv('b', 'pre-dump'),
      dumpEv('a', 'post-dump', 1, { resendMs: 100 }),
      ev('b', 'post-dump', 1, { initPid: 0 }, null),
    ]);
    assert.ok(effects[2]!.some((e) => e.type === 'schedule-lease' && e.gate === 'post-dump'));
    // b's post-dump came without a peer: a's is answered once b is there
    assert.deepEqual(replies(effects[3]!), [{ peer: 'a:post-dump', proceed: true, code: '' }]);
    const lost = feed([
      dumpEv('a', 'pre-dump'),
      dumpEv('b', 'pre-dump'),
      dumpEv('a', 'post-dump', 1, { resendMs: 100 }),
      { type: 'hook-lost', session: 's1', attempt: 1, tree: 'a', gate: 'post-dump', silentMs: 300, at: 400 },
    ]);
    assert.deepEqual(replies(lost.effects[3]!), [{ peer: 'a:post-dump', proceed: false, code: 'E_HOOK_LOST' }]);
  });

  it('a failure reported after the commit changes nothing', () => {
    const { state } = feed([
      dumpEv('a', 'pre-dump'),
      dumpEv('b', 'pre-dump'),
      dumpEv('a', 'post-dump'),
      dumpEv('b', 'post-dump'),
      ev('b', 'dump-failed', 5, { initPid: 0 }, null),
    ]);
    assert.equal(state.sessions.get('s1')!.status, 'committed');
  });

  it('refuses post-dump before pre-dump was answered (a run that skipped the barrier)', () => {
    const { state, effects } = feed([dumpEv('a', 'pre-dump'), dumpEv('b', 'post-dump')]);
    assert.deepEqual(replies(effects[1]!), [
      { peer: 'a:pre-dump', proceed: false, code: 'E_CONTRADICTION' },
      { peer: 'b:post-dump', proceed: false, code: 'E_CONTRADICTION' },
    ]);
    assert.equal(state.sessions.get('s1')!.status, 'aborted');
  });

  it('a restore run cannot join a session that is still dumping, nor a dump run a restore', () => {
    const dumping = feed([dumpEv('a', 'pre-dump'), ev('b', 'pre-restore')]);
    assert.deepEqual(replies(dumping.effects[1]!), [{ peer: 'b:pre-restore', proceed: false, code: 'E_PHASE' }]);
    assert.equal(dumping.state.sessions.get('s1')!.status, 'open');
    const restoring = feed([ev('a', 'pre-restore'), dumpEv('b', 'pre-dump')]);
    assert.deepEqual(replies(restoring.effects[1]!), [{ peer: 'b:pre-dump', proceed: false, code: 'E_PHASE' }]);
  });

  it('restores a committed checkpoint under the same session and attempt: the dump is history', () => {
    const { state, effects } = feed([
      dumpEv('a', 'pre-dump'),
      dumpEv('b', 'pre-dump'),
      dumpEv('a', 'post-dump'),
      dumpEv('b', 'post-dump'),
      ev('a', 'pre-restore', 10, { run: 'r2' }),
    ]);
    const s = state.sessions.get('s1')!;
    assert.equal(s.phase, 'restore');
    assert.equal(s.status, 'open');
    assert.equal(s.activator, 'verify');
    assert.deepEqual(replies(effects[4]!), [{ peer: 'a:pre-restore', proceed: true, code: '' }]);
  });

  it('aborts a restore whose trees come from different committed sets', () => {
    const { state, effects } = feed([ev('a', 'pre-restore', 0, { commit: 'c1' }), ev('b', 'pre-restore', 0, { commit: 'c2' })]);
    assert.deepEqual(replies(effects[1]!), [{ peer: 'b:pre-restore', proceed: false, code: 'E_CONTRADICTION' }]);
    assert.match(state.sessions.get('s1')!.abort!.reason, /committed set c2 but session s1 restores committed set c1/);
    const mixed = feed([ev('a', 'pre-restore', 0, { commit: 'c1' }), ev('b', 'pre-restore')]);
    assert.equal(mixed.state.sessions.get('s1')!.status, 'aborted');
    const same = feed([ev('a', 'pre-restore', 0, { commit: 'c1' }), ev('b', 'pre-restore', 0, { commit: 'c1' })]);
    assert.equal(same.state.sessions.get('s1')!.status, 'open');
  });

  it('refuses a commit id that is not a name (a hostile client cannot park a megabyte in the session)', () => {
    const { state, effects } = feed([
      ev('a', 'pre-restore', 0, { commit: 'c'.repeat(129) }),
      ev('b', 'pre-restore', 0, { commit: 'c-1\n' }),
    ]);
    for (const e of effects)
      assert.deepEqual(
        replies(e).map((r) => r.code),
        ['E_BAD_EVENT'],
      );
    assert.equal(state.sessions.size, 0);
  });

  it("refuses an oversized or control-laden host, action name or reason (a client's free text is kept in session state)", () => {
    const { state, effects } = feed([
      ev('a', 'pre-restore', 0, { host: 'h'.repeat(256) }),
      ev('b', 'pre-restore', 0, { host: 'host\nforged log line' }),
      ev('c', 'pre-restore', 0, { actionName: 'x'.repeat(65) }),
      ev('d', 'pre-restore', 0, { reason: 'r'.repeat(1025) }),
    ]);
    for (const e of effects)
      assert.deepEqual(
        replies(e).map((r) => r.code),
        ['E_BAD_EVENT'],
      );
    assert.equal(state.sessions.size, 0);
    // at the bounds: accepted
    const fine = feed([ev('a', 'pre-restore', 0, { host: 'h'.repeat(255), reason: 'r'.repeat(1024) })]);
    assert.equal(fine.state.sessions.size, 1);
  });

  it('a network-lock (criu runs it only when dumping) in a restore session is refused', () => {
    const { effects } = feed([ev('a', 'pre-restore'), ev('a', 'network-lock')]);
    assert.deepEqual(replies(effects[1]!), [{ peer: 'a:network-lock', proceed: false, code: 'E_PHASE' }]);
  });
});
