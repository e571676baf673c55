/** `stagegate dump`: one tree's `criu dump` through the group commit. */
import { defaultHookEndpoint } from '../../transport/endpoints';
import { type Command, TREE_OPTIONS, bool, treeOf } from '../command';

export const dump: Command = {
  name: 'dump',
  summary: "run 'criu dump' of one tree as part of a job checkpointed all together or not at all",
  passthrough: true,
  help: `usage: stagegate dump --session S --tree T --trees N [--endpoint EP] [--attempt A]
                      [--timeout SECONDS] [--full-checksum] -- <criu dump arguments>

Runs 'criu dump <arguments> --action-script <hook>' with STAGEGATE_* set, and
exits with criu's exit code. No tree is frozen before every tree of the
session has started its dump; every tree waits, frozen, after writing its
images until all have written theirs; then all are committed together (criu
kills the trees, or with --leave-running resumes them all). If any tree's
dump fails, is killed, or the coordinator is gone, every tree is rolled back:
criu resumes it and the job goes on as if nothing happened.

Once committed, a commit record (stagegate-commit.json) is written into the
images directory: 'stagegate check' verifies a set, 'stagegate restore --set'
restores one.

  --session S      the job's session; [A-Za-z0-9._:-]{1,128} (STAGEGATE_SESSION)
  --tree T         this tree's name, unique within the session (STAGEGATE_TREE;
                   under a launcher: rank$PMI_RANK or rank$SLURM_PROCID)
  --trees N        number of trees in the job (STAGEGATE_TREES; under a
                   launcher: $PMI_SIZE or $SLURM_NTASKS)
  --endpoint EP    coordinator hook endpoint (STAGEGATE_ENDPOINT; default ${defaultHookEndpoint()})
  --attempt A      checkpoint attempt, from 1; a new checkpoint of the same job
                   takes A+1 (STAGEGATE_ATTEMPT; default 1)
  --timeout S      how long a hook waits at a barrier before rolling back
                   (STAGEGATE_TIMEOUT; default 60)
  --full-checksum  hash the page images whole in the commit record (default:
                   their size and both ends; metadata images are always whole)`,
  options: {
    ...TREE_OPTIONS,
    'full-checksum': { type: 'boolean' },
  },
  async run(a) {
    const { dump: run } = await import('../../criu/dump');
    return run({
      ...treeOf('dump', a),
      checksum: bool(a, 'full-checksum') ? 'full' : 'sampled',
      criuArgs: a.rest,
    });
  },
};
