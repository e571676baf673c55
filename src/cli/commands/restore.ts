/** `stagegate restore`: one tree's `criu restore` through the gate, or this host's trees of a committed set. */
import { hostname } from 'node:os';
import { UsageError } from '../../errors';
import { defaultHookEndpoint } from '../../transport/endpoints';
import { type Args, type Command, TREE_OPTIONS, bool, runOptions, treeOf } from '../command';

export const restore: Command = {
  name: 'restore',
  summary: "run 'criu restore' through the gate for one tree",
  passthrough: true,
  positionals: true,
  help: `usage: stagegate restore --session S --tree T --trees N [--endpoint EP] [--attempt A]
                         [--timeout SECONDS] -- <criu restore arguments>
       stagegate restore --set [--force] [--any-host] [--endpoint EP] [--attempt A] [--timeout SECONDS]
                         DIR... -- <criu restore arguments>

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
                 (STAGEGATE_TIMEOUT; default 60)

Restoring a set that 'stagegate dump' committed:

  --set          restore the trees whose images directories are given and
                 whose records say they were dumped on this host (give every
                 directory of the set, e.g. on shared storage: all are checked,
                 this host's are restored, the other hosts restore theirs):
                 session, tree names, tree count and attempt come from their
                 commit records, '-D DIR' is added to the criu arguments for
                 each. Refused
                 unless each directory's record verifies, all name one commit
                 and no recorded image file is missing or changed; every tree
                 of the session must restore that same commit.
  --force        restore even so (loudly): names still come from the records
  --any-host     restore every given directory here, whatever host dumped it`,
  options: {
    ...TREE_OPTIONS,
    set: { type: 'boolean' },
    force: { type: 'boolean' },
    'any-host': { type: 'boolean' },
  },
  async run(a) {
    if (bool(a, 'set')) return restoreSet(a);
    if (a.positionals.length)
      throw new UsageError(`restore: unexpected argument ${a.positionals[0]} (images directories are given with --set)`);
    const { restore: run } = await import('../../criu/restore');
    return run({
      ...treeOf('restore', a),
      criuArgs: a.rest,
    });
  },
};

/** restore --set: every given directory's tree, from one committed set. */
async function restoreSet(a: Args): Promise<number> {
  if (a.positionals.length === 0) throw new UsageError('restore: --set needs the images directories to restore');
  for (const f of ['session', 'tree', 'trees'])
    if (a.values[f] !== undefined) throw new UsageError(`restore: --${f} comes from the commit records with --set`);
  const { checkSet } = await import('../../checkpoint/set');
  const set = await checkSet(a.positionals, { cut: false });
  const say = (line: string) => process.stderr.write(`stagegate restore: ${line}\n`);
  const problems = [...set.problems, ...set.dirs.flatMap((d) => d.problems)];
  if (!set.committed) {
    if (!bool(a, 'force')) {
      for (const p of problems) say(p);
      say('refused: this is not a committed set (stagegate check tells more); --force restores it anyway');
      return 1;
    }
    say(`WARNING: --force: restoring a set that is NOT committed: ${problems.join('; ')}`);
    const bare = set.dirs.find((d) => !d.record);
    if (bare)
      throw new UsageError(
        `restore: ${bare.dir} has no readable commit record to take the session and tree from; restore it without --set`,
      );
  }
  // the trees dumped on this host (the set's directories may all be on shared storage)
  const here = hostname();
  const mine = bool(a, 'any-host') ? set.dirs : set.dirs.filter((d) => d.record!.host === here);
  if (mine.length === 0) {
    const hosts = [...new Set(set.dirs.map((d) => d.record!.host))].sort().join(', ');
    throw new UsageError(
      `restore: none of these trees was dumped on this host (${here}; they were on ${hosts}); --any-host restores them here anyway`,
    );
  }
  if (mine.length < set.dirs.length) say(`restoring the ${mine.length} tree(s) dumped on ${here}; the other hosts restore theirs`);
  // each tree through criu swrk (no process per stage) unless told not to
  const { restore: viaHook, restoreOverRpc } = await import('../../criu/restore');
  const run = process.env.STAGEGATE_NO_SWRK ? viaHook : restoreOverRpc;
  const base = runOptions('restore', a, set.dirs[0]!.record!.attempt);
  const { readTcpEnds } = await import('../../checkpoint/tcp-cut');
  const { lockConnections } = await import('../../criu/tcp-lock');
  const { readdirSync } = await import('node:fs');
  // trees without a netns of their own: hold their connections until every tree is back (criu/tcp-lock.ts)
  const ends = mine.flatMap(({ dir, tree }) => (readdirSync(dir).some((f) => /^netns-/.test(f)) ? [] : readTcpEnds(dir, tree)));
  const unlock = lockConnections(ends);
  try {
    const rcs = await Promise.all(
      mine.map(({ dir, record }) =>
        run({
          ...base,
          session: record!.session,
          tree: record!.tree,
          trees: record!.members.length,
          commit: record!.commit,
          criuArgs: [...a.rest, '-D', dir],
        }),
      ),
    );
    return Math.max(...rcs);
  } finally {
    unlock();
  }
}
