/** SerialSender against a socket that behaves as zeromq.js's send() does (one at a time, EBUSY otherwise). */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SerialSender } from '../../src/transport/serial-sender';

/** A zeromq.js-like socket: a send finishes at once while `writable`, else stays in progress until `flush()`. */
function fakeSocket() {
  const sent: string[] = [];
  let pending: { m: string; done: () => void } | null = null;
  const s = {
    sent,
    writable: true,
    send(m: string): Promise<void> {
      if (pending) throw Object.assign(new Error('Socket is busy writing'), { code: 'EBUSY', errno: 16 });
      if (m.startsWith('fail')) return Promise.reject(new Error(`cannot send ${m}`));
      if (s.writable) {
        sent.push(m);
        return Promise.resolve();
      }
      return new Promise<void>((done) => (pending = { m, done }));
    },
    flush() {
      const p = pending!;
      pending = null;
      sent.push(p.m);
      p.done();
    },
  };
  return s;
}

describe('SerialSender', () => {
  it('hands every message over in the same step while the socket takes them at once', () => {
    const sock = fakeSocket();
    const s = new SerialSender<string>((m) => sock.send(m));
    for (const m of ['a', 'b', 'c', 'd']) s.push(m);
    // no microtask has run yet: the replies of a gate leave together
    assert.deepEqual(sock.sent, ['a', 'b', 'c', 'd']);
  });

  it('queues behind a send in progress and keeps the order', async () => {
    const sock = fakeSocket();
    const s = new SerialSender<string>((m) => sock.send(m));
    s.push('a');
    sock.writable = false;
    s.push('b'); // in progress
    s.push('c'); // busy: queued
    sock.writable = true;
    s.push('d'); // after c, although the socket would take it
    assert.deepEqual(sock.sent, ['a']);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(sock.sent, ['a']);
    sock.flush();
    await s.idle();
    assert.deepEqual(sock.sent, ['a', 'b', 'c', 'd']);
  });

  it('reports a failed send and goes on with the next', async () => {
    const sock = fakeSocket();
    const errors: string[] = [];
    const s = new SerialSender<string>(
      (m) => sock.send(m),
      (e) => errors.push((e as Error).message),
    );
    s.push('a');
    s.push('fail-1');
    s.push('b');
    await s.idle();
    assert.deepEqual(sock.sent, ['a', 'b']);
    assert.deepEqual(errors, ['cannot send fail-1']);
  });

  it('is idle only once the queue is empty and the last send finished', async () => {
    const sock = fakeSocket();
    const s = new SerialSender<string>((m) => sock.send(m));
    sock.writable = false;
    s.push('a');
    s.push('b');
    let idle = false;
    const p = s.idle().then(() => (idle = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(idle, false);
    sock.writable = true;
    sock.flush();
    await p;
    assert.deepEqual(sock.sent, ['a', 'b']);
  });
});
