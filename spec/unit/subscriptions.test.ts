import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_TOPICS, Subscriptions } from '../../src/transport/subscriptions';

const sub = (topic: string) => Buffer.concat([Buffer.from([1]), Buffer.from(topic, 'latin1')]);
const unsub = (topic: string) => Buffer.concat([Buffer.from([0]), Buffer.from(topic, 'latin1')]);

test('nothing is wanted before anyone subscribes', () => {
  assert.equal(new Subscriptions().wants('s1'), false);
});

test('a topic is matched as a prefix, like ZeroMQ does; the empty topic wants everything', () => {
  const s = new Subscriptions();
  s.apply(sub('job-'));
  assert.equal(s.wants('job-1'), true);
  assert.equal(s.wants('job'), false);
  assert.equal(s.wants('other'), false);
  s.apply(sub(''));
  assert.equal(s.wants('other'), true);
  s.apply(unsub(''));
  assert.equal(s.wants('other'), false);
  assert.equal(s.wants('job-2'), true);
  s.apply(unsub('job-'));
  assert.equal(s.wants('job-2'), false);
});

test('messages that are not (un)subscriptions change nothing', () => {
  const s = new Subscriptions();
  s.apply(Buffer.alloc(0));
  s.apply(Buffer.from('\x02s1', 'latin1'));
  s.apply(Buffer.from('hello'));
  assert.equal(s.wants('s1'), false);
  assert.equal(s.wants('hello'), false);
});

test('a topic is read from the message slice, not the rest of its buffer', () => {
  const pool = Buffer.from('xx\x01s1yy', 'latin1');
  const s = new Subscriptions();
  s.apply(pool.subarray(2, 5));
  assert.equal(s.wants('s1'), true);
  assert.equal(s.wants('xx'), false);
  s.apply(Buffer.from('\x00s1', 'latin1'));
  assert.equal(s.wants('s1'), false);
});

test('past its bound it stops counting and wants everything, for good', () => {
  const s = new Subscriptions();
  for (let i = 0; i < MAX_TOPICS; i++) s.apply(sub(`t${i}:`));
  assert.equal(s.wants('unrelated'), false);
  s.apply(sub('t0:')); // already held: not a new topic
  assert.equal(s.wants('unrelated'), false);
  s.apply(sub('one-more'));
  assert.equal(s.wants('unrelated'), true);
  for (let i = 0; i < MAX_TOPICS; i++) s.apply(unsub(`t${i}:`));
  assert.equal(s.wants('unrelated'), true);
});
