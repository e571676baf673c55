/**
 * The CRIU image reader and the BO graph on checkpoints dumped by real CRIU
 * in this run, and the reader's robustness on truncated, corrupt and random
 * files: the JavaScript reader (the CLI's) and the native one the daemon reads
 * with at every restore (readSharedCheckpoint), which must agree on both.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { checkpointTrees, run, STAGEGATE, type Checkpoint as Dumped } from '../../demo/harness';
import { readCheckpoint, readSharedCheckpoint } from '../../src/images/checkpoint';
import { bosOfCheckpoints, sharedMappings } from '../../src/images/vma';
import { ImageError } from '../../src/errors';
import { ImageInspector } from '../../src/images/inspector';
import { inspectTreeShared } from '../../src/images/inspect';
import { criu } from '../../src/images/generated/criu';
import { execFileSync } from 'node:child_process';

const PROCS = 3;
// demo/workload.c's per-process addresses
const STRIDE = 0x4000000n;
const addr = (base: bigint, tree: number, idx: number) => base + BigInt(tree * 16 + idx) * STRIDE;
const A = 0x500000000000n,
  B = 0x540000000000n,
  C = 0x580000000000n,
  D = 0x5c0000000000n;

let dir: string;
let dumped: Dumped;
before(async () => {
  dir = mkdtempSync('/tmp/sg-images-');
  dumped = await checkpointTrees(dir, 2, PROCS, `/dev/shm/sg-images-${process.pid}`);
});
after(() => {
  rmSync(dumped.shm, { force: true });
  rmSync(dir, { recursive: true, force: true });
});

describe('CRIU image reader on real dumps', () => {
  it("reads the process tree and every task's VMAs", () => {
    const cp = readCheckpoint(dumped.images[0]!);
    assert.deepEqual(
      cp.tasks.map((t) => [t.pid, t.ppid]),
      [
        [1, 0],
        [2, 1],
        [3, 1],
      ],
    );
    for (const t of cp.tasks) {
      assert.ok(t.vmas.length > 5);
      assert.ok(
        t.vmas.every((v, i) => i === 0 || v.start >= t.vmas[i - 1]!.end),
        'VMAs sorted and disjoint',
      );
    }
  });

  it('finds exactly the expected BOs and mappers across two trees', () => {
    const trees = dumped.images.map((d, i) => ({ tree: `t${i}`, checkpoint: readCheckpoint(d) }));
    const bos = bosOfCheckpoints(trees);
    const summary = bos.map((b) => ({
      kind: b.kind,
      label: b.label,
      mappers: b.mappers.map((m) => `${m.tree}/${m.pid}@0x${m.start.toString(16)}+${m.size}`),
    }));
    const expect = (kind: string, label: string, base: bigint, size: number, treesOf: number[]) => ({
      kind,
      label,
      mappers: treesOf.flatMap((t) => [0, 1, 2].map((i) => `t${t}/${i + 1}@0x${addr(base, t, i).toString(16)}+${size}`)),
    });
    const shmName = dumped.shm;
    assert.deepEqual(
      summary.sort((a, b) => (a.label + a.mappers[0] < b.label + b.mappers[0] ? -1 : 1)),
      [
        expect('file', shmName, B, 1 << 20, [0, 1]), // one /dev/shm file shared by both trees
        expect('sysv-shm', 'SysV shm 0', D, 64 << 10, [0]),
        expect('sysv-shm', 'SysV shm 0', D, 64 << 10, [1]),
        // MAP_SHARED|MAP_ANONYMOUS, mremap'd per process: stored by CRIU as a memfd named /dev/zero
        expect('memfd', 'memfd /dev/zero', A, 4 << 20, [0]),
        expect('memfd', 'memfd /dev/zero', A, 4 << 20, [1]),
        expect('memfd', 'memfd stagegate-memfd', C, 64 << 10, [0]),
        expect('memfd', 'memfd stagegate-memfd', C, 64 << 10, [1]),
      ].sort((a, b) => (a.label + a.mappers[0] < b.label + b.mappers[0] ? -1 : 1)),
    );
  });

  it("the native reader gives the daemon the same shared mappings, and no task's private VMAs", async () => {
    for (const [i, d] of dumped.images.entries()) {
      const all = readCheckpoint(d);
      const shared = await readSharedCheckpoint(d);
      assert.deepEqual(sharedMappings(`t${i}`, shared), sharedMappings(`t${i}`, all));
      assert.ok(sharedMappings(`t${i}`, shared).length >= 12);
      assert.deepEqual(
        shared.tasks.map((t) => [t.pid, t.ppid, t.threads]),
        all.tasks.map((t) => [t.pid, t.ppid, t.threads]),
      );
      // only what can share an object crosses to JavaScript: 4 of each task's dozens of VMAs
      for (const [k, t] of shared.tasks.entries()) {
        assert.equal(t.vmas.length, 4);
        assert.ok(all.tasks[k]!.vmas.length > 10);
      }
    }
  });

  it('stagegate images prints the BOs, and --json is machine-readable', async () => {
    const table = await run(STAGEGATE, ['images', ...dumped.images]);
    assert.equal(table.code, 0, table.output);
    assert.match(table.output, /7 shared buffer object\(s\) mapped by two or more tasks/);
    assert.match(table.output, /\[file\] \/dev\/shm\/sg-images-\d+, 6 mappers/);
    const json = await run(STAGEGATE, ['images', '--json', ...dumped.images]);
    const parsed = JSON.parse(json.output);
    assert.equal(parsed.trees.length, 2);
    assert.equal(parsed.bos.length, 7);
    assert.equal(parsed.bos.find((b: { kind: string }) => b.kind === 'file').mappers[0].start, `0x${addr(B, 0, 0).toString(16)}`);
  });
});

describe('CRIU image reader on bad input', () => {
  const bad = () => {
    const d = mkdtempSync(join(dir, 'bad-'));
    for (const f of ['pstree.img', 'mm-1.img', 'mm-2.img', 'mm-3.img', 'files.img', 'memfd.img'])
      copyFileSync(join(dumped.images[0]!, f), join(d, f));
    return d;
  };
  // within the size limit, and each entry a valid empty message: millions of them
  const emptyEntries = () => {
    const d = bad();
    const pstree = readFileSync(join(d, 'pstree.img'));
    writeFileSync(join(d, 'pstree.img'), Buffer.concat([pstree.subarray(0, 8), Buffer.alloc(15 << 20)]));
    return d;
  };
  // the longest the event loop went without running a 5 ms interval while `work` ran
  const longestStall = async (work: () => Promise<void>): Promise<number> => {
    let last = Date.now();
    let worst = 0;
    const probe = setInterval(() => ((worst = Math.max(worst, Date.now() - last)), (last = Date.now())), 5);
    try {
      await work();
    } finally {
      clearInterval(probe);
    }
    return worst;
  };
  // both readers refuse it alike: the same file, offset and reason
  const expectImageError = async (d: string, file: string, message: RegExp, offset?: number) => {
    const refused = (e: unknown) =>
      e instanceof ImageError &&
      e.code === 'E_IMAGE' &&
      e.file.endsWith(file) &&
      message.test(e.message) &&
      (offset === undefined || e.offset === offset);
    assert.throws(() => readCheckpoint(d), refused);
    await assert.rejects(readSharedCheckpoint(d), refused, 'the native reader');
  };

  it('names the file and offset of a truncated entry', async () => {
    const d = bad();
    const mm = readFileSync(join(d, 'mm-2.img'));
    writeFileSync(join(d, 'mm-2.img'), mm.subarray(0, mm.length - 7));
    await expectImageError(d, 'mm-2.img', /mm-2.img: truncated: entry at offset 8 claims \d+ bytes, \d+ left/, 8);
  });

  it('refuses a file that is not a CRIU image, or an image of another kind', async () => {
    const d = bad();
    writeFileSync(join(d, 'pstree.img'), 'hello, world');
    await expectImageError(d, 'pstree.img', /not a CRIU image: no magic 0x54564319 at offset 0$/, 0);
    assert.throws(
      () => readCheckpoint(d),
      (e: unknown) => !/6c6c6568|hell/.test((e as Error).message),
      "the file's bytes are never echoed",
    );
    await assert.rejects(readSharedCheckpoint(d), (e: unknown) => !/6c6c6568|hell/.test((e as Error).message));
    copyFileSync(join(dumped.images[0]!, 'files.img'), join(d, 'pstree.img'));
    await expectImageError(d, 'pstree.img', /wrong kind of CRIU image: magic 0x56303138 at offset 4, expected 0x50273030/, 4);
    writeFileSync(join(d, 'pstree.img'), Buffer.from([0x19, 0x43]));
    await expectImageError(d, 'pstree.img', /truncated: 2 bytes/);
  });

  it('reports a corrupt entry and a missing image', async () => {
    const d = bad();
    const mm = readFileSync(join(d, 'mm-1.img'));
    mm.fill(0xff, 12, 40); // garbage inside the entry
    writeFileSync(join(d, 'mm-1.img'), mm);
    await expectImageError(d, 'mm-1.img', /corrupt entry at offset 8|truncated|ends .* before it starts/);
    const d2 = bad();
    rmSync(join(d2, 'pstree.img'));
    await expectImageError(d2, 'pstree.img', /cannot read: ENOENT/);
  });

  it('refuses what would stall or exhaust the reader: a FIFO, a device, a symlinked file, a huge zero tail, too many entries', async () => {
    const fifo = bad();
    rmSync(join(fifo, 'pstree.img'));
    execFileSync('mkfifo', [join(fifo, 'pstree.img')]);
    await expectImageError(fifo, 'pstree.img', /not a regular file/); // returns at once: no writer ever comes
    const dev = bad();
    rmSync(join(dev, 'mm-1.img'));
    symlinkSync('/dev/zero', join(dev, 'mm-1.img'));
    await expectImageError(dev, 'mm-1.img', /a symlink \(not followed\)/);
    const tail = bad();
    const mm = readFileSync(join(tail, 'mm-1.img'));
    writeFileSync(join(tail, 'mm-1.img'), Buffer.concat([mm, Buffer.alloc(32 << 20)])); // 8M empty entries after the real one
    const started = Date.now();
    await expectImageError(tail, 'mm-1.img', /more than 1 entries/);
    assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms`);
    const big = bad();
    writeFileSync(join(big, 'files.img'), Buffer.alloc((64 << 20) + 1));
    await expectImageError(big, 'files.img', /larger than any image of this kind/);
  });

  it("reads checkpoints off the daemon's event loop: a checkpoint that exhausts the reader fails alone, the next one is read", async () => {
    const inspector = new ImageInspector({ timeoutMs: 5000, heapMb: 64 });
    try {
      const hostile = emptyEntries();
      const worst = await longestStall(() =>
        assert.rejects(inspector.inspect('t0', hostile), /more than 65536 entries|exhausted|took longer/),
      );
      assert.ok(worst < 500, `the event loop stalled for ${worst} ms`);
      const good = await inspector.inspect('t0', dumped.images[0]!);
      assert.ok(good.length > 0, 'the next checkpoint is read');
    } finally {
      inspector.close();
    }
  });

  it('the native reader refuses millions of empty entries off the event loop, and reads the next checkpoint', async () => {
    const hostile = emptyEntries();
    const worst = await longestStall(() => assert.rejects(readSharedCheckpoint(hostile), /pstree.img: more than 65536 entries/));
    assert.ok(worst < 500, `the event loop stalled for ${worst} ms`);
    assert.ok((await readSharedCheckpoint(dumped.images[0]!)).tasks.length === PROCS, 'the next checkpoint is read');
  });

  it('the native reader gives up on a checkpoint that takes longer than its time limit, and reads the next, one at a time', async () => {
    // 64 MiB of valid file entries: reading them takes far longer than 1 ms (and fails: too many)
    const slow = bad();
    const one = Buffer.from(criu.FileEntry.encode({ type: 1, id: 7 }).finish());
    const entry = Buffer.concat([Buffer.alloc(4), one]);
    entry.writeUInt32LE(one.length, 0);
    const count = Math.floor(((64 << 20) - 8) / entry.length);
    const files = readFileSync(join(slow, 'files.img'));
    writeFileSync(join(slow, 'files.img'), Buffer.concat([files.subarray(0, 8), Buffer.alloc(count * entry.length)]));
    const body = readFileSync(join(slow, 'files.img'));
    for (let k = 0; k < count; k++) entry.copy(body, 8 + k * entry.length);
    writeFileSync(join(slow, 'files.img'), body);
    await assert.rejects(
      inspectTreeShared('t0', slow, 1),
      (e: unknown) => e instanceof ImageError && /took longer than 1 ms/.test(e.message),
    );
    assert.ok((await inspectTreeShared('t0', dumped.images[0]!)).length > 0, 'the next checkpoint is read');
    // one at a time: a checkpoint asked for while the slow one is read (it ends refused: too many
    // entries) is read after it, though it takes a fraction of the time
    const order: string[] = [];
    const [slowly, next] = await Promise.allSettled([
      inspectTreeShared('t0', slow).finally(() => order.push('slow')),
      inspectTreeShared('t1', dumped.images[1]!).finally(() => order.push('next')),
    ]);
    assert.match(String(slowly.status === 'rejected' ? slowly.reason : 'read'), /files.img: more than 1000000 entries/);
    assert.ok(next.status === 'fulfilled' && next.value.length > 0 && next.value.every((m) => m.tree === 't1'));
    assert.deepEqual(order, ['slow', 'next']);
  });

  it('gives up on a checkpoint that takes longer than its time limit, and goes on with the next', async () => {
    const inspector = new ImageInspector({ timeoutMs: 1, heapMb: 64 });
    try {
      const results = await Promise.allSettled([inspector.inspect('t0', dumped.images[0]!), inspector.inspect('t1', dumped.images[1]!)]);
      for (const r of results) assert.match(String(r.status === 'rejected' ? r.reason : 'fulfilled'), /took longer than 1 ms|fulfilled/);
      assert.equal(results[0]!.status, 'rejected', 'a worker start alone takes longer than 1 ms');
    } finally {
      inspector.close();
    }
  });

  it('does not follow a symlinked checkpoint directory', async () => {
    const link = join(dir, 'link');
    symlinkSync(dumped.images[0]!, link);
    await expectImageError(link, 'link', /not a directory \(symlinks are not followed\)/);
  });

  it('never crashes on random or mutated images, and both readers agree on each (bounded fuzz)', async () => {
    const d = join(dir, 'fuzz');
    mkdirSync(d);
    const originals = ['pstree.img', 'mm-1.img', 'files.img', 'memfd.img'].map(
      (f) => [f, readFileSync(join(dumped.images[0]!, f))] as const,
    );
    let seed = 12345;
    const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    let errors = 0;
    const mismatches: string[] = [];
    for (let i = 0; i < 400; i++) {
      for (const [f, data] of originals) writeFileSync(join(d, f), data);
      const [f, data] = originals[i % originals.length]!;
      const m = Buffer.from(data);
      if (i % 5 === 0) {
        writeFileSync(join(d, f), Buffer.from(Array.from({ length: Math.floor(rnd() * 200) }, () => Math.floor(rnd() * 256))));
      } else {
        for (let k = 0; k < 1 + Math.floor(rnd() * 8); k++) m[Math.floor(rnd() * m.length)] = Math.floor(rnd() * 256);
        writeFileSync(join(d, f), m.subarray(0, rnd() < 0.3 ? Math.floor(rnd() * m.length) : m.length));
      }
      let js: ImageError | ReturnType<typeof sharedMappings>;
      try {
        js = sharedMappings('t0', readCheckpoint(d));
      } catch (e) {
        assert.ok(e instanceof ImageError, `mutation ${i} of ${f} threw ${(e as Error)?.stack}`);
        js = e;
        errors++;
      }
      let native: ImageError | ReturnType<typeof sharedMappings>;
      try {
        native = sharedMappings('t0', await readSharedCheckpoint(d));
      } catch (e) {
        assert.ok(e instanceof ImageError, `mutation ${i} of ${f}: the native reader threw ${(e as Error)?.stack}`);
        native = e;
      }
      const what = `mutation ${i} of ${f}: ${js instanceof ImageError ? js.message : 'read'} / ${native instanceof ImageError ? native.message : 'read'}`;
      if (js instanceof ImageError) assert.ok(native instanceof ImageError && native.file === js.file, what);
      else if (native instanceof ImageError) mismatches.push(what);
      else assert.deepEqual(native, js, what);
    }
    assert.ok(errors > 50, `only ${errors} of 400 mutations were rejected`);
    // protobuf-c, criu's own decoder, refuses some entries protobufjs reads (a field of a
    // declared number with another wire type): criu would refuse that image too; nothing else differs
    assert.ok(
      mismatches.every((m) => /: corrupt entry at offset \d+ \(\d+ bytes\): not a valid entry$/.test(m)),
      mismatches.join('\n'),
    );
  });
});
