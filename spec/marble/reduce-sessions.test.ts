import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Subject } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { reduceSessions } from '../../src/pipeline/reduce-sessions';
import { initialState, reduceInPlace } from '../../src/core/session-reducer';
import type { CoordinatorConfig, Effect, Input } from '../../src/core/model';
import { ev } from '../unit/fixtures';

const config: CoordinatorConfig = { defaultDeadlineMs: 1000, defaultActivator: 'none' };

/** The effects of `inputs`, folded one after the other by the reducer itself: what the operator must emit. */
function folded(inputs: Input[]): Effect[] {
  let state = initialState(config);
  const out: Effect[] = [];
  for (const i of inputs) {
    const [next, effects] = reduceInPlace(state, i);
    state = next;
    out.push(...effects);
  }
  return out;
}

const a = ev('a', 'post-restore');
const b = ev('b', 'post-restore');
const c = ev('a', 'pre-resume');

describe('reduceSessions (marble)', () => {
  it("emits each input's effects at that input's frame, in the reducer's order", () => {
    const [ea, eb] = [folded([a]), folded([a, b]).slice(folded([a]).length)];
    assert.ok(ea.length >= 2 && eb.length >= 2, 'each input has several effects');
    const letters = (n: number, from: number) => [...Array(n).keys()].map((k) => String.fromCharCode(from + k));
    const [la, lb] = [letters(ea.length, 97), letters(eb.length, 65)];
    // b arrives at frame 20; a group "(…)" of n values spans n + 2 frames
    const marbles = `(${la.join('')}) ${20 - (ea.length + 2)}ms (${lb.join('')})`;
    const values = Object.fromEntries([...ea.map((e, k) => [la[k]!, e]), ...eb.map((e, k) => [lb[k]!, e])]);
    new TestScheduler((actual, expected) => assert.deepEqual(actual, expected)).run(({ hot, expectObservable }) => {
      expectObservable(hot('a 19ms b', { a, b }).pipe(reduceSessions(config))).toBe(marbles, values);
    });
  });

  it('emits the effects of an input fed back during an emission after the current ones (as concatMap did)', () => {
    const input = new Subject<Input>();
    const seen: Effect[] = [];
    let fed = false;
    input.pipe(reduceSessions(config)).subscribe((e) => {
      seen.push(e);
      // on the first effect of b, c comes in synchronously: reduced at once, emitted after b's effects
      if (!fed && seen.length > folded([a]).length) {
        fed = true;
        input.next(c);
      }
    });
    input.next(a);
    input.next(b);
    assert.ok(fed);
    assert.deepEqual(seen, folded([a, b, c]));
  });

  it('answers an input the reducer throws on as rejected and goes on with the next', () => {
    const broken = ev('x', 'post-restore', 0, { imageDir: null as unknown as string }, 'bad');
    const seen: Effect[] = [];
    const input = new Subject<Input>();
    input.pipe(reduceSessions(config)).subscribe((e) => seen.push(e));
    input.next(broken);
    input.next(ev('a', 'post-restore', 0, { expectedTrees: 1 }));
    const replies = seen.flatMap((e) => (e.type === 'reply' ? [`${e.peer}:${e.verdict.proceed ? 'P' : e.verdict.code}`] : []));
    assert.deepEqual(replies, ['bad:E_INTERNAL', 'a:post-restore:P']);
  });
});
