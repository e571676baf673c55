import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TestScheduler } from 'rxjs/testing';
import { filter, map } from 'rxjs';
import { coordinate, type OutputEffect } from '../../src/pipeline/coordinate';
import { ev } from '../unit/fixtures';

const scheduler = () => new TestScheduler((actual, expected) => assert.deepEqual(actual, expected));

/** Keeps only the replies, as "peer=P|A" strings (proceed or abort). */
const replies = (e$: import('rxjs').Observable<OutputEffect>) =>
  e$.pipe(
    filter((e): e is Extract<OutputEffect, { type: 'reply' }> => e.type === 'reply'),
    map((e) => `${e.peer}=${e.verdict.proceed ? 'P' : `A:${e.verdict.code}`}`),
  );

describe('coordinate pipeline (marble, virtual time)', () => {
  it('releases both trees at the post-restore gate when the late tree arrives', () => {
    const ts = scheduler();
    ts.run(({ hot, expectObservable }) => {
      const input = hot('a 99ms b', { a: ev('a', 'post-restore'), b: ev('b', 'post-restore') });
      expectObservable(
        input.pipe(coordinate({ config: { defaultDeadlineMs: 1000, defaultActivator: 'none' }, scheduler: ts }), replies),
      ).toBe('- 99ms (xy)', {
        x: 'a:post-restore=P',
        y: 'b:post-restore=P',
      });
    });
  });

  it('aborts the waiting tree exactly at the session deadline', () => {
    const ts = scheduler();
    ts.run(({ hot, expectObservable }) => {
      const input = hot('a', { a: ev('a', 'post-restore') });
      expectObservable(
        input.pipe(coordinate({ config: { defaultDeadlineMs: 300, defaultActivator: 'none' }, scheduler: ts }), replies),
      ).toBe('300ms x', {
        x: 'a:post-restore=A:E_DEADLINE',
      });
    });
  });

  it('keeps the deadline from the first event: a slow second gate still aborts at 300 ms', () => {
    const ts = scheduler();
    ts.run(({ hot, expectObservable }) => {
      const input = hot('ab 100ms c', {
        a: ev('a', 'post-restore'),
        b: ev('b', 'post-restore'),
        c: ev('a', 'pre-resume'),
      });
      expectObservable(
        input.pipe(coordinate({ config: { defaultDeadlineMs: 300, defaultActivator: 'none' }, scheduler: ts }), replies),
      ).toBe('-(xy) 295ms z', {
        x: 'a:post-restore=P',
        y: 'b:post-restore=P',
        z: 'a:pre-resume=A:E_DEADLINE',
      });
    });
  });

  it('does not abort after the resume barrier released everyone', () => {
    const ts = scheduler();
    ts.run(({ hot, expectObservable }) => {
      const input = hot('a 9ms b 9ms c 9ms d', {
        a: ev('a', 'post-restore'),
        b: ev('b', 'post-restore'),
        c: ev('a', 'pre-resume'),
        d: ev('b', 'pre-resume'),
      });
      expectObservable(
        input.pipe(coordinate({ config: { defaultDeadlineMs: 40, defaultActivator: 'none' }, scheduler: ts }), replies),
        '^ 100ms !',
      ).toBe('10ms (xy) 16ms (zw)', {
        x: 'a:post-restore=P',
        y: 'b:post-restore=P',
        z: 'a:pre-resume=P',
        w: 'b:pre-resume=P',
      });
    });
  });
});

describe('coordinate pipeline: hostile inputs', () => {
  it('rejects an input the reducer fails on, alone: the pipeline goes on and serves the next session', () => {
    const ts = scheduler();
    ts.run(({ hot, expectObservable }) => {
      // a field of the wrong type (e.g. from a crafted journal line) makes the reducer throw
      const broken = ev('x', 'post-restore', 0, { imageDir: null as unknown as string }, 'bad');
      const input = hot('a b', { a: broken, b: ev('a', 'post-restore', 0, { expectedTrees: 1 }) });
      expectObservable(
        input.pipe(coordinate({ config: { defaultDeadlineMs: 1000, defaultActivator: 'none' }, scheduler: ts }), replies),
      ).toBe('x y', {
        x: 'bad=A:E_INTERNAL',
        y: 'a:post-restore=P',
      });
    });
  });

  it('serves sessions named like Object.prototype members', () => {
    const ts = scheduler();
    const names = ['__proto__', 'constructor', 'toString', 'hasOwnProperty'];
    ts.run(({ hot, expectObservable }) => {
      const values = Object.fromEntries(
        names.map((n, i) => [String.fromCharCode(97 + i), ev('t', 'post-restore', 0, { session: n, expectedTrees: 1 }, n)]),
      );
      const input = hot('abcd', values);
      expectObservable(
        input.pipe(coordinate({ config: { defaultDeadlineMs: 1000, defaultActivator: 'none' }, scheduler: ts }), replies),
      ).toBe('abcd', Object.fromEntries(names.map((n, i) => [String.fromCharCode(97 + i), `${n}=P`])));
    });
  });
});
