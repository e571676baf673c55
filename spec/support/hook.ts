/** Runs the compiled hook the way criu does: no arguments, stdin closed, a clean environment. */
import { spawn } from 'node:child_process';
import { hookPath } from '../../src/paths';
import { finished } from '../../demo/harness';
import { encodeVerdict } from '../../src/protocol/codec';
import type { StageEvent } from '../../src/core/model';

export interface HookResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  ms: number;
}

/**
 * `parentScript` wraps the hook in a shell that stands in for criu (the hook
 * may signal its parent after aborting a tree); by default the shell exits
 * right after the hook.
 */
export function runHook(env: Record<string, string>, parentScript = '"$SG_HOOK"; rc=$?; exit $rc'): Promise<HookResult> {
  const started = performance.now();
  const child = spawn('sh', ['-c', parentScript], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', SG_HOOK: hookPath(), ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  let ms = 0;
  child.once('exit', () => (ms = performance.now() - started)); // the hook's own time, not its pipes'
  return finished(child).then(({ code, signal }) => ({ code, signal, stderr, ms }));
}

/**
 * The environment criu gives the hook. Each runHook has a parent of its own,
 * so hooks of one simulated criu run share STAGEGATE_RUN (one per session and
 * tree by default, as `stagegate restore` sets it); pass STAGEGATE_RUN: '' to
 * let the hook derive its run from its parent, as under plain criu.
 */
export function hookEnv(endpoint: string, action: string, over: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {
    CRTOOLS_SCRIPT_ACTION: action,
    CRTOOLS_IMAGE_DIR: '/tmp',
    STAGEGATE_ENDPOINT: endpoint,
    STAGEGATE_SESSION: 'hook-test',
    STAGEGATE_TREE: 't1',
    STAGEGATE_TREES: '1',
    STAGEGATE_TIMEOUT: '5',
    ...over,
  };
  env.STAGEGATE_RUN ??= `run-${env.STAGEGATE_SESSION}-${env.STAGEGATE_TREE}`;
  return env;
}

/** A PROCEED verdict frame for `ev`, as a fake coordinator answers every hook. */
export const proceedFor = (ev: Pick<StageEvent, 'session' | 'tree' | 'action' | 'attempt'>): Buffer =>
  Buffer.from(
    encodeVerdict({ session: ev.session, tree: ev.tree, action: ev.action, attempt: ev.attempt, proceed: true, code: '', reason: '' }),
  );
