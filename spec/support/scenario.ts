/**
 * A real-CRIU test scenario: N workload trees checkpointed into a private
 * directory, a coordinator daemon, and `stagegate restore` runs of the trees.
 * `cleanup()` kills whatever was restored, stops the daemon and removes files.
 */
import { after } from 'node:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Daemon, checkpointTrees, killTree, readPidfile, restoreTree, type RestoreRun } from '../../demo/harness';

export const PROCS = 3;

// Every scenario of a test file is cleaned up when the file's tests are done.
const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

export interface RestoreOptions {
  attempt?: number;
  timeoutS?: number;
  images?: string;
  criuArgs?: string[];
  endpoint?: string;
}

export async function scenario(name: string, trees: number, o: { deadlineS?: number; separate?: boolean } = {}) {
  const dir = mkdtempSync(`/tmp/sg-e2e-${name}-`);
  const cp = await checkpointTrees(dir, trees, PROCS, `/dev/shm/sg-e2e-${name}-${process.pid}`, o.separate ?? false);
  const daemon = await Daemon.start(dir, o.deadlineS ?? 30);
  const runs: RestoreRun[] = [];
  const restore = (tree: number, r: RestoreOptions = {}) => {
    const run = restoreTree({
      endpoint: r.endpoint ?? daemon.endpoint,
      session: name,
      tree: `t${tree}`,
      trees,
      images: r.images ?? cp.images[tree]!,
      workDir: dir,
      attempt: r.attempt,
      timeoutS: r.timeoutS,
      criuArgs: r.criuArgs,
    });
    runs.push(run);
    return run;
  };
  const cleanup = async () => {
    for (const r of runs) {
      const root = readPidfile(r.pidfile);
      if (root) killTree(root);
    }
    await daemon.stop();
    for (const f of cp.shmFiles) rmSync(f, { force: true });
    rmSync(dir, { recursive: true, force: true });
  };
  cleanups.push(cleanup);
  return { dir, cp, daemon, restore, runs };
}

/** Writes an executable `--action-script` DIR/NAME: `body`, then `exit 0` (criu must not fail on it). */
export function actionScript(dir: string, name: string, body: string): string {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\n${body}\nexit 0\n`, { mode: 0o755 });
  return path;
}
