/** The verify activator's rules in the pure reducer: per-BO gating, activation, mismatches. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { CoordinatorState, Effect, Input, MappingRef, Observation } from '../../src/core/model';
import type { BoKind } from '../../src/core/bo-graph';
import { decisions, decisionsOf, ev, feed as feedWith, replies } from './fixtures';

const config = { defaultDeadlineMs: 1000, defaultActivator: 'verify' as const };

const feed = (inputs: Input[], state?: CoordinatorState) => feedWith(config, inputs, state);

const map = (tree: string, pid: number, bo: string, kind: BoKind, start: bigint, size = 0x10000n): MappingRef => ({
  bo,
  kind,
  label: bo,
  tree,
  pid,
  start,
  size,
  prot: 3,
  pgoff: 0n,
});
const images = (tree: string, mappings: MappingRef[] | null, error = ''): Input => ({
  type: 'tree-images',
  session: 's1',
  attempt: 1,
  tree,
  mappings,
  error,
  at: 1,
});
const ok = (m: MappingRef, object = `0:${m.bo}`, samples: Record<string, string> = { '0': 'aa' }): Observation => ({
  bo: m.bo,
  tree: m.tree,
  pid: m.pid,
  start: m.start,
  hostPid: 1000 + m.pid,
  problem: '',
  object,
  samples,
});
const observed = (tree: string, observations: Observation[], at = 5): Input => ({
  type: 'tree-observed',
  session: 's1',
  attempt: 1,
  tree,
  observations,
  error: '',
  at,
});
const kinds = (effects: Effect[]) => effects.map((e) => (e.type === 'publish-decision' ? e.decision.kind : e.type));

// tree a: one memfd shared by its tasks 1 and 2; tree b: nothing shared
const a1 = map('a', 1, 'memfd:a:1', 'memfd', 0x500000000000n);
const a2 = map('a', 2, 'memfd:a:1', 'memfd', 0x500004000000n);
// a /dev/shm file mapped by both trees
const fa = map('a', 1, 'file:-1:/dev/shm/x', 'file', 0x540000000000n);
const fb = map('b', 1, 'file:-1:/dev/shm/x', 'file', 0x540040000000n);

describe('verify activator (pure reducer)', () => {
  it("asks for a tree's images at its first event and observes it at post-restore", () => {
    const { effects } = feed([ev('a', 'pre-restore'), images('a', [a1, a2]), ev('a', 'post-restore')]);
    assert.deepEqual(
      effects[0]!.find((e) => e.type === 'inspect-tree'),
      { type: 'inspect-tree', session: 's1', attempt: 1, tree: 'a', imageDir: '/img/a' },
    );
    const verify = effects[2]!.find((e) => e.type === 'verify-tree');
    assert.ok(verify && verify.type === 'verify-tree');
    assert.equal(verify.initPid, 100);
    assert.deepEqual(verify.mappings, [a1, a2]);
  });

  it('releases a tree whose BOs are all active without waiting for trees it shares nothing with', () => {
    const { effects } = feed([
      ev('a', 'pre-restore'),
      ev('b', 'pre-restore'),
      images('a', [a1, a2]),
      ev('a', 'post-restore', 2),
      observed('a', [ok(a1), ok(a2)]),
    ]);
    assert.deepEqual(kinds(effects[4]!), ['bo-verified', 'bo-activated', 'reply', 'tree-released']);
    assert.deepEqual(replies(effects[4]!), [{ peer: 'a:post-restore', proceed: true, code: '' }]);
    const [activated] = decisionsOf(effects[4]!, 'bo-activated');
    assert.equal(activated!.bo, 'memfd:a:1');
    assert.deepEqual(activated!.mappers, [
      { tree: 'a', pid: 1, start: 0x500000000000n, size: 65536n },
      { tree: 'a', pid: 2, start: 0x500004000000n, size: 65536n },
    ]);
  });

  it("holds a tree that maps a file until every tree's images are known and every mapper is verified", () => {
    const { effects, state } = feed([
      ev('a', 'pre-restore'),
      images('a', [fa]),
      ev('a', 'post-restore', 2),
      observed('a', [ok(fa)]),
      ev('b', 'pre-restore', 10),
      images('b', [fb]),
      ev('b', 'post-restore', 12),
      observed('b', [ok(fb)], 13),
    ]);
    const early = replies(effects.slice(0, 7).flat());
    // without an arrival barrier, pre-restore is answered at once; post-restore waits
    assert.deepEqual(
      early.map((r) => [r.peer, r.proceed]),
      [
        ['a:pre-restore', true],
        ['b:pre-restore', true],
      ],
    );
    assert.deepEqual(
      early.filter((r) => r.peer.endsWith(':post-restore')),
      [],
      'nobody released at post-restore before b is verified',
    );
    assert.deepEqual(
      replies(effects[7]!).map((r) => r.peer),
      ['a:post-restore', 'b:post-restore'],
    );
    assert.equal(state.sessions.get('s1')!.gates['post-restore'].openedAt, 13);
    assert.deepEqual(
      decisions(effects[7]!).map((d) => d.kind),
      ['bo-verified', 'bo-activated', 'gate-opened', 'tree-released', 'tree-released'],
    );
  });

  it('aborts every waiting tree when a mapping is not where the images say, naming BO, task and address', () => {
    const { effects } = feed([
      ev('a', 'pre-restore'),
      images('a', [a1, a2]),
      ev('a', 'post-restore'),
      observed('a', [ok(a1), { ...ok(a2), problem: 'no mapping starts at 0x500004000000' }]),
    ]);
    assert.deepEqual(replies(effects[3]!), [{ peer: 'a:post-restore', proceed: false, code: 'E_VERIFY' }]);
    const abort = decisions(effects[3]!).find((d) => d.kind === 'session-aborted')!;
    assert.equal(abort.reason, 'BO memfd:a:1 (memfd:a:1): tree a task 2 at 0x500004000000: no mapping starts at 0x500004000000');
  });

  it('aborts when mappers are backed by different objects, or their bytes differ', () => {
    const objects = feed([
      ev('a', 'pre-restore'),
      images('a', [a1, a2]),
      ev('a', 'post-restore'),
      observed('a', [ok(a1), ok(a2, '0:other')]),
    ]);
    assert.match(
      decisions(objects.effects[3]!).find((d) => d.kind === 'session-aborted')!.reason,
      /tree a task 2 at 0x500004000000 is backed by object 0:other, but tree a task 1 at 0x500000000000 by 0:memfd:a:1/,
    );
    const bytes = feed([
      ev('a', 'pre-restore'),
      images('a', [a1, a2]),
      ev('a', 'post-restore'),
      observed('a', [ok(a1), ok(a2, undefined, { '0': 'bb' })]),
    ]);
    assert.match(
      decisions(bytes.effects[3]!).find((d) => d.kind === 'session-aborted')!.reason,
      /content differs at object offset 0x0 between tree a task 1 at 0x500000000000 and tree a task 2 at 0x500004000000/,
    );
  });

  it("aborts with a specific reason when a tree's images cannot be read or observed", () => {
    const img = feed([ev('a', 'post-restore'), images('a', null, 'pstree.img: truncated')]);
    assert.deepEqual(replies(img.effects[1]!), [{ peer: 'a:post-restore', proceed: false, code: 'E_IMAGE' }]);
    const obs = feed([
      ev('a', 'post-restore'),
      images('a', []),
      { type: 'tree-observed', session: 's1', attempt: 1, tree: 'a', observations: null, error: 'ESRCH', at: 3 },
    ]);
    assert.match(decisions(obs.effects[2]!)[0]!.reason, /tree a: cannot observe its restored tasks: ESRCH/);
  });

  it('gates a manifest BO across trees like a file BO', () => {
    const ma = map('a', 1, 'manifest:gpu0', 'manifest', 0x7f0000000000n);
    const mb = map('b', 1, 'manifest:gpu0', 'manifest', 0x7f1000000000n);
    const open: Input = {
      type: 'open',
      session: 's1',
      expectedTrees: 2,
      attempt: 1,
      deadlineMs: 0,
      manifest: [ma, mb],
      activator: 'verify',
      peer: null,
      at: 0,
    };
    const { effects } = feed([
      open,
      ev('a', 'pre-restore'),
      images('a', []),
      ev('a', 'post-restore'),
      ev('b', 'pre-restore'),
      images('b', []),
      ev('b', 'post-restore'),
    ]);
    const va = effects[3]!.find((e) => e.type === 'verify-tree');
    assert.ok(va && va.type === 'verify-tree' && va.mappings.length === 1 && va.mappings[0]!.bo === 'manifest:gpu0');
    const { effects: after } = feed(
      [observed('a', [ok(ma)]), observed('b', [ok(mb)])],
      feed([
        open,
        ev('a', 'pre-restore'),
        images('a', []),
        ev('a', 'post-restore'),
        ev('b', 'pre-restore'),
        images('b', []),
        ev('b', 'post-restore'),
      ]).state,
    );
    assert.deepEqual(replies(after[0]!), []);
    assert.deepEqual(
      replies(after[1]!).map((r) => r.proceed),
      [true, true],
    );
  });

  it('names the BOs still pending when the deadline passes during verification', () => {
    const { effects } = feed([
      ev('a', 'pre-restore'),
      images('a', [fa]),
      ev('a', 'post-restore'),
      observed('a', [ok(fa)]),
      ev('b', 'pre-restore'),
      images('b', [fb]),
      ev('b', 'post-restore'),
      { type: 'deadline', session: 's1', attempt: 1, at: 1000 },
    ]);
    assert.match(
      decisions(effects[7]!).find((d) => d.kind === 'session-aborted')!.reason,
      /post-restore gate; BOs not yet active: file:-1:\/dev\/shm\/x/,
    );
  });
});

describe('exec and kfd activators (pure reducer)', () => {
  const execConfig = { defaultDeadlineMs: 1000, defaultActivator: 'exec:true' as const };
  const run = (inputs: Input[]) => feedWith(execConfig, inputs);
  const verified = [ev('a', 'pre-restore'), images('a', [a1, a2]), ev('a', 'post-restore'), observed('a', [ok(a1), ok(a2)])];

  it("hands a verified BO to the activator with every mapper's host pid, and waits for it", () => {
    const { effects } = run(verified);
    const act = effects[3]!.find((e) => e.type === 'activate-bo');
    assert.ok(act && act.type === 'activate-bo');
    assert.equal(act.activator, 'exec:true');
    assert.deepEqual(
      act.mappers.map((m) => [m.tree, m.pid, m.hostPid, m.start, m.size]),
      [
        ['a', 1, 1001, 0x500000000000n, 0x10000n],
        ['a', 2, 1002, 0x500004000000n, 0x10000n],
      ],
    );
    assert.deepEqual(replies(effects[3]!), [], 'not released before the activator answers');
  });

  it('activates the BO and releases the tree when the activator succeeds', () => {
    const { effects } = run([...verified, { type: 'bo-activation', session: 's1', attempt: 1, bo: 'memfd:a:1', error: '', at: 9 }]);
    assert.deepEqual(kinds(effects[4]!), ['bo-activated', 'reply', 'tree-released']);
  });

  it('aborts every waiting tree when the activator fails', () => {
    const { effects } = run([
      ...verified,
      { type: 'bo-activation', session: 's1', attempt: 1, bo: 'memfd:a:1', error: 'exit 3: no GPU', at: 9 },
    ]);
    assert.deepEqual(replies(effects[4]!), [{ peer: 'a:post-restore', proceed: false, code: 'E_ACTIVATOR' }]);
    assert.match(
      decisions(effects[4]!).find((d) => d.kind === 'session-aborted')!.reason,
      /activator exec:true failed for BO memfd:a:1: exit 3: no GPU/,
    );
  });
});
