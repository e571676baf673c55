/**
 * stagegate under Slurm, for real: a single-node cluster started by this file
 * (spec/support/slurm.ts), one job step `srun -n 2` whose tasks each run
 * `stagegate restore` (tree and tree count from SLURM_PROCID/SLURM_NTASKS)
 * against one coordinator; and the README's sbatch recipe, with the
 * coordinator started inside the allocation.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { STAGEGATE, killTree, readPidfile, readSlots, run, sleep } from '../../demo/harness';
import { PROCS, decisionsOf, scenario } from '../support/scenario';
import { type Slurm, startSlurm } from '../support/slurm';
import { isLive } from '../../src/proc/tree';

let slurm: Slurm;
before(async () => {
  slurm = await startSlurm();
});
after(async () => {
  await slurm?.stop();
});

/** The step each task runs: restore its own tree (rank$SLURM_PROCID), its images chosen by rank. */
function stepScript(dir: string, session: string, endpoint: string, images: (rank: string) => string): string {
  const path = join(dir, `step-${session}.sh`);
  writeFileSync(
    path,
    `#!/bin/sh
r=$SLURM_PROCID
mkdir -p ${dir}/w-${session}-$r
exec ${STAGEGATE} restore --session ${session} --endpoint ${endpoint} --timeout 30 -- \\
  -D ${images('$r')} -W ${dir}/w-${session}-$r -d --pidfile ${dir}/w-${session}-$r/root.pid -o restore.log -v4
`,
    { mode: 0o755 },
  );
  return path;
}

const roots = (dir: string, session: string) => [0, 1].map((r) => readPidfile(join(dir, `w-${session}-${r}`, 'root.pid')));

describe('Slurm: srun -n 2 stagegate restore', () => {
  it('restores both trees of one job step through the gate; the step succeeds', async () => {
    const { dir, cp, daemon } = await scenario('slurm', 2);
    const script = stepScript(dir, 'slurm', daemon.endpoint, (r) => `${dir}/images-${r}`);
    try {
      const r = await run('srun', ['-n', '2', '--kill-on-bad-exit=1', script], slurm.env);
      assert.equal(r.code, 0, r.output);
      const resume = decisionsOf(daemon, 'gate-opened').find((d) => d.action === 'pre-resume');
      assert.deepEqual(resume?.trees, ['rank0', 'rank1']);
      const released = resume!.at;
      await sleep(200);
      const slots = readSlots(cp.shm);
      assert.equal(slots.length, 2 * PROCS);
      for (const s of slots) assert.ok(s.resumedAtMs >= Math.floor(released), `tree ${s.tree} task ${s.idx} ran before the barrier opened`);
    } finally {
      for (const root of roots(dir, 'slurm')) if (root) killTree(root);
    }
  });

  it('runs the README sbatch recipe: the coordinator started inside the allocation, then one restore per task', async () => {
    const { dir, cp } = await scenario('sbatch', 2, {});
    // the recipe of README "Slurm", with this test's paths
    const job = join(dir, 'restore-job.sh');
    writeFileSync(
      job,
      `#!/bin/sh
#SBATCH --ntasks=2
#SBATCH --job-name=restore-job42
set -u
run=${dir}/coordinator.$SLURM_JOB_ID
mkdir -p -m 0700 "$run"
${STAGEGATE} serve --listen "ipc://$run/hooks.sock" --events "ipc://$run/events.sock" --deadline 120 2> "$run/daemon.log" &
coordinator=$!
while [ ! -S "$run/hooks.sock" ]; do sleep 0.1; done
srun ${dir}/task.sh "ipc://$run/hooks.sock"
rc=$?
kill $coordinator; wait $coordinator
exit $rc
`,
      { mode: 0o755 },
    );
    writeFileSync(
      join(dir, 'task.sh'),
      `#!/bin/sh
# one tree per task: rank$SLURM_PROCID of $SLURM_NTASKS (stagegate restore's defaults under Slurm)
r=$SLURM_PROCID
mkdir -p ${dir}/w-sbatch-$r
exec ${STAGEGATE} restore --session "job$SLURM_JOB_ID" --endpoint "$1" -- \
  -D ${dir}/images-$r -W ${dir}/w-sbatch-$r -d --pidfile ${dir}/w-sbatch-$r/root.pid -o restore.log
`,
      { mode: 0o755 },
    );
    try {
      const r = await run('sbatch', ['--wait', '-o', join(dir, 'job.out'), job], slurm.env);
      assert.equal(r.code, 0, `${r.output}\n${readFileSync(join(dir, 'job.out'), 'utf8')}`);
      const id = /Submitted batch job (\d+)/.exec(r.output)?.[1];
      assert.ok(id, r.output);
      const log = readFileSync(join(dir, `coordinator.${id}`, 'daemon.log'), 'utf8');
      assert.match(log, /"message":"gate-opened".*"action":"pre-resume"|"action":"pre-resume".*"message":"gate-opened"/);
      await sleep(200);
      const slots = readSlots(cp.shm);
      assert.ok(
        slots.every((s) => s.resumedAtMs > 0),
        'every task of both trees ran again',
      );
    } finally {
      for (const root of roots(dir, 'sbatch')) if (root) killTree(root);
    }
  });

  it("fails the step when one task's restore fails; the other tree is killed before it runs", async () => {
    const { dir, cp, daemon } = await scenario('slurmfail', 2);
    // rank 1 is given a directory that holds no checkpoint: its criu fails
    const script = stepScript(dir, 'slurmfail', daemon.endpoint, (r) => `${dir}/images-${r}`);
    writeFileSync(script, readFileSync(script, 'utf8').replace(`-D ${dir}/images-$r`, `-D ${dir}/images-$(( r * 7 ))`));
    try {
      const r = await run('srun', ['-n', '2', script], slurm.env);
      assert.notEqual(r.code, 0, 'the step must fail');
      const abort = decisionsOf(daemon, 'session-aborted')[0];
      assert.equal(abort?.code, 'E_TREE_FAILED', r.output);
      assert.match(abort!.reason, /tree rank1 failed to restore/);
      await sleep(200);
      for (const root of roots(dir, 'slurmfail')) if (root) assert.ok(!isLive(root), `restored root ${root} still running`);
      const now = readSlots(cp.shm);
      for (const s of cp.slots.filter((x) => x.tree === 0)) {
        assert.equal(now.find((x) => x.tree === 0 && x.idx === s.idx)!.counter, s.counter, `rank0 task ${s.idx} ran`);
      }
    } finally {
      for (const root of roots(dir, 'slurmfail')) if (root) killTree(root);
    }
  });
});
