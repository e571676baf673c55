/**
 * What every `stagegate` command is: its options, its help text beside them,
 * and its run. Shared here: strict parsing and the value checks, and the one
 * rule for defaults: the flag, else its environment variable, else the
 * command's default (the same in every command).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from '../errors';
import { defaultHookEndpoint } from '../transport/endpoints';
import { parseActivator, parseHoldAt, validateName } from '../core/validate';
import type { Activator } from '../core/model';
import type { HoldAt } from '../core/actions';

export type Options = NonNullable<ParseArgsConfig['options']>;
export type Values = Record<string, string | boolean | string[] | undefined>;

export interface Command {
  name: string;
  /** one line for `stagegate --help` */
  summary: string;
  /** the whole --help text */
  help: string;
  options: Options;
  /** takes positional arguments (images DIR...) */
  positionals?: boolean;
  /** takes criu's arguments after `--` (restore) */
  passthrough?: boolean;
  run(a: Args): Promise<number>;
}

export interface Args {
  values: Values;
  positionals: string[];
  /** after `--` */
  rest: string[];
}

export function parse(cmd: Command, argv: string[]): Args | 'help' {
  const dash = cmd.passthrough ? argv.indexOf('--') : -1;
  const own = dash < 0 ? argv : argv.slice(0, dash);
  const rest = dash < 0 ? [] : argv.slice(dash + 1);
  let parsed;
  try {
    parsed = parseArgs({
      args: own,
      options: { ...cmd.options, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: !!cmd.positionals,
    });
  } catch (err) {
    throw new UsageError(`${cmd.name}: ${(err as Error).message}`, { cause: err });
  }
  if (parsed.values.help) return 'help';
  return { values: parsed.values, positionals: parsed.positionals, rest };
}

/** A string flag, else its environment variable (when it has one). */
export function flag(a: Args, name: string, env?: string): string | undefined {
  const v = a.values[name];
  if (typeof v === 'string') return v;
  return env ? process.env[env] || undefined : undefined;
}

export const list = (a: Args, name: string): string[] | undefined => a.values[name] as string[] | undefined;
export const bool = (a: Args, name: string): boolean => a.values[name] === true;

export function int(cmd: string, name: string, v: string | undefined, dflt: number, min: number, max: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new UsageError(`${cmd}: --${name} must be an integer in ${min}..${max}, got '${v}'`);
  return n;
}

export function seconds(cmd: string, name: string, v: string | undefined, dflt: number, max = 7 * 86400): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || n > max) throw new UsageError(`${cmd}: --${name} must be seconds in (0, ${max}], got '${v}'`);
  return n;
}

export function name(cmd: string, what: string, v: string | undefined): string {
  if (v === undefined) throw new UsageError(`${cmd}: --${what} is required`);
  const bad = validateName(what, v);
  if (bad) throw new UsageError(`${cmd}: ${bad}`);
  return v;
}

export function activatorOf(cmd: string, v: string | undefined): Activator | '' {
  if (v === undefined) return '';
  const a = parseActivator(v);
  if (!a) throw new UsageError(`${cmd}: --activator must be verify, none, kfd or exec:<command>, got '${v}'`);
  return a;
}

export function holdAtOf(cmd: string, v: string | undefined): HoldAt | '' {
  if (v === undefined) return '';
  const h = parseHoldAt(v);
  if (!h) throw new UsageError(`${cmd}: --hold-at must be pre-restore or none, got '${v}'`);
  return h;
}

/** The most a hook waits for a verdict (STAGEGATE_TIMEOUT, hooks/stagegate-hook.c). */
export const HOOK_MAX_TIMEOUT_S = 86400;

/** Options every criu wrapper (dump, restore) shares, with their environment variables. */
export const TREE_OPTIONS: Options = {
  session: { type: 'string' },
  tree: { type: 'string' },
  trees: { type: 'string' },
  endpoint: { type: 'string' },
  attempt: { type: 'string' },
  timeout: { type: 'string' },
};

/**
 * One tree of a job, as a criu wrapper is told it: flags, else STAGEGATE_*;
 * under a launcher (one wrapper per rank) the tree and tree count from its
 * environment (PMI_RANK / PMI_SIZE, SLURM_PROCID / SLURM_NTASKS).
 */
export function treeOf(cmd: string, a: Args) {
  const env = process.env;
  const rank = env.PMI_RANK ?? env.SLURM_PROCID;
  const tree = flag(a, 'tree', 'STAGEGATE_TREE') ?? (rank === undefined ? undefined : `rank${rank}`);
  const trees = flag(a, 'trees', 'STAGEGATE_TREES') ?? env.PMI_SIZE ?? env.SLURM_NTASKS;
  if (trees === undefined) throw new UsageError(`${cmd}: --trees is required (or PMI_SIZE / SLURM_NTASKS from a launcher)`);
  return {
    session: name(cmd, 'session', flag(a, 'session', 'STAGEGATE_SESSION')),
    tree: name(cmd, 'tree', tree),
    trees: int(cmd, 'trees', trees, 1, 1, 65536),
    ...runOptions(cmd, a, 1),
  };
}

/** Attempt, hook timeout and endpoint of a criu wrapper (`attempt`: the default attempt). */
export function runOptions(cmd: string, a: Args, attempt: number) {
  return {
    attempt: int(cmd, 'attempt', flag(a, 'attempt', 'STAGEGATE_ATTEMPT'), attempt, 1, 1_000_000),
    timeoutS: seconds(cmd, 'timeout', flag(a, 'timeout', 'STAGEGATE_TIMEOUT'), 60, HOOK_MAX_TIMEOUT_S),
    endpoint: flag(a, 'endpoint', 'STAGEGATE_ENDPOINT') ?? defaultHookEndpoint(),
  };
}

/** Calls `run` with an AbortSignal that SIGINT or SIGTERM aborts (watch, trace). */
export function untilSignalled<T>(run: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const stop = new AbortController();
  process.once('SIGINT', () => stop.abort());
  process.once('SIGTERM', () => stop.abort());
  return run(stop.signal);
}
