/** The checkpoint's copy of shared-memory pages (src/images/pages.ts) on crafted images. */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { criu } from '../../src/images/generated/criu';
import { COMMON_MAGIC, MAGIC } from '../../src/images/image-file';
import { CheckpointPages } from '../../src/images/pages';
import { sampleDigest } from '../../src/core/verify';
import Long from 'long';
import type { Checkpoint, Vma } from '../../src/images/checkpoint-model';
import { ImageError } from '../../src/errors';

const dir = mkdtempSync('/tmp/sg-pages-');
after(() => rmSync(dir, { recursive: true, force: true }));

function image(path: string, magic: number, entries: Uint8Array[]): void {
  const parts = [Buffer.alloc(8)];
  parts[0]!.writeUInt32LE(COMMON_MAGIC, 0);
  parts[0]!.writeUInt32LE(magic, 4);
  for (const e of entries) {
    const len = Buffer.alloc(4);
    len.writeUInt32LE(e.length);
    parts.push(len, Buffer.from(e));
  }
  writeFileSync(path, Buffer.concat(parts));
}

const L = (n: number) => Long.fromNumber(n, true);
const page = (fill: number) => Buffer.alloc(4096, fill);
const P = 4096n;
const anon = (shmid: number): Vma => ({
  start: 0x1000n,
  end: 0x100000n,
  pgoff: 0n,
  shmid: BigInt(shmid),
  prot: 3,
  flags: 1,
  status: (1 << 8) | 1,
});
const cp = (d: string): Checkpoint => ({ dir: d, tasks: [], files: new Map(), memfdInodes: new Map() });

describe('checkpoint pages', () => {
  it('finds each sampled page in its run, skips runs kept in a parent checkpoint, and reads holes as zeros', () => {
    const d = mkdtempSync(join(dir, 'ok-'));
    image(join(d, 'pagemap-shmem-7.img'), MAGIC.pagemap, [
      criu.PagemapHead.encode({ pagesId: 3 }).finish(),
      criu.PagemapEntry.encode({ vaddr: L(0), nrPages: L(2), flags: 4 }).finish(),
      criu.PagemapEntry.encode({ vaddr: L(16 * 4096), compatNrPages: 1, flags: 1 }).finish(), // in the parent
      criu.PagemapEntry.encode({ vaddr: L(64 * 4096), nrPages: L(1), flags: 4 }).finish(),
    ]);
    writeFileSync(join(d, 'pages-3.img'), Buffer.concat([page(1), page(2), page(3)]));
    const s = new CheckpointPages(cp(d)).samples(anon(7), [0n, P, 16n * P, 32n * P, 64n * P])!;
    assert.deepEqual(s, {
      '0': sampleDigest(page(1)),
      [String(P)]: sampleDigest(page(2)),
      [String(32n * P)]: sampleDigest(page(0)),
      [String(64n * P)]: sampleDigest(page(3)),
    });
  });

  it('has nothing to say of an object the checkpoint does not hold (a file, or no pagemap)', () => {
    const d = mkdtempSync(join(dir, 'none-'));
    const file: Vma = { ...anon(1), status: (1 << 7) | 1 };
    assert.equal(new CheckpointPages(cp(d)).samples(file, [0n]), null);
    assert.equal(new CheckpointPages(cp(d)).samples(anon(9), [0n]), null);
  });

  it('refuses a pages image that is truncated or not a regular file, naming it', () => {
    const d = mkdtempSync(join(dir, 'bad-'));
    image(join(d, 'pagemap-shmem-1.img'), MAGIC.pagemap, [
      criu.PagemapHead.encode({ pagesId: 1 }).finish(),
      criu.PagemapEntry.encode({ vaddr: L(0), nrPages: L(4), flags: 4 }).finish(),
    ]);
    writeFileSync(join(d, 'pages-1.img'), page(1));
    assert.throws(
      () => new CheckpointPages(cp(d)).samples(anon(1), [2n * P]),
      (e: unknown) => e instanceof ImageError && /pages-1\.img.*truncated: the page at object offset 0x2000 is not there/.test(e.message),
    );
    rmSync(join(d, 'pages-1.img'));
    symlinkSync('/dev/zero', join(d, 'pages-1.img'));
    assert.throws(
      () => new CheckpointPages(cp(d)).samples(anon(1), [0n]),
      (e: unknown) => e instanceof ImageError && /pages-1\.img/.test(e.message),
    );
  });
});
