/**
 * MPI: a 4-rank MPICH job (ranks sharing an MPI shared-memory window)
 * checkpointed and restored through stagegate with the recipe's helper
 * (scripts/mpi.sh); its shared segments are found as BOs, verified per rank,
 * and the job computes correctly after the restore. And `stagegate restore`
 * under mpiexec: one restore per rank, tree and count from PMI_RANK/PMI_SIZE.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Daemon, STAGEGATE, checkpointTrees, killTree, readPidfile, readSlots, run, sleep } from '../../demo/harness';
import { projectRoot } from '../../src/paths';

const MPI = resolve(projectRoot, 'scripts/mpi.sh');
const JOB = resolve(projectRoot, 'build/mpi-job');
const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

describe('MPI', () => {
  it('checkpoints a 4-rank MPICH job and restores it through stagegate: BOs verified per rank, results correct', async () => {
    const dir = mkdtempSync('/tmp/sg-mpi-');
    const daemon = await Daemon.start(dir, 60);
    cleanups.push(async () => {
      const root = readPidfile(join(dir, 'work', 'root.pid'));
      if (root) killTree(root);
      await daemon.stop();
      rmSync(dir, { recursive: true, force: true });
    });
    const out = join(dir, 'job.out');
    const launched = await run(MPI, ['launch', out, '--', '-n', '4', JOB, '80']);
    assert.equal(launched.code, 0, launched.output);
    const pid = Number(launched.output.trim());
    const deadline = Date.now() + 20_000;
    while (!/iter 10 /.test(readFileSync(out, 'utf8')) && Date.now() < deadline) await sleep(100);
    const dumped = await run(MPI, ['dump', String(pid), join(dir, 'images')]);
    assert.equal(dumped.code, 0, dumped.output);
    const before = readFileSync(out, 'utf8');
    await sleep(1500); // the dumped tasks' pids must be reaped
    const restored = await run(MPI, [
      'restore',
      join(dir, 'images'),
      join(dir, 'work'),
      '--',
      '--endpoint',
      daemon.endpoint,
      '--session',
      'mpi',
      '--tree',
      'job',
      '--trees',
      '1',
    ]);
    assert.equal(restored.code, 0, restored.output);
    const end = Date.now() + 30_000;
    while (!/^done$/m.test(readFileSync(out, 'utf8')) && Date.now() < end) await sleep(200);
    const after = readFileSync(out, 'utf8');
    assert.match(after, /^iter 79 total \d+ ok$/m, after);
    assert.match(after, /^done$/m);
    assert.doesNotMatch(after, /MISMATCH|mismatch/);
    assert.ok(after.length > before.length, 'the job went on after the restore');
    const bos = daemon.messages.flatMap((m) => ('decision' in m && m.decision.kind === 'bo-activated' ? [m.decision] : []));
    assert.ok(bos.length >= 4, `only ${bos.length} BOs activated`);
    const ranks = new Set(bos.flatMap((b) => b.mappers.map((x) => `${x.tree}/${x.pid}`)));
    assert.ok(ranks.size >= 4, `BO mappers: ${[...ranks].join(' ')}`);
    assert.ok(
      bos.every(
        (b) =>
          b.at <=
          daemon.messages.flatMap((m) =>
            'decision' in m && m.decision.kind === 'gate-opened' && m.decision.action === 'pre-resume' ? [m.decision.at] : [],
          )[0]!,
      ),
    );
  });

  it('runs under mpiexec: one restore per rank, tree and tree count from PMI_RANK and PMI_SIZE', async () => {
    const dir = mkdtempSync('/tmp/sg-launch-');
    const cp = await checkpointTrees(dir, 2, 3, `/dev/shm/sg-launch-${process.pid}`);
    const daemon = await Daemon.start(dir, 30);
    cleanups.push(async () => {
      for (const k of [0, 1]) {
        const root = readPidfile(join(dir, `w${k}`, 'pid'));
        if (root) killTree(root);
      }
      await daemon.stop();
      for (const f of cp.shmFiles) rmSync(f, { force: true });
      rmSync(dir, { recursive: true, force: true });
    });
    const perRank = `mkdir -p ${dir}/w$PMI_RANK && exec ${STAGEGATE} restore --session launched --endpoint ${daemon.endpoint} -- -D ${dir}/images-$PMI_RANK -W ${dir}/w$PMI_RANK -d --pidfile ${dir}/w$PMI_RANK/pid -o ${dir}/w$PMI_RANK/restore.log`;
    const r = await run('mpiexec', ['-n', '2', 'sh', '-c', perRank]);
    assert.equal(r.code, 0, r.output);
    const events = daemon.messages.flatMap((m) => ('event' in m ? [m.event] : []));
    assert.deepEqual([...new Set(events.map((e) => e.tree))].sort(), ['rank0', 'rank1']);
    assert.ok(events.every((e) => e.expectedTrees === 2));
    await sleep(200);
    assert.ok(readSlots(cp.shm).every((s) => s.gaps === 1 && s.patternOk));
  });
});
