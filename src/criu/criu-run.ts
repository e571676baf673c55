/**
 * What `stagegate dump` and `stagegate restore` share: running one criu with
 * the hook registered first and the hook's environment, and how it ended.
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { hookPath } from '../paths';

/** One tree of one session, as a wrapper is told it. */
export interface TreeRun {
  endpoint: string;
  session: string;
  tree: string;
  trees: number;
  attempt: number;
  timeoutS: number;
}

/** The hook's environment for this run (`run` its identity, `note` where it writes why it aborted), plus `extra`. */
export function hookEnv(o: TreeRun, run: string, note: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    STAGEGATE_ENDPOINT: o.endpoint,
    STAGEGATE_SESSION: o.session,
    STAGEGATE_TREE: o.tree,
    STAGEGATE_TREES: String(o.trees),
    STAGEGATE_ATTEMPT: String(o.attempt),
    STAGEGATE_TIMEOUT: String(o.timeoutS),
    STAGEGATE_RUN: run,
    STAGEGATE_ABORT_NOTE: note,
    ...extra,
  };
}

/** The exit code a wrapper passes on for a child's exit: its code, or 128 + the signal that killed it. */
export const exitCode = (code: number | null, signal: NodeJS.Signals | null): number =>
  code ?? 128 + (signal ? constants.signals[signal] : 0);

export interface CriuExit {
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** the exit code a wrapper passes on (128 + signal when killed) */
  rc: number;
  /** why it failed, in words ('' when it did not) */
  why: string;
}

/**
 * Runs `criu VERB --action-script HOOK ARGS...`. The hook is registered
 * first, so it runs last at each stage (criu runs action scripts in reverse
 * order of registration): a tree counts as having reached a stage only once
 * the user's own scripts for that stage have finished. `started` sees criu's
 * pid as soon as it runs.
 */
export async function runCriu(
  criu: string,
  verb: 'dump' | 'restore',
  criuArgs: string[],
  env: NodeJS.ProcessEnv,
  started: (pid: number) => void = () => {},
): Promise<CriuExit> {
  const child = spawn(criu, [verb, '--action-script', hookPath(), ...criuArgs], { env, stdio: 'inherit' });
  if (child.pid) started(child.pid);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((res, rej) => {
    child.once('error', rej);
    child.once('exit', (c, s) => res([c, s]));
  });
  const rc = exitCode(code, signal);
  const why = rc === 0 ? '' : signal ? `criu killed by ${signal}` : `criu exited with ${code}`;
  return { pid: child.pid ?? 0, code, signal, rc, why };
}
