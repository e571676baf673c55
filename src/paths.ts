/** Absolute paths of the artefacts the setup step builds. */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { CriuError, StagegateError, ErrorCodes } from './errors';

export const projectRoot = resolve(__dirname, '..');

export function hookPath(): string {
  const p = resolve(projectRoot, 'build/stagegate-hook');
  if (!existsSync(p)) throw new StagegateError(ErrorCodes.USAGE, `hook not built at ${p}: run 'npm run setup'`);
  return p;
}

/** STAGEGATE_CRIU if set, else the criu chosen by scripts/install-criu.sh. */
export function criuPath(): string {
  const p = process.env.STAGEGATE_CRIU || resolve(projectRoot, '.criu/bin/criu');
  if (!existsSync(p)) throw new CriuError(`criu not found at ${p}: run 'npm run setup' or set STAGEGATE_CRIU`);
  return p;
}
