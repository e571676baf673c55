/**
 * The verify activator on real CRIU restores: per-BO gating, a BO manifest
 * whose mappings are caught moved or diverging (every tree aborted, none ran,
 * images unchanged), and the negative proof that the same check fails before
 * the VMAs are final and passes at post-restore.
 */
import { describe, it } from 'node:test';
import { PROCS, actionScript, decisions, decisionsOf, scenario, decisionArrived } from '../support/scenario';
import { isLive } from '../../src/proc/tree';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Daemon, STAGEGATE, hashDir, killTree, readPidfile, readSlots, sleep } from '../../demo/harness';
import { openSession } from '../../src/transport/client';
import type { ManifestBo } from '../../src/protocol/codec';

const STRIDE = 0x4000000n;
const C = 0x580000000000n; // demo/workload.c: the memfd region
const addrC = (tree: number, idx: number) => C + BigInt(tree * 16 + idx) * STRIDE;

const eventAt = (d: Daemon, tree: string, action: string) => {
  const m = d.messages.find((x) => 'event' in x && x.event.tree === tree && x.event.action === action);
  return m && 'event' in m ? Number(m.event.wallNs) / 1e6 : NaN;
};

describe('verify activator on real CRIU', () => {
  it("answers a tree that shares nothing without waiting for the other tree's restore; the resume barrier still holds", async () => {
    const { dir, cp, daemon, restore } = await scenario('pertree', 2, { separate: true });
    const a = restore(0);
    await sleep(1500);
    // t1 takes 500 ms more from its pre-restore to its post-restore: whether t0 waits for t1's
    // restore is then told apart from how fast criu restores t1 (some 20 ms here otherwise,
    // not much more than the daemon takes to read t1's images and release t0)
    const slow = actionScript(dir, 'slow.sh', `[ "$CRTOOLS_SCRIPT_ACTION" = post-setup-namespaces ] && sleep 0.5`);
    const b = restore(1, { criuArgs: ['--action-script', slow] });
    for (const r of await Promise.all([a.done, b.done])) assert.equal(r.code, 0, r.output);
    const released = decisions(daemon).filter((d) => d.kind === 'tree-released' && d.action === 'post-restore');
    const t0 = released.find((d) => d.tree === 't0')!;
    // t0 maps a regular file (its status file), so it waits until every tree's images are known
    // (t1's pre-restore) -- but not for t1's memory to be restored and verified.
    assert.ok(t0.at >= eventAt(daemon, 't1', 'pre-restore'), "file BOs need every tree's images");
    assert.ok(t0.at < eventAt(daemon, 't1', 'post-restore'), 'tree t0 passed post-restore before tree t1 reached it');
    assert.ok(t0.at - eventAt(daemon, 't0', 'post-restore') > 1000, "tree t0 did wait for t1's images");
    const activated = decisionsOf(daemon, 'bo-activated').filter((d) => d.trees.includes('t0'));
    assert.deepEqual(
      activated.map((d) => d.label).sort(),
      [cp.shmFiles[0]!, 'SysV shm 0', 'memfd /dev/zero', 'memfd stagegate-memfd'].sort(),
    );
    assert.ok(activated.every((d) => d.at <= t0.at));
    // ... but nobody resumed before the last tree reached pre-resume
    await sleep(200);
    const t1Ready = eventAt(daemon, 't1', 'pre-resume');
    const slots = cp.shmFiles.flatMap(readSlots);
    assert.equal(slots.length, 2 * PROCS);
    for (const s of slots) assert.ok(s.resumedAtMs >= Math.floor(t1Ready), `tree ${s.tree} task ${s.idx} resumed before the barrier`);
  });

  for (const [kind, manifest, message] of [
    [
      'a mapping not where the manifest says',
      (): ManifestBo[] => [
        {
          id: 'gpu0',
          mappers: [
            { tree: 't0', pid: 1, start: addrC(0, 0), size: 0x10000n, prot: 3 },
            { tree: 't0', pid: 2, start: addrC(0, 1) + 0x1000n, size: 0x1000n, prot: 3 },
          ],
        },
      ],
      /\[E_VERIFY\] BO gpu0 \(manifest:gpu0\): tree t0 task 2 at 0x580004001000: no mapping starts at 0x580004001000 \(it lies inside 0x580004000000-0x580004010000 rw-s\)/,
    ],
    [
      'mappers backed by different objects with different bytes',
      (): ManifestBo[] => [
        {
          id: 'gpu1',
          mappers: [
            { tree: 't0', pid: 1, start: addrC(0, 0), size: 0x10000n, prot: 3 },
            { tree: 't1', pid: 1, start: addrC(1, 0), size: 0x10000n, prot: 3 },
          ],
        },
      ],
      /\[E_VERIFY\] BO gpu1 \(manifest:gpu1\): tree t1 task 1 at 0x580040000000 is backed by object \d+:\d+, but tree t0 task 1 at 0x580000000000 by \d+:\d+; content differs at object offset 0x0 between tree t0 task 1 at 0x580000000000 and tree t1 task 1 at 0x580040000000/,
    ],
  ] as const) {
    it(`catches ${kind} and aborts every tree before any task runs`, async () => {
      const name = kind.startsWith('a mapping') ? 'moved' : 'diverge';
      const { cp, daemon, restore, runs } = await scenario(name, 2);
      const opened = await openSession(daemon.endpoint, {
        session: name,
        expectedTrees: 2,
        attempt: 1,
        deadlineMs: 20_000,
        manifest: manifest(),
      });
      assert.equal(opened.proceed, true, opened.reason);
      const results = await Promise.all([restore(0).done, restore(1).done]);
      for (const r of results) assert.notEqual(r.code, 0, 'every tree must be aborted');
      assert.ok(
        results.some((r) => message.test(r.output)),
        results.map((r) => r.output).join('\n'),
      );
      const abort = (await decisionArrived(daemon, 'session-aborted'))!;
      assert.equal(abort.code, 'E_VERIFY');
      await sleep(200);
      for (const r of runs) {
        const root = readPidfile(r.pidfile);
        if (root) assert.ok(!isLive(root), `restored root ${root} still running`);
      }
      const now = readSlots(cp.shm);
      for (const s of cp.slots) {
        const n = now.find((x) => x.tree === s.tree && x.idx === s.idx)!;
        assert.equal(n.counter, s.counter, `tree ${s.tree} task ${s.idx} ran`);
      }
      cp.images.forEach((d, i) => assert.deepEqual(hashDir(d), cp.hashes[i]));
    });
  }

  it('exec activator: runs once per verified mapping, in the frozen restored task, before anything resumes', async (t) => {
    const calls = `/tmp/sg-exec-calls-${process.pid}`;
    // the command checks that the mapping is live in that task, then records when it ran
    const command = `grep -q "^\${STAGEGATE_ADDRESS#0x}-" /proc/$STAGEGATE_PID/maps && echo "$(date +%s%3N) $STAGEGATE_TREE $STAGEGATE_IMAGE_PID $STAGEGATE_ADDRESS" >> ${calls}`;
    // a client may choose an exec activator only if the operator allowed that command
    const { cp, daemon, restore } = await scenario('exec', 2, { serveArgs: ['--allow-activator', `exec:${command}`] });
    t.after(() => rmSync(calls, { force: true }));
    const opened = await openSession(daemon.endpoint, {
      session: 'exec',
      expectedTrees: 2,
      attempt: 1,
      deadlineMs: 20_000,
      activator: `exec:${command}`,
    });
    assert.equal(opened.proceed, true, opened.reason);
    for (const r of await Promise.all([restore(0).done, restore(1).done])) assert.equal(r.code, 0, r.output);
    await sleep(200);
    const lines = readFileSync(calls, 'utf8').trim().split('\n');
    // per tree: its memfd, its shared anonymous memory, its SysV segment (3 mappers each); the status file (6 mappers)
    assert.equal(lines.length, 2 * 3 * 3 + 6);
    const lastCall = Math.max(...lines.map((l) => Number(l.split(' ')[0])));
    for (const s of readSlots(cp.shm)) assert.ok(s.resumedAtMs >= lastCall, `task ${s.tree}/${s.idx} ran before its BOs were activated`);
    assert.equal(decisions(daemon).filter((d) => d.kind === 'bo-activated').length, 7);
  });

  it('exec activator: a failing command aborts every tree before any task runs', async () => {
    const failing = 'exec:echo "device busy" >&2; exit 7';
    const { cp, daemon, restore } = await scenario('execfail', 2, { serveArgs: ['--allow-activator', failing] });
    const opened = await openSession(daemon.endpoint, {
      session: 'execfail',
      expectedTrees: 2,
      attempt: 1,
      deadlineMs: 20_000,
      activator: failing,
    });
    assert.equal(opened.proceed, true, opened.reason);
    const results = await Promise.all([restore(0).done, restore(1).done]);
    for (const r of results) assert.notEqual(r.code, 0);
    assert.ok(
      results.some((r) => /\[E_ACTIVATOR\] activator exec:.* failed for BO .*: exit 7: device busy/.test(r.output)),
      results.map((r) => r.output).join('\n'),
    );
    await sleep(200);
    const now = readSlots(cp.shm);
    for (const s of cp.slots)
      assert.equal(now.find((x) => x.tree === s.tree && x.idx === s.idx)!.counter, s.counter, `tree ${s.tree} task ${s.idx} ran`);
  });

  it('negative proof: the same check fails at setup-namespaces (VMAs not final) and passes at post-restore', async () => {
    const { dir, restore } = await scenario('negative', 1);
    const script = actionScript(
      dir,
      'check.sh',
      `case "$CRTOOLS_SCRIPT_ACTION" in
  setup-namespaces|post-restore)
    ${STAGEGATE} verify --images "$CRTOOLS_IMAGE_DIR" --init-pid "$CRTOOLS_INIT_PID" > ${dir}/verify-$CRTOOLS_SCRIPT_ACTION.out 2>&1
    echo "exit $?" >> ${dir}/verify-$CRTOOLS_SCRIPT_ACTION.out ;;
esac`,
    );
    const r = await restore(0, { criuArgs: ['--action-script', script] }).done;
    assert.equal(r.code, 0, r.output);
    const early = readFileSync(join(dir, 'verify-setup-namespaces.out'), 'utf8');
    const final = readFileSync(join(dir, 'verify-post-restore.out'), 'utf8');
    assert.match(early, /FAIL BO /);
    assert.match(early, /exit 1\n$/);
    assert.match(final, /^ok {3}BO /m);
    assert.doesNotMatch(final, /FAIL/);
    assert.match(final, /exit 0\n$/);
    // the tree's memfd, its shared anonymous memory (a memfd "/dev/zero"), its SysV segment, its status file
    assert.equal((final.match(/^ok {3}BO /gm) ?? []).length, 4, final);
  });

  it('serve --verify-pages: bytes that differ from the checkpoint in a BO all mappers agree on abort the restore before any task runs; without it they pass', async () => {
    const { dir, cp, daemon, restore, runs } = await scenario('pages', 1, { serveArgs: ['--verify-pages'] });
    // criu runs action scripts in reverse order of the options, so this one runs at post-restore before
    // stagegate's hook: it changes one byte of the restored memfd (through the root task's mapping of it,
    // 0x580000000000, 64 KiB), the way a stray writer or a wrong restore would: every mapper sees the new byte
    const writer = actionScript(
      dir,
      'write.sh',
      `[ "$CRTOOLS_SCRIPT_ACTION" = post-restore ] || exit 0
f=/proc/$CRTOOLS_INIT_PID/map_files/580000000000-580000010000
b=$(od -An -tu1 -j100 -N1 "$f" | tr -d ' ')
printf "\\\\$(printf %o $((255 - b)))" | dd of="$f" bs=1 seek=100 conv=notrunc status=none`,
    );
    const r = await restore(0, { criuArgs: ['--action-script', writer] }).done;
    assert.notEqual(r.code, 0, 'the restore must be aborted');
    assert.match(
      r.output,
      /\[E_VERIFY\] BO memfd stagegate-memfd \(memfd:t0:\d+\): tree t0 task 1 at 0x580000000000: content at object offset 0x0 \(0x580000000000\) differs from the checkpoint's page image/,
    );
    assert.equal((await decisionArrived(daemon, 'session-aborted'))?.code, 'E_VERIFY');
    const root = readPidfile(runs[0]!.pidfile);
    if (root) assert.ok(!isLive(root), 'the restored tree was killed');
    const now = readSlots(cp.shm);
    for (const s of cp.slots) assert.equal(now.find((x) => x.tree === s.tree && x.idx === s.idx)!.counter, s.counter, `task ${s.idx} ran`);

    // the untouched restore passes the same check (no false alarm)
    const good = await restore(0, { attempt: 2 }).done;
    assert.equal(good.code, 0, good.output);
    assert.equal(decisions(daemon).filter((d) => d.kind === 'bo-activated' && d.attempt === 2).length, 4);
    killTree(readPidfile(runs[1]!.pidfile)!);
    await sleep(1200); // the killed tasks' pids free again

    // negative control: without --verify-pages the changed byte passes (the mappers agree); `verify --pages`
    // at post-restore finds it, plain `verify` does not
    const plain = await Daemon.start(dir, 30, 'verify', '-plain');
    try {
      const checker = actionScript(
        dir,
        'check.sh',
        `[ "$CRTOOLS_SCRIPT_ACTION" = post-restore ] || exit 0
${STAGEGATE} verify --images "$CRTOOLS_IMAGE_DIR" --init-pid "$CRTOOLS_INIT_PID" > ${dir}/verify.out 2>&1; echo "exit $?" >> ${dir}/verify.out
${STAGEGATE} verify --pages --images "$CRTOOLS_IMAGE_DIR" --init-pid "$CRTOOLS_INIT_PID" > ${dir}/verify-pages.out 2>&1; echo "exit $?" >> ${dir}/verify-pages.out`,
      );
      const passed = await restore(0, { endpoint: plain.endpoint, criuArgs: ['--action-script', checker, '--action-script', writer] }).done;
      assert.equal(passed.code, 0, passed.output);
      const withoutPages = readFileSync(join(dir, 'verify.out'), 'utf8');
      const withPages = readFileSync(join(dir, 'verify-pages.out'), 'utf8');
      assert.doesNotMatch(withoutPages, /FAIL/);
      assert.match(withoutPages, /exit 0\n$/);
      assert.match(withPages, /^FAIL BO memfd stagegate-memfd .*differs from the checkpoint's page image/m);
      assert.equal((withPages.match(/^FAIL/gm) ?? []).length, 1, withPages);
      assert.match(withPages, /exit 1\n$/);
    } finally {
      const r2 = runs[2] && readPidfile(runs[2].pidfile);
      if (r2) killTree(r2);
      await plain.stop();
    }
  });
});
