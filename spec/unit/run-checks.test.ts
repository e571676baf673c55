/** The verify activator's checks as part of the pipeline (src/pipeline/run-checks.ts), with fake adapters. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Subject, firstValueFrom, filter, toArray, take } from 'rxjs';
import { coordinate, type OutputEffect } from '../../src/pipeline/coordinate';
import type { CheckAdapters } from '../../src/pipeline/run-checks';
import type { Input, MappingRef } from '../../src/core/model';
import { ev } from './fixtures';

const mapping = (tree: string, pid: number): MappingRef => ({
  bo: 'memfd:x:1',
  kind: 'memfd',
  label: 'memfd x',
  tree,
  pid,
  start: 0x1000n * BigInt(pid),
  size: 0x1000n,
  prot: 3,
  pgoff: 0n,
});

function run(adapters: Partial<CheckAdapters>, inputs: Input[], replies: number) {
  const input$ = new Subject<Input>();
  const recorded: Input[] = [];
  const calls: string[] = [];
  const checks: CheckAdapters = {
    inspect: async (tree) => (calls.push(`inspect ${tree}`), [mapping(tree, 1), mapping(tree, 2)]),
    observe: async (_pid, ms) => (
      calls.push(`observe ${ms.length}`),
      ms.map((m) => ({
        bo: m.bo,
        tree: m.tree,
        pid: m.pid,
        start: m.start,
        hostPid: 1000 + m.pid,
        problem: '',
        object: '0:1',
        samples: { '0': 'aa' },
      }))
    ),
    activate: async () => {},
    now: () => 5,
    ...adapters,
  };
  const out = firstValueFrom(
    input$.pipe(
      coordinate({ config: { defaultDeadlineMs: 10_000, defaultActivator: 'verify' }, checks, record: (i) => recorded.push(i) }),
      filter((e): e is Extract<OutputEffect, { type: 'reply' }> => e.type === 'reply'),
      take(replies),
      toArray(),
    ),
  );
  return { input$, out, recorded, calls };
}

describe('checks in the pipeline', () => {
  it('reads the images and observes the tree through the adapters; their results release the gate and are recorded', async () => {
    const { input$, out, recorded, calls } = run({}, [], 2);
    input$.next(ev('t0', 'pre-restore', 0, { expectedTrees: 1 }));
    await new Promise((r) => setTimeout(r, 20));
    input$.next(ev('t0', 'post-restore', 1, { expectedTrees: 1 }));
    const replies = await out;
    assert.deepEqual(
      replies.map((r) => [r.verdict.action, r.verdict.proceed]),
      [
        ['pre-restore', true],
        ['post-restore', true],
      ],
    );
    assert.deepEqual(calls, ['inspect t0', 'observe 2']);
    assert.deepEqual(
      recorded.map((i) => i.type),
      ['event', 'tree-images', 'event', 'tree-observed'],
    );
  });

  it('turns a failing adapter into the input that says why: the session aborts (E_IMAGE)', async () => {
    const { input$, out } = run({ inspect: async () => Promise.reject(new Error('pstree.img: truncated')) }, [], 2);
    input$.next(ev('t0', 'pre-restore', 0, { expectedTrees: 1 }));
    await new Promise((r) => setTimeout(r, 20));
    input$.next(ev('t0', 'post-restore', 1, { expectedTrees: 1 }));
    const [, post] = await out;
    assert.equal(post!.verdict.proceed, false);
    assert.equal(post!.verdict.code, 'E_IMAGE');
    assert.match(post!.verdict.reason, /tree t0: cannot read its images: pstree.img: truncated/);
  });
});
