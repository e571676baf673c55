/** `stagegate images`: explains checkpoint directories. */
import { UsageError } from '../../errors';
import { type Command, bool } from '../command';

export const images: Command = {
  name: 'images',
  summary: 'explain checkpoint directories: tasks, VMAs, shared buffer objects',
  positionals: true,
  help: `usage: stagegate images [--json] [--all-vmas] DIR...

Reads CRIU checkpoint directories (one per tree; the tree is named after its
directory) and prints each task with its shared mappings, and every shared
buffer object (BO) mapped by two or more tasks with each mapper's address.

  --json       machine-readable output
  --all-vmas   list every VMA, not only the shared ones`,
  options: { json: { type: 'boolean' }, 'all-vmas': { type: 'boolean' } },
  async run(a) {
    if (a.positionals.length === 0) throw new UsageError('images: give at least one checkpoint directory');
    const { describeImages, imagesJson, imagesTable } = await import('../images');
    const d = describeImages(a.positionals);
    process.stdout.write((bool(a, 'json') ? imagesJson(d) : imagesTable(d, bool(a, 'all-vmas'))) + '\n');
    return 0;
  },
};
