/**
 * `stagegate restore`: runs `criu restore` with the stagegate hook as action
 * script and the STAGEGATE_* environment set, and returns criu's exit code.
 * When criu fails, tells the coordinator at once (restore-failed) so the
 * session aborts now instead of at its deadline.
 */
import { spawn } from 'node:child_process';
import { constants, hostname } from 'node:os';
import type { StageEvent } from '../core/model';
import { criuPath, hookPath } from '../paths';
import { killTreeStartedSince, startTime } from '../proc/tree';

export interface RestoreOptions {
  endpoint: string;
  session: string;
  tree: string;
  trees: number;
  attempt: number;
  timeoutS: number;
  criuArgs: string[];
  criu?: string;
}

export async function restore(o: RestoreOptions): Promise<number> {
  const criu = o.criu ?? criuPath();
  // Registered first, so it runs last at each stage (criu runs action scripts
  // in reverse order of registration): a tree counts as having reached a stage
  // only once the user's own scripts for that stage have finished.
  const args = ['restore', '--action-script', hookPath(), ...o.criuArgs];
  const env = {
    ...process.env,
    STAGEGATE_ENDPOINT: o.endpoint,
    STAGEGATE_SESSION: o.session,
    STAGEGATE_TREE: o.tree,
    STAGEGATE_TREES: String(o.trees),
    STAGEGATE_ATTEMPT: String(o.attempt),
    STAGEGATE_TIMEOUT: String(o.timeoutS),
  };
  const child = spawn(criu, args, { env, stdio: 'inherit' });
  const criuStarted = child.pid ? startTime(child.pid) : null;
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((res, rej) => {
    child.once('error', rej);
    child.once('exit', (c, s) => res([c, s]));
  });
  const rc = code ?? 128 + (signal ? constants.signals[signal] : 0);
  if (rc !== 0) {
    const now = BigInt(Date.now()) * 1_000_000n;
    const ev: StageEvent = {
      session: o.session,
      tree: o.tree,
      action: 'restore-failed',
      actionName: 'restore-failed',
      initPid: 0,
      imageDir: '',
      host: hostname(),
      hookPid: process.pid,
      criuPid: child.pid ?? 0,
      monoNs: process.hrtime.bigint(),
      wallNs: now,
      attempt: o.attempt,
      expectedTrees: o.trees,
      reason: signal ? `criu killed by ${signal}` : `criu exited with ${code}`,
    };
    // loaded only on this path: zeromq costs start-up time on every restore
    const { sendEvent, requestStatus } = await import('../client');
    await sendEvent(o.endpoint, ev).catch(() => {});
    if (signal && criuStarted !== null) {
      // A killed criu leaves its restored tasks behind (asleep in the restorer,
      // or stopped at pre-resume): find the tree's root through the coordinator.
      // Not once the resume barrier released it: then the tree runs legitimately.
      const status = await requestStatus(o.endpoint, o.session, 2000).catch(() => null);
      const tree = status?.sessions.flatMap((s) => s.trees).find((t) => t.tree === o.tree);
      const root = tree && !tree.preResumeReleased ? tree.initPid : 0;
      const killed = root ? killTreeStartedSince(root, criuStarted) : 0;
      if (killed) process.stderr.write(`stagegate restore: criu was killed; killed ${killed} leftover task(s) of tree ${o.tree} (root ${root})\n`);
    }
  }
  return rc;
}
