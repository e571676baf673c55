/** `stagegate restore`: one tree's `criu restore` through the gate. */
import { UsageError } from '../../errors';
import { defaultHookEndpoint } from '../../transport/endpoints';
import { type Command, HOOK_MAX_TIMEOUT_S, flag, int, name, seconds } from '../command';

export const restore: Command = {
  name: 'restore',
  summary: "run 'criu restore' through the gate for one tree",
  passthrough: true,
  help: `usage: stagegate restore --session S --tree T --trees N [--endpoint EP] [--attempt A]
                         [--timeout SECONDS] -- <criu restore arguments>

Runs 'criu restore <arguments> --action-script <hook>' with STAGEGATE_* set,
and exits with criu's exit code. If criu fails, the session is aborted at once.
Each run is one restore of the tree: the coordinator refuses a second run for
a tree of the same session and attempt, and any new run once the session has
ended (completed or aborted); restore the job again with --attempt A+1 (or a
new session name).

Each option falls back to the hook's environment variable, then to a default.

  --session S    restore session (all trees of one job); [A-Za-z0-9._:-]{1,128}
                 (STAGEGATE_SESSION)
  --tree T       this tree's name, unique within the session (STAGEGATE_TREE;
                 under a launcher: rank$PMI_RANK or rank$SLURM_PROCID)
  --trees N      number of trees in the session (STAGEGATE_TREES; under a
                 launcher: $PMI_SIZE or $SLURM_NTASKS)
  --endpoint EP  coordinator hook endpoint (STAGEGATE_ENDPOINT; default ${defaultHookEndpoint()})
  --attempt A    restore attempt, from 1; bump it to retry after an abort
                 (STAGEGATE_ATTEMPT; default 1)
  --timeout S    how long a gated hook waits for a verdict before aborting
                 (STAGEGATE_TIMEOUT; default 60)`,
  options: {
    session: { type: 'string' },
    tree: { type: 'string' },
    trees: { type: 'string' },
    endpoint: { type: 'string' },
    attempt: { type: 'string' },
    timeout: { type: 'string' },
  },
  async run(a) {
    // under a launcher, one restore per rank: tree and tree count from its environment
    const env = process.env;
    const rank = env.PMI_RANK ?? env.SLURM_PROCID;
    const tree = flag(a, 'tree', 'STAGEGATE_TREE') ?? (rank === undefined ? undefined : `rank${rank}`);
    const trees = flag(a, 'trees', 'STAGEGATE_TREES') ?? env.PMI_SIZE ?? env.SLURM_NTASKS;
    if (trees === undefined) throw new UsageError('restore: --trees is required (or PMI_SIZE / SLURM_NTASKS from a launcher)');
    const { restore: run } = await import('../../criu/restore');
    return run({
      session: name('restore', 'session', flag(a, 'session', 'STAGEGATE_SESSION')),
      tree: name('restore', 'tree', tree),
      trees: int('restore', 'trees', trees, 1, 1, 65536),
      attempt: int('restore', 'attempt', flag(a, 'attempt', 'STAGEGATE_ATTEMPT'), 1, 1, 1_000_000),
      timeoutS: seconds('restore', 'timeout', flag(a, 'timeout', 'STAGEGATE_TIMEOUT'), 60, HOOK_MAX_TIMEOUT_S),
      endpoint: flag(a, 'endpoint', 'STAGEGATE_ENDPOINT') ?? defaultHookEndpoint(),
      criuArgs: a.rest,
    });
  },
};
