/** The events endpoint on real ZeroMQ: what goes out on it, and what is skipped because no one subscribed. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { Subscriber } from 'zeromq';
import { EventPublisher } from '../../src/transport/event-publisher';
import { decodePublished, type PublishedMessage } from '../../src/protocol/codec';
import type { StageEvent } from '../../src/core/model';
import { until } from '../support/coordinator';

const event = (session: string, tree: string): StageEvent => ({
  session,
  tree,
  action: 'post-restore',
  actionName: 'post-restore',
  initPid: 100,
  imageDir: '/images',
  host: 'h',
  hookPid: 101,
  criuPid: 102,
  monoNs: 1n,
  wallNs: 2n,
  attempt: 1,
  expectedTrees: 2,
  reason: '',
});

async function withPublisher(fn: (p: EventPublisher, endpoint: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync('/tmp/sg-test-');
  const endpoint = `ipc://${dir}/events.sock`;
  const p = await EventPublisher.bind([endpoint]);
  try {
    await fn(p, endpoint);
  } finally {
    p.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function subscribe(endpoint: string, topic: string): { sub: Subscriber; got: PublishedMessage[]; topics: string[] } {
  const sub = new Subscriber();
  sub.connect(endpoint);
  sub.subscribe(topic);
  const got: PublishedMessage[] = [];
  const topics: string[] = [];
  void (async () => {
    for await (const [t, frame] of sub) {
      topics.push(t!.toString());
      got.push(decodePublished(frame!));
    }
  })().catch(() => {});
  return { sub, got, topics };
}

test('with no subscriber nothing is encoded or sent', async () => {
  await withPublisher(async (p) => {
    assert.equal(p.publish('s1', { event: event('s1', 't0') }), 0);
  });
});

test('a subscriber gets its sessions, gap-free from where it joined, and nothing is sent for the others', async () => {
  await withPublisher(async (p, endpoint) => {
    const { sub, got, topics } = subscribe(endpoint, 'job-');
    try {
      // the subscription reaches the publisher asynchronously: once it has, every message goes out
      assert.ok(await until(() => p.publish('job-1', { event: event('job-1', 'probe') }) === 1));
      const joined = got.length;
      assert.equal(p.publish('job-1', { event: event('job-1', 't0') }), 1);
      assert.equal(p.publish('job-1', { event: event('job-1', 't1') }), 1);
      assert.ok(await until(() => got.length >= joined + 3));
      // known now (while a subscription is in flight its topic is unknown, and everything goes
      // out as a PUB socket would send it): a session nobody subscribed to is not even encoded
      assert.equal(p.publish('other', { event: event('other', 't0') }), 0);
      assert.equal(p.publish('job-1', { event: event('job-1', 't2') }), 1);
      assert.ok(await until(() => got.length >= joined + 4));
      await new Promise((r) => setTimeout(r, 50));
      assert.ok(topics.every((t) => t === 'job-1'));
      const mine = got.filter((m) => 'event' in m && m.event.tree !== 'probe');
      assert.deepEqual(
        mine.map((m) => ('event' in m ? m.event.tree : '')),
        ['t0', 't1', 't2'],
      );
      assert.equal(mine[1]!.seq, mine[0]!.seq + 1n);
      assert.equal(mine[2]!.seq, mine[1]!.seq + 1n);
    } finally {
      sub.close();
    }
  });
});

test('once the last subscriber has left, publishing stops again', async () => {
  await withPublisher(async (p, endpoint) => {
    const a = subscribe(endpoint, '');
    const b = subscribe(endpoint, '');
    try {
      assert.ok(await until(() => p.publish('s1', { event: event('s1', 't0') }) === 1));
      a.sub.close();
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(p.publish('s1', { event: event('s1', 't1') }), 1, 'one subscriber of the topic is still there');
      assert.ok(await until(() => b.got.some((m) => 'event' in m && m.event.tree === 't1')));
      b.sub.close();
      assert.ok(await until(() => p.publish('s1', { event: event('s1', 't2') }) === 0));
    } finally {
      a.sub.close();
      b.sub.close();
    }
  });
});
