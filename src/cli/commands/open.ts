/** `stagegate open`: opens a session before any tree starts. */
import { UsageError } from '../../errors';
import { defaultHookEndpoint } from '../../transport/endpoints';
import { type Command, activatorOf, flag, holdAtOf, int, name, seconds } from '../command';

export const open: Command = {
  name: 'open',
  summary: 'open a session explicitly (tree count, deadline)',
  help: `usage: stagegate open --session S --trees N [--attempt A] [--deadline SECONDS]
                      [--activator verify|none|kfd|exec:CMD] [--manifest FILE]
                      [--hold-at pre-restore|none] [--endpoint EP]

Opens a session before any tree starts; otherwise the first event opens it.

  --deadline S     the session's deadline (default: the daemon's serve --deadline)
  --endpoint EP    coordinator hook endpoint (STAGEGATE_ENDPOINT; default ${defaultHookEndpoint()})
  --hold-at H      pre-restore: an arrival barrier; no tree restores anything
                   until every tree's criu has started, so a tree that never
                   comes aborts the session with nothing restored (one more
                   round trip per tree); none: no barrier (default: the daemon's)

  --manifest FILE  JSON declaring BOs the images do not show (e.g. device memory):
                   {"bos": [{"id": "gpu0", "mappers": [{"tree": "rank0", "pid": 1,
                     "start": "0x7f0000000000", "size": 2097152, "prot": "rw-"}, ...]}]}
                   pid is the task's pid in the checkpoint.`,
  options: {
    session: { type: 'string' },
    trees: { type: 'string' },
    attempt: { type: 'string' },
    deadline: { type: 'string' },
    endpoint: { type: 'string' },
    activator: { type: 'string' },
    manifest: { type: 'string' },
    'hold-at': { type: 'string' },
  },
  async run(a) {
    const trees = flag(a, 'trees');
    if (trees === undefined) throw new UsageError('open: --trees is required');
    const deadline = flag(a, 'deadline');
    const manifest = flag(a, 'manifest');
    const { openSession } = await import('../../transport/client');
    const verdict = await openSession(flag(a, 'endpoint', 'STAGEGATE_ENDPOINT') ?? defaultHookEndpoint(), {
      session: name('open', 'session', flag(a, 'session')),
      expectedTrees: int('open', 'trees', trees, 1, 1, 65536),
      attempt: int('open', 'attempt', flag(a, 'attempt'), 1, 1, 1_000_000),
      deadlineMs: deadline === undefined ? 0 : Math.round(seconds('open', 'deadline', deadline, 60) * 1000),
      activator: activatorOf('open', flag(a, 'activator')) || undefined,
      holdAt: holdAtOf('open', flag(a, 'hold-at')) || undefined,
      manifest: manifest === undefined ? [] : (await import('../manifest')).readManifest(manifest),
    });
    if (!verdict.proceed) {
      process.stderr.write(`stagegate open: refused [${verdict.code}] ${verdict.reason}\n`);
      return 1;
    }
    return 0;
  },
};
