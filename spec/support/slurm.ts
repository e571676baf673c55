/**
 * A single-node Slurm cluster for one test file: munge (when not running
 * already), slurmctld and slurmd from Debian's packages, on a minimal
 * slurm.conf in a private directory with ports of their own. `stop()` stops
 * every daemon it started and removes the directory.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { run, sleep } from '../../demo/harness';

export interface Slurm {
  conf: string;
  dir: string;
  /** the environment Slurm's clients (srun, sbatch, sinfo) need */
  env: NodeJS.ProcessEnv;
  stop(): Promise<void>;
}

const pidOf = (file: string): number => (existsSync(file) ? Number(readFileSync(file, 'utf8').trim()) || 0 : 0);
const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function stopPid(pid: number): Promise<void> {
  if (!pid || !alive(pid)) return;
  process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 100 && alive(pid); i++) await sleep(50);
  if (alive(pid)) process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 100 && alive(pid); i++) await sleep(20);
}

export async function startSlurm(): Promise<Slurm> {
  const dir = mkdtempSync('/tmp/sg-slurm-');
  for (const d of ['state', 'spool', 'log']) mkdirSync(join(dir, d));
  const host = (await run('hostname', ['-s'])).output.trim();
  const conf = join(dir, 'slurm.conf');
  writeFileSync(
    conf,
    [
      'ClusterName=stagegate',
      `SlurmctldHost=${host}`,
      'SlurmUser=root',
      'AuthType=auth/munge',
      'ProctrackType=proctrack/linuxproc',
      'TaskPlugin=task/none',
      'JobAcctGatherType=jobacct_gather/none',
      'SelectType=select/cons_tres',
      `SlurmctldPort=${16817 + (process.pid % 1000) * 2}`,
      `SlurmdPort=${16818 + (process.pid % 1000) * 2}`,
      `StateSaveLocation=${dir}/state`,
      `SlurmdSpoolDir=${dir}/spool`,
      `SlurmctldPidFile=${dir}/slurmctld.pid`,
      `SlurmdPidFile=${dir}/slurmd.pid`,
      `SlurmctldLogFile=${dir}/log/slurmctld.log`,
      `SlurmdLogFile=${dir}/log/slurmd.log`,
      'ReturnToService=2',
      `NodeName=${host} CPUs=${cpus().length} RealMemory=${Math.floor(totalmem() / 2 ** 21)} State=UNKNOWN`,
      `PartitionName=main Nodes=${host} Default=YES MaxTime=INFINITE State=UP`,
      '',
    ].join('\n'),
  );
  const env = { ...process.env, SLURM_CONF: conf };
  const started: string[] = [];
  // munge authenticates every Slurm message; one may already run on this machine
  const mungePid = '/run/munge/munged.pid';
  if ((await run('sh', ['-c', 'munge -n | unmunge'])).code !== 0) {
    rmSync(mungePid, { force: true });
    mkdirSync('/run/munge', { recursive: true });
    await run('chown', ['munge:munge', '/run/munge']);
    const m = await run('su', ['-s', '/bin/sh', 'munge', '-c', 'munged']);
    if (m.code !== 0) throw new Error(`munged did not start: ${m.output}`);
    started.push(mungePid);
  }
  const stop = async () => {
    for (const f of [join(dir, 'slurmd.pid'), join(dir, 'slurmctld.pid'), ...started]) await stopPid(pidOf(f));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (const daemon of ['slurmctld', 'slurmd']) {
      const r = await run(daemon, ['-f', conf], env);
      if (r.code !== 0) throw new Error(`${daemon} did not start: ${r.output}`);
    }
    for (let i = 0; ; i++) {
      if ((await run('sinfo', ['-h', '-o', '%t'], env)).output.includes('idle')) break;
      if (i > 100) throw new Error(`the Slurm node never became idle:\n${readFileSync(join(dir, 'log/slurmd.log'), 'utf8').slice(-2000)}`);
      await sleep(100);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { conf, dir, env, stop };
}
