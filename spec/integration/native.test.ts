/** The native addon through its typed facade (src/native), on real processes. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { openSync, readSync, closeSync, readFileSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { NativeError, PidFd, observeTree, processVmRead, processVmReadMany, readCheckpointShared } from '../../src/native';
import { ImageError } from '../../src/errors';
import { innermostPid, isLive, killTree, treePids } from '../../src/proc/tree';
import { createShm, exited, sleep, startTree, waitRunning } from '../../demo/harness';

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

  it('observes a tree in one call: each task by its namespace pid, the VMA at or around an address, the object behind it', async () => {
    const dir = mkdtempSync('/tmp/sg-native-');
    const shm = `/dev/shm/sg-native-${process.pid}`;
    createShm(shm);
    // the demo workload: 3 processes in a pid namespace of their own, sharing memory each at its own address
    const t = await startTree(0, 3, shm, dir);
    try {
      await waitRunning(shm, [0], 3);
      // the oracle: the same facts read from /proc in JavaScript
      const tasks = treePids(t.rootPid).map((host) => ({ host, ns: innermostPid(host) }));
      assert.equal(tasks.length, 3);
      const shared = tasks.map(({ host, ns }) => {
        const line = readFileSync(`/proc/${host}/maps`, 'utf8')
          .split('\n')
          .find((l) => / rw-s /.test(l))!;
        const [s, e] = line
          .split(' ')[0]!
          .split('-')
          .map((h) => BigInt(`0x${h}`)) as [bigint, bigint];
        const st = statSync(`/proc/${host}/map_files/${s.toString(16)}-${e.toString(16)}`);
        return { host, ns, start: s, end: e, object: `${st.dev}:${st.ino}` };
      });
      const [first] = shared;
      const wanted = [
        ...shared.map((m) => ({ nsPid: m.ns, start: m.start, end: m.end })),
        { nsPid: first!.ns, start: first!.start, end: first!.end + 4096n }, // another size: no object looked up
        { nsPid: first!.ns, start: first!.start + 4096n, end: first!.end }, // inside it
        { nsPid: first!.ns, start: 0x1000n, end: 0x2000n }, // nothing there
        { nsPid: 4_000_000, start: first!.start, end: first!.end }, // no such task in the tree
        { nsPid: 2 ** 32 + first!.ns, start: first!.start, end: first!.end }, // past pid_t: names no task, aliases none
      ];
      const live = await observeTree(t.rootPid, wanted);
      shared.forEach((m, i) =>
        assert.deepEqual(live[i], {
          hostPid: m.host,
          found: 'at',
          start: m.start,
          end: m.end,
          perms: 'rw-s',
          object: m.object,
          statErrno: 0,
        }),
      );
      const n = shared.length;
      assert.deepEqual(live[n], { ...live[0], object: '' });
      assert.deepEqual(live[n + 1], { ...live[0], found: 'around', object: '' });
      assert.equal(live[n + 2]!.found, 'none');
      assert.equal(live[n + 2]!.hostPid, first!.host);
      assert.equal(live[n + 3]!.found, 'no-task');
      assert.equal(live[n + 3]!.hostPid, 0);
      assert.equal(live[n + 4]!.found, 'no-task');
      assert.equal(live[n + 4]!.hostPid, 0);
      // a root that is gone: no task of the tree is there
      assert.deepEqual(
        (await observeTree(4_000_000, wanted.slice(0, 1))).map((l) => l.found),
        ['no-task'],
      );
      await assert.rejects(observeTree(0, []), (e: unknown) => e instanceof TypeError);
    } finally {
      killTree(t.rootPid);
      await exited(t.unshare);
      for (let i = 0; i < 100 && isLive(t.rootPid); i++) await sleep(10);
      rmSync(shm, { force: true });
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reads a checkpoint directory only as one: an ImageError naming it, a TypeError for what is not a path', async () => {
    // the checkpoints themselves: spec/e2e/images.test.ts, against the JavaScript reader
    const dir = mkdtempSync('/tmp/sg-native-ckpt-');
    try {
      await assert.rejects(
        readCheckpointShared(`${dir}/none`),
        (e: unknown) => e instanceof ImageError && /cannot open checkpoint directory: ENOENT/.test(e.message),
      );
      await assert.rejects(
        readCheckpointShared(dir),
        (e: unknown) => e instanceof ImageError && e.file === `${dir}/pstree.img` && /cannot read: ENOENT/.test(e.detail),
      );
      await assert.rejects(
        readCheckpointShared('/proc/self/status'),
        (e: unknown) => e instanceof ImageError && /not a directory/.test(e.detail),
      );
      for (const bad of ['', 'a\0b', 'x'.repeat(5000)])
        await assert.rejects(readCheckpointShared(bad), (e: unknown) => e instanceof TypeError, JSON.stringify(bad.slice(0, 8)));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
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
