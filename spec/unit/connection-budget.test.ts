import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConnectionBudget, defaultConnectionBound } from '../../src/transport/connection-budget';

describe('connection budget', () => {
  it('pauses at the bound and resumes below 90 % of it, once each way', () => {
    const b = new ConnectionBudget(10);
    const changes: (string | null)[] = [];
    for (let i = 0; i < 12; i++) changes.push(b.accepted());
    assert.deepEqual(changes.filter(Boolean), ['pause']);
    assert.equal(changes.indexOf('pause'), 9);
    assert.ok(b.refusing);
    const down: (string | null)[] = [];
    for (let i = 0; i < 12; i++) down.push(b.closed());
    assert.deepEqual(down.filter(Boolean), ['resume']);
    assert.equal(12 - (down.indexOf('resume') + 1), b.resumeAt);
    assert.equal(b.resumeAt, 8);
    assert.equal(b.connections, 0);
  });

  it('never counts below zero (a close reported for a connection from before the monitor)', () => {
    const b = new ConnectionBudget(2);
    assert.equal(b.closed(), null);
    assert.equal(b.accepted(), null);
    assert.equal(b.accepted(), 'pause');
  });

  it('leaves half the open-file limit less 256 for connections, at least 16', () => {
    assert.equal(defaultConnectionBound(1024), 384);
    assert.equal(defaultConnectionBound(200), 16);
    assert.equal(defaultConnectionBound(1048576), 524160);
  });
});
