/**
 * The main job: a real coordinated checkpoint and restore.
 *
 * Two process trees (3 processes each, each tree in its own pid namespace)
 * share memory mapped at a different address in every process. Both are
 * checkpointed together with `stagegate dump` (one committed set), then
 * restored concurrently through stagegate, tree
 * "late" starting LATE_MS after tree "early". The timeline shows that the
 * early tree stayed frozen until the late one was ready, and the checks show
 * that the shared data is consistent after resume.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { projectRoot } from '../src/paths';
import { writeTrace } from '../src/trace/write';
import { innermostPid, treePids } from '../src/proc/tree';
import { processVmRead } from '../src/native';
import { readCheckpoint } from '../src/images/checkpoint';
import { bosOfCheckpoints } from '../src/images/vma';
import {
  Daemon,
  PATTERN_SIZE,
  STAGEGATE,
  run,
  checkpointTrees,
  expectedPattern,
  hashDir,
  killTree,
  readPidfile,
  readSlots,
  restoreTree,
  sleep,
  type Slot,
} from './harness';

const LATE_MS = Number(process.env.STAGEGATE_DEMO_LATE_MS ?? 2000);
const PROCS = 3;
const TREES = [
  { name: 'early', index: 0 },
  { name: 'late', index: 1 },
];
const SESSION = 'demo';

const fmt = (ms: number, t0: number) => `+${((ms - t0) / 1000).toFixed(3)}s`.padStart(9);
const hex = (v: bigint) => `0x${v.toString(16)}`;

async function main(): Promise<number> {
  const dir = mkdtempSync('/tmp/stagegate-demo-');
  const shm = `/dev/shm/stagegate-demo-${process.pid}`;
  const restoredRoots = new Map<string, number>();
  let daemon: Daemon | null = null;
  const checks: [string, boolean][] = [];
  const check = (what: string, ok: boolean) => checks.push([what, ok]);
  try {
    console.log(`stagegate demo — work dir ${dir}\n`);
    daemon = await Daemon.start(dir);
    console.log(`1. coordinator listening on ${daemon.endpoint}`);

    const cp = await checkpointTrees(dir, TREES.length, PROCS, shm, false, { endpoint: daemon.endpoint, session: SESSION });
    const before = cp.slots;
    console.log(`2. started ${TREES.length} trees × ${PROCS} processes, each tree in its own pid and IPC namespaces`);
    printLayout(before);
    const images = Object.fromEntries(TREES.map((t) => [t.name, cp.images[t.index]!]));
    const committed = daemon.messages.some(
      (m) => 'decision' in m && m.decision.kind === 'gate-opened' && m.decision.action === 'post-dump',
    );
    const setCheck = await run(STAGEGATE, ['check', ...cp.images]);
    console.log(
      `3. checkpointed both trees together with 'stagegate dump' (${cp.hashes.map((h) => Object.keys(h).length).join(' + ')} image files): ${setCheck.output.split('\n')[0]}`,
    );
    check('both trees dumped as one committed set (pre-dump barrier, post-dump group commit)', committed && setCheck.code === 0);
    const bos = bosOfCheckpoints(TREES.map((t) => ({ tree: t.name, checkpoint: readCheckpoint(images[t.name]!) })));
    console.log(`   shared buffer objects found in the images (${bos.length}):`);
    for (const b of bos) {
      console.log(`   - [${b.kind}] ${b.label}: ${b.mappers.map((m) => `${m.tree}/pid${m.pid}@${hex(m.start)}`).join(', ')}`);
    }

    console.log(`4. restoring concurrently through the gate; tree "late" starts ${LATE_MS} ms after tree "early"\n`);
    const t0 = Date.now();
    const runs = [];
    for (const t of TREES) {
      if (t.name === 'late') await sleep(LATE_MS);
      runs.push(
        restoreTree({
          endpoint: daemon.endpoint,
          session: SESSION,
          tree: t.name,
          trees: TREES.length,
          images: images[t.name]!,
          workDir: dir,
        }),
      );
    }
    const results = await Promise.all(runs.map((r) => r.done));
    for (const [i, r] of runs.entries()) {
      const pid = readPidfile(r.pidfile);
      if (pid) restoredRoots.set(TREES[i]!.name, pid);
    }
    for (const [i, r] of results.entries()) {
      check(`criu restore of tree "${TREES[i]!.name}" succeeded`, r.code === 0);
      if (r.code !== 0) console.log(r.output);
    }
    await sleep(300);
    const after = readSlots(shm);

    // ---- timeline: coordinator events and decisions, plus each process's own first tick after restore
    const rows: [number, string][] = [];
    for (const m of daemon.messages) {
      if ('event' in m) {
        const e = m.event;
        rows.push([
          Number(e.wallNs / 1_000_000n),
          `${e.tree.padEnd(6)} ${e.action}${e.action === 'post-restore' || e.action === 'pre-resume' ? '  (hook waits for the coordinator)' : ''}`,
        ]);
      } else {
        const d = m.decision;
        if (d.kind === 'gate-opened')
          rows.push([
            d.at,
            `GATE   ${d.action} gate opened for ${d.trees.join(', ')} (first arrival waited ${(d.waitedMs / 1000).toFixed(3)} s)`,
          ]);
        if (d.kind === 'session-aborted') rows.push([d.at, `ABORT  ${d.code}: ${d.reason}`]);
        if (d.kind === 'bo-activated')
          rows.push([d.at, `BO     ${d.label} of ${d.trees.join(' + ')} verified on all ${d.mappers.length} mappers: activated`]);
        if (d.kind === 'tree-released' && d.action === 'post-restore')
          rows.push([d.at, `${d.tree.padEnd(6)} post-restore answered: every BO it maps is active`]);
        if (d.kind === 'session-completed') rows.push([d.at, `DONE   session ${d.session} completed`]);
      }
    }
    for (const t of TREES) {
      const first = Math.min(...after.filter((s) => s.tree === t.index).map((s) => s.resumedAtMs || Infinity));
      if (Number.isFinite(first)) rows.push([first, `${t.name.padEnd(6)} workload runs again (first tick after restore)`]);
    }
    rows.sort((a, b) => a[0] - b[0]);
    console.log('timeline (t=0: start of the first restore)');
    for (const [at, text] of rows) console.log(`  ${fmt(at, t0)}  ${text}`);

    // ---- checks
    const decisions = daemon.messages.flatMap((m) => ('decision' in m ? [m.decision] : []));
    const release = decisions.flatMap((d) => (d.kind === 'gate-opened' && d.action === 'pre-resume' ? [d] : []))[0];
    const latePost = daemon.messages.find((m) => 'event' in m && m.event.tree === 'late' && m.event.action === 'post-restore');
    check('resume barrier opened for both trees', !!release && release.trees.length === TREES.length);
    const earlyResumed = after.filter((s) => s.tree === 0).map((s) => s.resumedAtMs);
    const lateReadyMs = latePost && 'event' in latePost ? Number(latePost.event.wallNs / 1_000_000n) : Infinity;
    check(
      'every process of tree "early" stayed frozen until tree "late" reached post-restore',
      earlyResumed.length === PROCS && earlyResumed.every((r) => r >= lateReadyMs),
    );
    check(
      'no process ran before the coordinator released the resume barrier',
      !!release && after.every((s) => s.resumedAtMs + 1 >= Math.floor(release.at)),
    );
    check('every process resumed exactly once', after.length === TREES.length * PROCS && after.every((s) => s.gaps === 1));
    await sleep(100);
    const later = readSlots(shm);
    check(
      'every process keeps running after resume',
      later.every((s) => s.counter > (after.find((a) => a.tree === s.tree && a.idx === s.idx)?.counter ?? 0n)),
    );
    check(
      'every process reads the right pattern through its own mapping',
      later.every((s) => s.patternOk),
    );
    check(
      "each tree's root sees its children's counters advance through shared memory",
      TREES.every(
        (t) =>
          (later.find((s) => s.tree === t.index && s.idx === 0)?.peerSeen ?? 0n) >
          (before.find((s) => s.tree === t.index && s.idx === 0)?.peerSeen ?? 0n),
      ),
    );

    // Shared memory read from each restored process at its own address must be identical.
    let sameBytes = true;
    for (const t of TREES) {
      const root = restoredRoots.get(t.name);
      const hostByNsPid = new Map((root ? treePids(root) : []).map((p) => [innermostPid(p), p]));
      const want = expectedPattern(t.index);
      for (const s of later.filter((x) => x.tree === t.index)) {
        const host = hostByNsPid.get(s.pid);
        sameBytes &&= host !== undefined && (await processVmRead(host, s.aAddr, PATTERN_SIZE)).equals(want);
      }
    }
    check("process_vm_readv of the shared region at each process's address returns identical bytes", sameBytes);
    const unchanged = TREES.every((t) => JSON.stringify(hashDir(images[t.name]!)) === JSON.stringify(cp.hashes[t.index]));
    check('checkpoint images unchanged by the restore', unchanged);

    // the whole restore as trace files
    const traceDir = resolve(projectRoot, 'build/demo');
    for (const ext of ['html', 'json', 'jsonl']) writeTrace(join(traceDir, `trace.${ext}`), daemon.messages);

    console.log('\nchecks');
    for (const [what, ok] of checks) console.log(`  ${ok ? 'ok  ' : 'FAIL'}  ${what}`);
    const failed = checks.filter(([, ok]) => !ok).length;
    console.log(failed ? `\n${failed} check(s) failed` : '\nall checks passed');
    console.log(`\ntrace of this restore: ${join(traceDir, 'trace.html')} (open it in a browser)`);
    console.log(`  also ${join(traceDir, 'trace.json')} for https://ui.perfetto.dev and ${join(traceDir, 'trace.jsonl')}`);
    return failed ? 1 : 0;
  } finally {
    for (const r of restoredRoots.values()) killTree(r);
    await daemon?.stop();
    rmSync(shm, { force: true });
    if (!process.env.STAGEGATE_DEMO_KEEP) rmSync(dir, { recursive: true, force: true });
  }
}

function printLayout(slots: Slot[]): void {
  console.log('   process                pid-in-ns  shared A at       shared B (/dev/shm) at');
  for (const s of [...slots].sort((a, b) => a.tree - b.tree || a.idx - b.idx)) {
    const name = `${TREES.find((t) => t.index === s.tree)?.name}/${s.idx === 0 ? 'root' : `child${s.idx}`}`;
    console.log(`   ${name.padEnd(22)} ${String(s.pid).padStart(9)}  ${hex(s.aAddr).padEnd(16)}  ${hex(s.bAddr)}`);
  }
}

main().then(
  (code) => (process.exitCode = code),
  (err) => {
    console.error(`demo failed: ${(err as Error).stack ?? err}`);
    process.exitCode = 1;
  },
);
