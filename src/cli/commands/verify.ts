/** `stagegate verify`: checks a restored tree against its images now. */
import { UsageError } from '../../errors';
import { type Command, bool, flag, int } from '../command';

export const verify: Command = {
  name: 'verify',
  summary: "check a restored tree's shared mappings against its images now",
  help: `usage: stagegate verify --images DIR --init-pid PID [--pages]

Checks, now, that every shared buffer object of the tree restored from DIR
(rooted at host pid PID) is mapped in its restored tasks exactly as in the
images, backed by one object, with the same bytes. Exits 1 on any mismatch.

  --pages      also compare the sampled pages with the checkpoint's copy
               (shared anonymous memory, memfd, SysV shm)`,
  options: { images: { type: 'string' }, 'init-pid': { type: 'string' }, pages: { type: 'boolean' } },
  async run(a) {
    const dir = flag(a, 'images');
    if (!dir) throw new UsageError('verify: --images is required');
    const pid = int('verify', 'init-pid', flag(a, 'init-pid'), 0, 1, 4_194_304);
    if (!pid) throw new UsageError('verify: --init-pid is required');
    const { verifyTree } = await import('../verify');
    const r = await verifyTree(dir, pid, 'tree', bool(a, 'pages'));
    process.stdout.write(r.lines.join('\n') + (r.lines.length ? '\n' : 'no shared buffer objects\n'));
    return r.ok ? 0 : 1;
  },
};
