import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import Long from 'long';
import {
  FrameError,
  MAX_FRAME_BYTES,
  actionEnum,
  actionName,
  decodePublished,
  decodeRequest,
  decodeStatusReply,
  decodeVerdict,
  encodePublished,
  encodeRequestEvent,
  encodeVerdict,
} from '../../src/protocol/codec';
import { CRIU_ACTIONS } from '../../src/core/actions';
import { BadFrameError, ErrorCodes, StagegateError } from '../../src/errors';
import type { Decision } from '../../src/core/model';
import { stagegate } from '../../src/protocol/generated/stagegate';
import { stageEvent } from './fixtures';

describe('protocol codec', () => {
  it('maps every CRIU action name to its enum and back', () => {
    for (const a of [...CRIU_ACTIONS, 'restore-failed' as const]) {
      assert.notEqual(actionEnum(a), stagegate.v1.Action.ACTION_UNSPECIFIED, a);
      assert.equal(actionName(actionEnum(a)), a);
    }
    assert.equal(actionName(999 as stagegate.v1.Action), 'unknown');
  });

  it('round-trips a stage event, 64-bit times included', () => {
    const ev = stageEvent('t', 'post-restore', { wallNs: 1_795_558_731_517_779_628n, monoNs: 18_446_744_073_709_551_615n });
    const decoded = decodeRequest(encodeRequestEvent(ev));
    assert.deepEqual(decoded, { type: 'event', event: ev });
  });

  it('round-trips verdicts and published decisions', () => {
    const v = {
      session: 's',
      tree: 't',
      action: 'pre-resume' as const,
      attempt: 3,
      proceed: false,
      code: 'E_DEADLINE' as const,
      reason: 'late',
    };
    assert.deepEqual(decodeVerdict(encodeVerdict(v)), v);
    const base = { session: 's', attempt: 1, at: 1_700_000_000_123.5 };
    const ds: Decision[] = [
      { kind: 'session-opened', ...base, reason: 'expecting 2 tree(s)' },
      { kind: 'gate-opened', ...base, action: 'post-restore', waitedMs: 2.25, trees: ['a', 'b'] },
      { kind: 'tree-released', ...base, tree: 'a', action: 'pre-resume' },
      { kind: 'session-aborted', ...base, code: 'E_DEADLINE', reason: 'late', trees: ['b'] },
      { kind: 'session-completed', ...base, trees: ['a', 'b'] },
      { kind: 'event-rejected', ...base, tree: 'x', action: 'post-restore', code: 'E_BAD_EVENT', reason: 'bad' },
      { kind: 'tree-inspected', ...base, tree: 'a', bos: ['memfd:a:1', 'file:1:/dev/shm/x'], mappings: 5 },
      { kind: 'bo-verified', ...base, tree: 'a', bo: 'memfd:a:1' },
      {
        kind: 'bo-activated',
        ...base,
        bo: 'memfd:a:1',
        label: 'memfd x',
        trees: ['a'],
        mappers: [
          { tree: 'a', pid: 1, start: 0x500000000000n, size: 65536n },
          { tree: 'a', pid: 2, start: 0x7fff00000000n, size: 4096n },
        ],
      },
    ];
    for (const d of ds) assert.deepEqual(decodePublished(encodePublished(7n, { decision: d })), { seq: 7n, decision: d }, d.kind);
  });

  it("reads decisions of older daemons: a BO label in reason and its mappers in detail, a tree's BOs in trees", () => {
    const frame = stagegate.v1.Published.encode({
      seq: Long.fromNumber(1, true),
      decision: {
        kind: stagegate.v1.GateDecision.Kind.BO_ACTIVATED,
        session: 's',
        attempt: 1,
        bo: 'memfd:a:1',
        reason: 'memfd x',
        trees: ['a'],
        detail: 'a/1@0x500000000000+65536, a/2@0x7fff00000000+4096',
      },
    }).finish();
    const old = decodePublished(frame);
    assert.ok('decision' in old && old.decision.kind === 'bo-activated');
    assert.equal(old.decision.label, 'memfd x');
    assert.deepEqual(old.decision.mappers, [
      { tree: 'a', pid: 1, start: 0x500000000000n, size: 65536n },
      { tree: 'a', pid: 2, start: 0x7fff00000000n, size: 4096n },
    ]);
    const inspected = decodePublished(
      stagegate.v1.Published.encode({
        seq: Long.fromNumber(2, true),
        decision: {
          kind: stagegate.v1.GateDecision.Kind.TREE_INSPECTED,
          session: 's',
          attempt: 1,
          tree: 'a',
          trees: ['memfd:a:1'],
          reason: '3 shared mapping(s)',
        },
      }).finish(),
    );
    assert.ok('decision' in inspected && inspected.decision.kind === 'tree-inspected');
    assert.deepEqual([inspected.decision.bos, inspected.decision.mappings], [['memfd:a:1'], 3]);
  });

  it('rejects oversized, undecodable and empty frames with a typed error', () => {
    const cases: [Uint8Array, RegExp][] = [
      [new Uint8Array(MAX_FRAME_BYTES + 1), /exceeds/],
      [Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]), /undecodable request/],
      [new Uint8Array(0), /request has no body/],
    ];
    for (const [frame, message] of cases) {
      assert.throws(
        () => decodeRequest(frame),
        (e: unknown) => e instanceof FrameError && e.code === 'E_BAD_FRAME' && message.test(e.message),
      );
    }
  });

  it('reply decoders throw only typed errors: garbage and unknown error codes are BadFrameErrors', () => {
    const garbage = Buffer.from([0x08]); // field 1, a varint, and no varint
    for (const decode of [decodeVerdict, decodePublished, decodeStatusReply]) {
      assert.throws(
        () => decode(garbage),
        (e: unknown) => e instanceof BadFrameError && e.code === ErrorCodes.BAD_FRAME && e.cause !== undefined,
      );
    }
    const v = {
      session: 's',
      tree: 't',
      action: 'pre-resume' as const,
      attempt: 1,
      proceed: false,
      code: 'E_DEADLINE' as const,
      reason: '',
    };
    const future = Buffer.from(encodeVerdict(v)).toString('latin1').replace('E_DEADLINE', 'E_FUTURE__');
    assert.throws(
      () => decodeVerdict(Buffer.from(future, 'latin1')),
      (e: unknown) => e instanceof StagegateError && /unknown error code 'E_FUTURE__'/.test(e.message),
    );
  });

  it('rejects an unknown protocol version, keeping the address so the hook can be answered', () => {
    const frame = stagegate.v1.Request.encode({ event: { protocolVersion: 9, session: 's', tree: 't', action: 4, attempt: 1 } }).finish();
    assert.throws(
      () => decodeRequest(frame),
      (e: unknown) =>
        e instanceof FrameError && e.code === 'E_PROTOCOL_VERSION' && e.address?.tree === 't' && e.address.action === 'post-restore',
    );
  });
});
