/**
 * The checkpoint side's pure checks and its commit record: the TCP cut
 * predicate on crafted sequence numbers (wrap-around included), and the
 * commit record on a directory of crafted files (torn, edited, a changed or
 * missing image, a symlink instead of an image).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync, readFileSync, unlinkSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { type TcpEnd, addrText, checkCut } from '../../src/checkpoint/tcp-cut';
import { RECORD_NAME, SAMPLE_BYTES, checkFiles, commitId, readRecord, writeRecord } from '../../src/checkpoint/commit-record';
import { checkSet } from '../../src/checkpoint/set';

const end = (tree: string, src: string, dst: string, o: Partial<TcpEnd> = {}): TcpEnd => ({
  tree,
  ino: 1,
  src,
  dst,
  inqSeq: 0,
  inqLen: 0,
  outqSeq: 0,
  outqLen: 0,
  unsqLen: 0,
  ...o,
});

describe('TCP cut check', () => {
  const A = '10.0.0.1:7000';
  const B = '10.0.0.2:40000';

  it('passes a consistent cut: in flight bytes are in the sender queue, the receiver has what was acknowledged', () => {
    const r = checkCut([
      end('a', A, B, { outqSeq: 1000, outqLen: 300, unsqLen: 100, inqSeq: 5000 }),
      end('b', B, A, { inqSeq: 800, outqSeq: 5000 }),
    ]);
    assert.equal(r.connections.length, 1);
    assert.equal(r.violations, 0);
    const ab = r.connections[0]!.directions.find((d) => d.from.startsWith('tree a'))!;
    assert.deepEqual([ab.sndUna, ab.sndNxt, ab.writeSeq, ab.rcvNxt, ab.inFlight], [700, 900, 1000, 800, 200]);
  });

  it('reports bytes the receiver got that the sender had not written (sender dumped first, ran on)', () => {
    const r = checkCut([end('a', A, B, { outqSeq: 1000 }), end('b', B, A, { inqSeq: 1600 })]);
    assert.equal(r.violations, 1);
    assert.match(
      r.connections[0]!.directions[0]!.problem,
      /^600 byte\(s\) received by tree b 10.0.0.2:40000 that tree a 10.0.0.1:7000 had not yet written/,
    );
  });

  it('reports bytes acknowledged to the sender that the receiver does not hold (receiver dumped first)', () => {
    const r = checkCut([end('a', A, B, { outqSeq: 2000, outqLen: 100 }), end('b', B, A, { inqSeq: 1500 })]);
    assert.match(r.connections[0]!.directions.find((d) => d.problem)!.problem, /^400 byte\(s\) lost/);
  });

  it('compares sequence numbers modulo 2^32', () => {
    const r = checkCut([end('a', A, B, { outqSeq: 100, outqLen: 200 }), end('b', B, A, { inqSeq: 4294967200 })]);
    assert.equal(r.violations, 0);
    assert.equal(r.connections[0]!.directions[0]!.sndUna, 4294967196);
  });

  it('pairs a loopback connection only within one tree (each tree may have a network namespace of its own)', () => {
    const L1 = '127.0.0.1:5000';
    const L2 = '127.0.0.1:6000';
    const r = checkCut([
      end('a', L1, L2, { outqSeq: 10 }),
      end('b', L2, L1, { inqSeq: 999 }),
      end('b', L1, L2),
      end('a', L2, L1, { inqSeq: 10 }),
    ]);
    assert.deepEqual(
      r.connections.map((c) => c.name),
      ['tree a 127.0.0.1:5000 <-> tree a 127.0.0.1:6000', 'tree b 127.0.0.1:5000 <-> tree b 127.0.0.1:6000'],
    );
  });

  it('leaves an end whose peer is not in the set unchecked, and says so', () => {
    const r = checkCut([end('a', A, '10.9.9.9:80')]);
    assert.equal(r.connections.length, 0);
    assert.match(r.outside[0]!, /its peer is not in the set/);
  });

  it('prints addresses as CRIU stores them (network-order words)', () => {
    assert.equal(addrText([0x0100000a], 2, 80), '10.0.0.1:80');
    assert.equal(addrText([0, 0, 0, 0x01000000], 10, 443), '[0:0:0:0:0:0:0:1]:443');
  });
});

describe('commit record', () => {
  let dir: string;
  const members = [
    { tree: 'a', host: 'h1', run: 'r1' },
    { tree: 'b', host: 'h2', run: 'r2' },
  ];
  const base = {
    session: 's',
    attempt: 2,
    commit: commitId('s', 2, members),
    tree: 'a',
    host: 'h1',
    members,
    checksum: 'sampled' as const,
  };

  before(() => {
    dir = mkdtempSync('/tmp/sg-record-');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const fresh = (name: string) => {
    const d = join(dir, name);
    mkdirSync(d);
    writeFileSync(join(d, 'core-1.img'), 'core');
    writeFileSync(join(d, 'pages-1.img'), Buffer.alloc(3 * SAMPLE_BYTES, 7));
    writeFileSync(join(d, 'dump.log'), 'log, not covered');
    return d;
  };

  it('writes a record that verifies, with every image and only images', async () => {
    const d = fresh('ok');
    const r = await writeRecord(d, base, 'sampled');
    assert.deepEqual(
      r.files.map((f) => f.name),
      ['core-1.img', 'pages-1.img'],
    );
    assert.match(r.files[1]!.sha256, /^sampled:/);
    assert.deepEqual(readRecord(d), r);
    assert.deepEqual(await checkFiles(d, r), []);
    // a restore adds its log and stats: still the same committed images
    writeFileSync(join(d, 'restore.log'), 'x');
    writeFileSync(join(d, 'stats-restore'), 'x');
    assert.deepEqual(await checkFiles(d, r), []);
  });

  it('one commit id for the same members in any order, another for another run', () => {
    assert.equal(commitId('s', 2, [...members].reverse()), base.commit);
    assert.notEqual(commitId('s', 2, [members[0]!, { ...members[1]!, run: 'r3' }]), base.commit);
  });

  it('finds a changed, resized or missing image', async () => {
    const d = fresh('changed');
    const r = await writeRecord(d, base, 'sampled');
    writeFileSync(join(d, 'core-1.img'), 'CORE');
    const pages = readFileSync(join(d, 'pages-1.img'));
    pages[10] = 1; // inside the sampled head
    writeFileSync(join(d, 'pages-1.img'), pages);
    assert.deepEqual(await checkFiles(d, r), [
      'core-1.img: content differs from the committed image',
      'pages-1.img: content differs from the committed image',
    ]);
    truncateSync(join(d, 'pages-1.img'), 10);
    unlinkSync(join(d, 'core-1.img'));
    assert.deepEqual(await checkFiles(d, r), ['core-1.img: missing', `pages-1.img: 10 bytes, committed with ${3 * SAMPLE_BYTES}`]);
  });

  it('with the full checksum, a change in the middle of a page image is found too', async () => {
    const d = fresh('full');
    const r = await writeRecord(d, { ...base, checksum: 'full' }, 'full');
    const pages = readFileSync(join(d, 'pages-1.img'));
    pages[SAMPLE_BYTES + 5] = 1;
    writeFileSync(join(d, 'pages-1.img'), pages);
    assert.deepEqual(await checkFiles(d, r), ['pages-1.img: content differs from the committed image']);
  });

  it('refuses a directory without a record, a torn or edited record, and a symlinked image', async () => {
    const d = fresh('bad');
    assert.throws(() => readRecord(d), { code: 'E_NOT_COMMITTED', message: /no commit record: this checkpoint was never committed/ });
    await writeRecord(d, base, 'sampled');
    const text = readFileSync(join(d, RECORD_NAME), 'utf8');
    writeFileSync(join(d, RECORD_NAME), text.slice(0, text.length / 2));
    assert.throws(() => readRecord(d), { code: 'E_NOT_COMMITTED', message: /unreadable commit record/ });
    writeFileSync(join(d, RECORD_NAME), text.replace('"attempt": 2', '"attempt": 3'));
    assert.throws(() => readRecord(d), { message: /digest does not match/ });
    const many = JSON.parse(text);
    many.files = Array.from({ length: 100_001 }, (_, i) => ({ name: `core-${i}.img`, size: 1, sha256: 'x' }));
    const { digest: _d, ...body } = many;
    void _d;
    writeFileSync(
      join(d, RECORD_NAME),
      JSON.stringify({ ...body, digest: createHash('sha256').update(JSON.stringify(body)).digest('hex') }),
    );
    assert.throws(() => readRecord(d), { code: 'E_NOT_COMMITTED', message: /malformed file list/ });
    const s = fresh('symlink');
    symlinkSync('/etc/passwd', join(s, 'mm-1.img'));
    await assert.rejects(writeRecord(s, base, 'sampled'), { code: 'E_IMAGE', message: /mm-1.img/ });
  });

  it('a set is committed only when every record names one commit', async () => {
    const a = fresh('set-a');
    const b = fresh('set-b');
    await writeRecord(a, base, 'sampled');
    await writeRecord(b, { ...base, tree: 'b', host: 'h2' }, 'sampled');
    const ok = await checkSet([a, b]);
    assert.equal(ok.committed, true);
    assert.equal(ok.commit, base.commit);
    const other = fresh('set-c');
    const m2 = [members[0]!, { ...members[1]!, run: 'rX' }];
    await writeRecord(other, { ...base, tree: 'b', host: 'h2', members: m2, commit: commitId('s', 2, m2) }, 'sampled');
    const mixed = await checkSet([a, other]);
    assert.equal(mixed.committed, false);
    assert.match(mixed.problems[0]!, /not one set/);
    const partial = await checkSet([a]);
    assert.equal(partial.committed, true);
    assert.deepEqual(partial.notGiven, ['b (h2)']);
  });
});
