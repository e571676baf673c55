/** The native addon through its typed facade (src/native), on real processes. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { openSync, readSync, closeSync, readFileSync, mkdtempSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { NativeError, PidFd, observeTree, processVmRead, processVmReadMany, readCheckpointShared } from '../../src/native';
import { ImageError } from '../../src/errors';
import { observeMappings } from '../../src/proc/observe';
import { innermostPid, isLive, killTree, treePids } from '../../src/proc/tree';
import { type RunningTree, createShm, exited, sleep, startTree, waitRunning } from '../../demo/harness';

/** Runs `fn` on the demo workload, then ends it: 3 processes in a pid namespace of their own, sharing memory each at its own address. */
async function withTree(fn: (t: RunningTree) => Promise<void>): Promise<void> {
  const dir = mkdtempSync('/tmp/sg-native-');
  const shm = `/dev/shm/sg-native-${process.pid}`;
  createShm(shm);
  const t = await startTree(0, 3, shm, dir);
  try {
    await waitRunning(shm, [0], 3);
    await fn(t);
  } finally {
    killTree(t.rootPid);
    await exited(t.unshare);
    for (let i = 0; i < 100 && isLive(t.rootPid); i++) await sleep(10);
    rmSync(shm, { force: true });
    rmSync(dir, { recursive: true, force: true });
  }
}

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
    await withTree(async (t) => {
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
          samples: null, // none asked for
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
    });
  });

  it("samples a tree's shared pages in the same call: each page's digest as sampleDigest gives it, a shared range read once", async () => {
    await withTree(async (t) => {
      const page = (host: number, addr: bigint) => {
        const b = Buffer.alloc(4096);
        const fd = openSync(`/proc/${host}/mem`, 'r');
        readSync(fd, b, 0, 4096, Number(addr));
        closeSync(fd);
        return b;
      };
      // the oracle: the JavaScript digest of the pages as /proc/PID/mem has them
      const digest = (b: Buffer) => createHash('sha1').update(b).digest('hex').slice(0, 16);
      const tasks = treePids(t.rootPid).map((host) => {
        const maps = readFileSync(`/proc/${host}/maps`, 'utf8').split('\n');
        const span = (l: string) =>
          l
            .split(' ')[0]!
            .split('-')
            .map((h) => BigInt(`0x${h}`)) as [bigint, bigint];
        const [start, end] = span(maps.find((l) => / rw-s /.test(l))!);
        const priv = span(maps.find((l) => / r--p /.test(l))!);
        const pgoff = BigInt(`0x${maps.find((l) => / rw-s /.test(l))!.split(' ')[2]}`);
        return { host, ns: innermostPid(host), start, end, pgoff, priv };
      });
      // every task maps the same range of the same object: the first task's pages are read, the others copy them
      const offs = (m: (typeof tasks)[number]) => [m.pgoff, m.pgoff + 4096n, m.end - m.start + m.pgoff - 4096n];
      const wanted = [
        ...tasks.map((m) => ({ nsPid: m.ns, start: m.start, end: m.end, pgoff: m.pgoff, samples: offs(m) })),
        { nsPid: tasks[0]!.ns, start: tasks[0]!.start + 4096n, end: tasks[0]!.end, pgoff: 0n, samples: [0n] }, // 'around': not read
        { nsPid: tasks[0]!.ns, start: tasks[0]!.priv[0], end: tasks[0]!.priv[1], pgoff: 0n, samples: [0n] }, // private: not read
      ];
      const live = await observeTree(t.rootPid, wanted);
      tasks.forEach((m, i) => {
        assert.equal(live[i]!.found, 'at');
        assert.deepEqual(
          live[i]!.samples,
          offs(m).map((off) => digest(page(m.host, m.start + (off - m.pgoff)))),
          `task ${m.ns}`,
        );
      });
      assert.equal(live[3]!.found, 'around');
      assert.equal(live[3]!.samples, null);
      assert.equal(live[4]!.perms[3], 'p');
      assert.equal(live[4]!.samples, null);
      // what may be asked: page-aligned offsets inside the mapping, at most 64 of them
      const m = tasks[0]!;
      for (const samples of [[m.pgoff + 1n], [m.pgoff - 4096n], [m.end - m.start + m.pgoff], Array.from({ length: 65 }, () => m.pgoff)])
        await assert.rejects(
          observeTree(t.rootPid, [{ nsPid: m.ns, start: m.start, end: m.end, pgoff: m.pgoff, samples }]),
          (e: unknown) => e instanceof RangeError,
          String(samples[0]),
        );
    });
  });

  it('verifies a mapping too small to hold a sampled offset by its identity alone (observeMappings)', async () => {
    await withTree(async (t) => {
      const host = treePids(t.rootPid)[0]!;
      const smallest = readFileSync(`/proc/${host}/maps`, 'utf8')
        .split('\n')
        .filter((l) => / rw-s /.test(l))
        .map(
          (l) =>
            l
              .split(' ')[0]!
              .split('-')
              .map((h) => BigInt(`0x${h}`)) as [bigint, bigint],
        )
        .sort((a, b) => Number(a[1] - a[0] - (b[1] - b[0])))[0]!;
      const [start, end] = smallest;
      // at object offset 4 KiB, a mapping under 256 KiB holds no offset of the 256 KiB sampling grid
      assert.ok(end - start < 256n * 1024n - 4096n, `smallest shared mapping ${end - start} bytes`);
      const ref = {
        bo: 'b',
        kind: 'file' as const,
        label: 'b',
        tree: 't0',
        pid: innermostPid(host),
        start,
        size: end - start,
        prot: 3,
        pgoff: 4096n,
      };
      const [o] = await observeMappings(t.rootPid, [ref]);
      assert.equal(o!.problem, '');
      assert.notEqual(o!.object, '');
      assert.deepEqual(o!.samples, {});
    });
  });

  it('names the page it could not sample: a shared mapping whose file was truncated under it', async () => {
    const file = `/dev/shm/sg-native-trunc-${process.pid}`;
    writeFileSync(file, Buffer.alloc(8192, 1));
    // a process mapping the file shared, then the file cut to nothing: its pages are gone (SIGBUS to it, EFAULT to a reader)
    const child = spawn(
      'python3',
      ['-c', 'import mmap,sys,time\nf=open(sys.argv[1],"r+b")\nm=mmap.mmap(f.fileno(),8192)\nprint(1,flush=True)\ntime.sleep(100)', file],
      {
        stdio: ['ignore', 'pipe', 'ignore'],
      },
    );
    try {
      await new Promise((r) => child.stdout!.once('data', r));
      const pid = child.pid!;
      const line = readFileSync(`/proc/${pid}/maps`, 'utf8')
        .split('\n')
        .find((l) => l.includes(file))!;
      const [start, end] = line
        .split(' ')[0]!
        .split('-')
        .map((h) => BigInt(`0x${h}`)) as [bigint, bigint];
      const wanted = [{ nsPid: innermostPid(pid), start, end, pgoff: 0n, samples: [0n, 4096n] }];
      assert.equal((await observeTree(pid, wanted))[0]!.samples!.length, 2);
      truncateSync(file, 0);
      await assert.rejects(
        observeTree(pid, wanted),
        (e: unknown) =>
          e instanceof NativeError &&
          e.errnoName === 'EFAULT' &&
          e.message.startsWith(`process_vm_readv(${pid}, 0x${start.toString(16)}, 4096)`),
      );
    } finally {
      child.kill('SIGKILL');
      await exited(child);
      rmSync(file, { force: true });
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
