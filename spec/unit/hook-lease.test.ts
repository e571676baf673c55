/** Liveness leases of waiting hooks (StageEvent.resendMs): the reducer's side. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LEASE_PERIODS, initialState, recover, reduce } from '../../src/core/session-reducer';
import type { Effect, Input } from '../../src/core/model';
import { decisions, ev, feed as feedWith, replies } from './fixtures';

const config = { defaultDeadlineMs: 60_000, defaultActivator: 'none' as const };
const feed = (inputs: Input[]) => feedWith(config, inputs);
const leases = (effects: Effect[]) => effects.flatMap((e) => (e.type === 'schedule-lease' ? [`${e.gate}/${e.tree}/${e.inMs}`] : []));
const lost = (tree: string, gate: 'post-restore' | 'pre-resume', at: number, attempt = 1): Input => ({
  type: 'hook-lost',
  session: 's1',
  attempt,
  tree,
  gate,
  silentMs: LEASE_PERIODS * 1000,
  at,
});

describe('hook leases', () => {
  it('gives a waiting hook that re-sends a lease of LEASE_PERIODS periods, renewed by each re-send', () => {
    const { effects } = feed([
      ev('a', 'post-restore', 0, { resendMs: 1000 }),
      ev('a', 'post-restore', 1000, { resendMs: 1000, resent: true }),
    ]);
    assert.deepEqual(leases(effects[0]!), [`post-restore/a/${LEASE_PERIODS * 1000}`]);
    assert.deepEqual(leases(effects[1]!), [`post-restore/a/${LEASE_PERIODS * 1000}`]);
  });

  it('gives no lease to a hook that does not re-send, nor to one released at once', () => {
    const { effects } = feed([
      ev('a', 'post-restore', 0),
      ev('b', 'post-restore', 1, { resendMs: 1000 }), // the last tree: released with a
    ]);
    assert.deepEqual(effects.map(leases), [[], []]);
  });

  it('aborts the whole session when a waiting hook goes silent, answering every other waiting hook', () => {
    const { state, effects } = feed([
      ev('a', 'post-restore', 0, { expectedTrees: 3, resendMs: 1000 }),
      ev('b', 'post-restore', 1, { expectedTrees: 3, resendMs: 1000 }),
      lost('a', 'post-restore', 3001),
    ]);
    const s = state.sessions.get('s1')!;
    assert.equal(s.status, 'aborted');
    assert.equal(s.abort!.code, 'E_HOOK_LOST');
    assert.match(s.abort!.reason, /hook of tree a went silent while it waited at post-restore/);
    // the silent hook is answered too: if it was only slow, it must abort as well
    assert.deepEqual(replies(effects[2]!), [
      { peer: 'a:post-restore', proceed: false, code: 'E_HOOK_LOST' },
      { peer: 'b:post-restore', proceed: false, code: 'E_HOOK_LOST' },
    ]);
    assert.deepEqual(
      decisions(effects[2]!).map((d) => d.kind),
      ['session-aborted'],
    );
  });

  it('ignores a lease that runs out after its tree was answered', () => {
    const { state, effects } = feed([
      ev('a', 'post-restore', 0, { resendMs: 1000 }),
      ev('b', 'post-restore', 1, { resendMs: 1000 }),
      lost('a', 'post-restore', 3000),
    ]);
    assert.equal(state.sessions.get('s1')!.status, 'open');
    assert.deepEqual(effects[2], []);
    assert.equal(state.sessions.get('s1')!.gates['post-restore'].leases.size, 0);
  });

  it('ignores a lease of another attempt or of a gate the tree does not wait at', () => {
    const { state } = feed([
      ev('a', 'post-restore', 0, { resendMs: 1000 }),
      lost('a', 'post-restore', 3000, 2),
      lost('a', 'pre-resume', 3000),
    ]);
    assert.equal(state.sessions.get('s1')!.status, 'open');
  });

  it('re-arms the lease of every waiting hook after a restart', () => {
    const { state } = feed([ev('a', 'pre-restore', 0), ev('a', 'post-restore', 5, { resendMs: 500 })]);
    const [, effects] = recover(state, 100);
    assert.deepEqual(leases(effects), [`post-restore/a/${LEASE_PERIODS * 500}`]);
  });

  it('rejects a resend period over 60 s', () => {
    const [state, effects] = reduce(initialState(config), ev('a', 'post-restore', 0, { resendMs: 60_001 }));
    assert.equal(state.sessions.get('s1'), undefined);
    assert.deepEqual(replies(effects), [{ peer: 'a:post-restore', proceed: false, code: 'E_BAD_EVENT' }]);
  });
});
