/** Tells whether a command started Node.js (the C paths of `stagegate restore` must not). */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** An environment in which any Node.js start appends its command line to `mark`. */
export function nodeMarked(dir: string): { env: NodeJS.ProcessEnv; mark: string } {
  const mark = join(dir, 'node-started');
  const probe = join(dir, 'node-probe.cjs');
  writeFileSync(probe, `require('fs').appendFileSync(${JSON.stringify(mark)}, process.argv.join(' ') + '\\n');\n`);
  return { env: { ...process.env, NODE_OPTIONS: `--require ${probe}` }, mark };
}
