/** `stagegate hook-path` and `stagegate criu-path`: what to pass to criu by hand. */
import { criuPath, hookPath } from '../../paths';
import type { Command } from '../command';

const printing = (name: string, summary: string, help: string, get: () => string): Command => ({
  name,
  summary,
  help,
  options: {},
  async run() {
    process.stdout.write(get() + '\n');
    return 0;
  },
});

export const hookPathCmd = printing(
  'hook-path',
  'print the absolute path of the action-script hook',
  'usage: stagegate hook-path\n\nPrints the absolute path of the hook to pass to criu --action-script.',
  hookPath,
);

export const criuPathCmd = printing(
  'criu-path',
  'print the absolute path of the criu used',
  'usage: stagegate criu-path\n\nPrints the absolute path of the criu stagegate runs (STAGEGATE_CRIU overrides).',
  criuPath,
);
