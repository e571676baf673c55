import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseManifest, readManifest } from '../../src/cli/manifest';

const doc = (mapper: Record<string, unknown>, ids = ['gpu0']) =>
  JSON.stringify({
    bos: ids.map((id) => ({ id, mappers: [{ tree: 'rank0', pid: 1, start: '0x7f0000000000', size: 4096, prot: 'rw-', ...mapper }] })),
  });

describe('BO manifest', () => {
  it('reads a valid manifest', () => {
    const [bo] = parseManifest(doc({}));
    assert.equal(bo!.mappers[0]!.start, 0x7f0000000000n);
    assert.equal(bo!.mappers[0]!.prot, 3);
  });

  it('refuses numbers that would wrap on the wire instead of wrapping them', () => {
    assert.throws(() => parseManifest(doc({ pid: '4294967297' })), /pid 4294967297 is larger than 4194304/);
    assert.throws(() => parseManifest(doc({ start: '18446744073709551616' })), /must be a non-negative integer|larger than/);
    assert.throws(() => parseManifest(doc({ size: '0x10000000000000000' })), /must be a non-negative integer/);
  });

  it('refuses a BO id used twice instead of merging the two', () => {
    assert.throws(() => parseManifest(doc({}, ['gpu0', 'gpu0'])), /bos\[1\]\.id "gpu0" is used twice/);
  });

  it('refuses a manifest too large for one request, or not a regular file, before reading it', () => {
    const dir = mkdtempSync('/tmp/sg-manifest-');
    try {
      writeFileSync(join(dir, 'big.json'), ' '.repeat(1024 * 1024));
      assert.throws(() => readManifest(join(dir, 'big.json')), /is 1048576 bytes, more than 786432: an open request must fit one frame/);
      assert.throws(() => readManifest(dir), /is not a regular file/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
