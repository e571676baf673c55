/** 64-bit fields of CRIU images as bigints (src/images/image-file.ts `big`). */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import Long from 'long';
import { criu } from '../../src/images/generated/criu';
import { big } from '../../src/images/image-file';

describe('big', () => {
  it('is the decimal value protobufjs gives, for unsigned and signed fields, at every width', () => {
    // edges of each half and of the sign, then pseudo-random values (fixed seed)
    const edges = [0n, 1n, 0xffff_ffffn, 0x1_0000_0000n, 0x7fff_ffff_ffff_ffffn, 0x8000_0000_0000_0000n, 0xffff_ffff_ffff_ffffn];
    let x = 0x9e37_79b9_7f4a_7c15n;
    const random = [...Array(200)].map(() => (x = (x * 6364136223846793005n + 1442695040888963407n) & 0xffff_ffff_ffff_ffffn));
    for (const v of [...edges, ...random]) {
      const u = Long.fromString(v.toString(), true);
      const bytes = criu.VmaEntry.encode({ start: u, fd: Long.fromString(BigInt.asIntN(64, v).toString(), false) }).finish();
      const e = criu.VmaEntry.decode(bytes);
      assert.equal(big(e.start as Long), v);
      assert.equal(big(e.start as Long), BigInt((e.start as Long).toString()));
      assert.equal(big(e.fd as Long), BigInt.asIntN(64, v), `signed ${v}`);
      assert.equal(big(e.fd as Long), BigInt((e.fd as Long).toString()));
    }
  });

  it('takes an absent field as 0 and a plain number as itself', () => {
    assert.equal(big(null), 0n);
    assert.equal(big(undefined), 0n);
    assert.equal(big(4096), 4096n);
  });
});
