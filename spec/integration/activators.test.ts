/** The exec and kfd activators against real processes and fake KFD device files. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execActivator } from '../../src/activators/exec';
import { kfdActivator } from '../../src/activators/kfd';
import { KfdCriuOp, NativeError, kfdAbi } from '../../src/native';
import type { ActiveMapper } from '../../src/core/model';

const mappers: ActiveMapper[] = [
  { tree: 't0', pid: 1, hostPid: 4242, start: 0x580000000000n, size: 65536n, prot: 3 },
  { tree: 't1', pid: 2, hostPid: 4343, start: 0x580044000000n, size: 65536n, prot: 1 },
];

describe('exec activator', () => {
  it('runs the command once per mapping with the mapping in its environment', async () => {
    const dir = mkdtempSync('/tmp/sg-exec-');
    try {
      const out = join(dir, 'calls');
      await execActivator(
        `echo "$STAGEGATE_SESSION $STAGEGATE_BO $STAGEGATE_BO_LABEL $STAGEGATE_TREE $STAGEGATE_PID $STAGEGATE_IMAGE_PID $STAGEGATE_ADDRESS $STAGEGATE_SIZE $STAGEGATE_PROT" >> ${out}`,
        's',
        'memfd:t0:1',
        'gpu',
        mappers,
      );
      assert.deepEqual(readFileSync(out, 'utf8').trim().split('\n'), [
        's memfd:t0:1 gpu t0 4242 1 0x580000000000 65536 3',
        's memfd:t0:1 gpu t1 4343 2 0x580044000000 65536 1',
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('fails with the command, the mapping, the exit status and its last stderr line', async () => {
    await assert.rejects(
      execActivator('echo warming up >&2; echo "no device for $STAGEGATE_PID" >&2; exit 3', 's', 'b', 'l', mappers),
      /'.*' for tree t0 task 1 at 0x580000000000: exit 3: no device for 4242/,
    );
  });
});

describe('kfd activator (fake device files; never run on AMD hardware)', () => {
  it('is compiled against the kernel UAPI: AMDKFD_IOC_CRIU_OP = 0xC0384B22 with a 56-byte argument', () => {
    assert.deepEqual(kfdAbi(), { ioctl: 0xc0384b22, argsSize: 56 });
    assert.equal(KfdCriuOp.RESUME, 4);
  });

  it('issues the ioctl to the device and maps its errno to a typed error naming the operation', async () => {
    const dir = mkdtempSync('/tmp/sg-kfd-');
    try {
      const fake = join(dir, 'kfd');
      writeFileSync(fake, '');
      // a regular file has no such ioctl: ENOTTY proves the call reached the device
      await assert.rejects(
        kfdActivator(mappers, fake),
        (e: unknown) =>
          e instanceof NativeError &&
          e.errnoName === 'ENOTTY' &&
          e.syscall === 'ioctl' &&
          /AMDKFD_IOC_CRIU_OP\(op 4, pid 4242\)/.test(e.message),
      );
      await assert.rejects(kfdActivator(mappers, '/dev/null'), (e: unknown) => e instanceof NativeError && e.errnoName === 'ENOTTY');
      await assert.rejects(
        kfdActivator(mappers, join(dir, 'missing')),
        (e: unknown) => e instanceof NativeError && e.errnoName === 'ENOENT' && e.syscall === 'open',
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
