/** The native addon through its typed facade (src/native), on real processes. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { openSync, readSync, closeSync, readFileSync } from 'node:fs';
import { NativeError, PidFd, processVmRead, processVmReadMany } from '../../src/native';
import { killTree, treePids } from '../../src/proc/tree';
import { exited, sleep } from '../../demo/harness';

describe('native addon', () => {
  it('maps errno to a typed error with its name', () => {
    assert.throws(
      () => PidFd.open(4_000_000),
      (e: unknown) => e instanceof NativeError && e.code === 'E_NATIVE' && e.errnoName === 'ESRCH' && e.syscall === 'pidfd_open',
    );
  });

  it('signals a process through a pidfd', async () => {
    const child = spawn('sleep', ['100'], { stdio: 'ignore' });
    const fd = PidFd.open(child.pid!);
    fd.signal(9);
    fd.close();
    assert.equal((await exited(child)).signal, 'SIGKILL');
    assert.throws(() => fd.signal(9), /closed/);
  });

  it("reads another process's memory off the JS thread, the same bytes /proc/PID/mem has", async () => {
    const child = spawn('sleep', ['100'], { stdio: 'ignore' });
    await sleep(50);
    const pid = child.pid!;
    const first = readFileSync(`/proc/${pid}/maps`, 'utf8')
      .split('\n')
      .find((l) => /^\S+ r/.test(l))!;
    const start = BigInt(`0x${first.split('-')[0]}`);
    const got = await processVmRead(pid, start, 4096);
    const mem = Buffer.alloc(4096);
    const fd = openSync(`/proc/${pid}/mem`, 'r');
    readSync(fd, mem, 0, 4096, Number(start));
    closeSync(fd);
    assert.ok(got.equals(mem));
    await assert.rejects(processVmRead(pid, 0x1000n, 16), (e: unknown) => e instanceof NativeError && e.errnoName === 'EFAULT');
    child.kill('SIGKILL');
  });

  it('reads many pages of another process in one batch: the same bytes, and the first unreadable address named', async () => {
    const child = spawn('sleep', ['100'], { stdio: 'ignore' });
    await sleep(50);
    const pid = child.pid!;
    const readable = readFileSync(`/proc/${pid}/maps`, 'utf8')
      .split('\n')
      .filter((l) => /^\S+ r/.test(l) && !/\[(vvar|vvar_vclock|vsyscall)\]/.test(l)) // the kernel's pages are not readable this way
      .map(
        (l) =>
          l
            .split(' ')[0]!
            .split('-')
            .map((h) => BigInt(`0x${h}`)) as [bigint, bigint],
      );
    // the first page of every readable mapping, and one from the middle of the largest
    const [big] = [...readable].sort((a, b) => Number(b[1] - b[0] - (a[1] - a[0])));
    const addrs = [...readable.map(([s]) => s), big![0] + ((big![1] - big![0]) / 2n / 4096n) * 4096n];
    const got = await processVmReadMany(pid, addrs, 4096);
    assert.equal(got.length, addrs.length);
    const fd = openSync(`/proc/${pid}/mem`, 'r');
    addrs.forEach((a, i) => {
      const mem = Buffer.alloc(4096);
      readSync(fd, mem, 0, 4096, Number(a));
      assert.ok(got[i]!.equals(mem), `page at 0x${a.toString(16)}`);
    });
    closeSync(fd);
    assert.deepEqual(await processVmReadMany(pid, [], 4096), []);
    await assert.rejects(
      processVmReadMany(pid, [addrs[0]!, 0x1000n, addrs[1]!], 4096),
      (e: unknown) => e instanceof NativeError && e.errnoName === 'EFAULT' && /0x1000, 4096/.test(e.message),
    );
    child.kill('SIGKILL');
  });

  it('kills a whole process tree', async () => {
    const root = spawn('sh', ['-c', 'sleep 100 & sleep 100 & wait'], { stdio: 'ignore' });
    await sleep(100);
    const pids = treePids(root.pid!);
    assert.equal(pids.length, 3);
    assert.equal(killTree(root.pid!), 3);
    assert.equal((await exited(root)).signal, 'SIGKILL');
  });
});
