/** Absolute paths of the artefacts the setup step builds. */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { CriuError, UsageError } from './errors';

/** The checkout root, found from this file whether it runs from src/ (tsx) or build/js/ (compiled). */
export const projectRoot = (() => {
  let dir = __dirname;
  while (!existsSync(resolve(dir, 'proto/stagegate.proto'))) {
    const up = resolve(dir, '..');
    if (up === dir) throw new UsageError(`cannot find the stagegate checkout above ${__dirname}`);
    dir = up;
  }
  return dir;
})();

export function hookPath(): string {
  const p = resolve(projectRoot, 'build/stagegate-hook');
  if (!existsSync(p)) throw new UsageError(`hook not built at ${p}: run 'npm run setup'`);
  return p;
}

/** STAGEGATE_CRIU if set, else the criu chosen by scripts/install-criu.sh. */
export function criuPath(): string {
  const p = process.env.STAGEGATE_CRIU || resolve(projectRoot, '.criu/bin/criu');
  if (!existsSync(p)) throw new CriuError(`criu not found at ${p}: run 'npm run setup' or set STAGEGATE_CRIU`);
  return p;
}
