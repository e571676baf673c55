/**
 * A real-CRIU test scenario: N workload trees checkpointed into a private
 * directory, a coordinator daemon, and `stagegate restore` runs of the trees.
 * `cleanup()` kills whatever was restored, stops the daemon and removes files.
 */
import { after } from 'node:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import {
  type Checkpoint,
  Daemon,
  checkpointTrees,
  hashDir,
  killTree,
  readPidfile,
  readSlots,
  restoreTree,
  type RestoreRun,
} from '../../demo/harness';
import { isLive } from '../../src/proc/tree';
import { type DecisionKind, type DecisionOf, fieldsOf } from '../../src/core/model';

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
  /** where its work directory goes (default the scenario's directory) */
  workDir?: string;
  detached?: boolean;
}

export async function scenario(name: string, trees: number, o: { deadlineS?: number; separate?: boolean; serveArgs?: string[] } = {}) {
  const dir = mkdtempSync(`/tmp/sg-e2e-${name}-`);
  const cp = await checkpointTrees(dir, trees, PROCS, `/dev/shm/sg-e2e-${name}-${process.pid}`, o.separate ?? false);
  const daemon = await Daemon.start(dir, o.deadlineS ?? 30, 'verify', '', o.serveArgs ?? []);
  const runs: RestoreRun[] = [];
  /** pid files of trees restored by other means (plain criu): cleaned up like the runs */
  const pidfiles: string[] = [];
  const restore = (tree: number, r: RestoreOptions = {}) => {
    const run = restoreTree({
      endpoint: r.endpoint ?? daemon.endpoint,
      session: name,
      tree: `t${tree}`,
      trees,
      images: r.images ?? cp.images[tree]!,
      workDir: r.workDir ?? dir,
      attempt: r.attempt,
      detached: r.detached,
      // the wrapper's own temporary files go with the scenario, even when the wrapper is killed
      extraEnv: { TMPDIR: dir },
      timeoutS: r.timeoutS,
      criuArgs: r.criuArgs,
    });
    runs.push(run);
    return run;
  };
  const cleanup = async () => {
    for (const pidfile of [...runs.map((r) => r.pidfile), ...pidfiles]) {
      const root = readPidfile(pidfile);
      if (root) killTree(root);
    }
    await daemon.stop();
    for (const f of cp.shmFiles) rmSync(f, { force: true });
    rmSync(dir, { recursive: true, force: true });
  };
  cleanups.push(cleanup);
  return { dir, cp, daemon, restore, runs, track: (pidfile: string) => void pidfiles.push(pidfile) };
}

/** Writes an executable `--action-script` DIR/NAME: `body`, then `exit 0` (criu must not fail on it). */
export function actionScript(dir: string, name: string, body: string): string {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\n${body}\nexit 0\n`, { mode: 0o755 });
  return path;
}

export const decisions = (d: Daemon) => d.messages.flatMap((m) => ('decision' in m ? [fieldsOf(m.decision)] : []));
/** The published decisions of one kind. */
export const decisionsOf = <K extends DecisionKind>(d: Daemon, kind: K): DecisionOf<K>[] =>
  d.messages.flatMap((m) => ('decision' in m && m.decision.kind === kind ? [m.decision as DecisionOf<K>] : []));
export const eventsOf = (d: Daemon) => d.messages.flatMap((m) => ('event' in m ? [m.event] : []));
/**
 * The first published decision of `kind`, once it has arrived (5 s at most; undefined if it
 * never does). The daemon publishes it as it answers the hooks, so it can reach this process
 * after the restores it ended have exited.
 */
export async function decisionArrived(d: Daemon, kind: DecisionKind): Promise<ReturnType<typeof fieldsOf> | undefined> {
  const find = () => decisions(d).find((x) => x.kind === kind);
  for (const end = Date.now() + 5000; !find() && Date.now() < end;) await new Promise((r) => setTimeout(r, 10));
  return find();
}

/** No process of the checkpoint ran user code: every slot is exactly as at dump time. */
export function assertNeverRan(cp: Checkpoint, trees: number[]): void {
  const now = readSlots(cp.shm);
  for (const t of trees) {
    for (const s of cp.slots.filter((x) => x.tree === t)) {
      const n = now.find((x) => x.tree === t && x.idx === s.idx)!;
      assert.equal(n.counter, s.counter, `tree ${t} process ${s.idx} ran after the abort`);
      assert.equal(n.gaps, 0);
    }
  }
}

export function assertNothingRunning(runs: RestoreRun[]): void {
  for (const r of runs) {
    const root = readPidfile(r.pidfile);
    if (root) assert.ok(!isLive(root), `restored root ${root} still running`);
  }
}

export function assertImagesUnchanged(cp: Checkpoint): void {
  cp.images.forEach((d, i) => assert.deepEqual(hashDir(d), cp.hashes[i], `images of tree ${i} changed`));
}
