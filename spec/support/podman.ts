/**
 * Podman for the container tests, as it works on these machines
 * (../shared/notes/containers-and-slurm.md): runc (crun cannot set podman's
 * rlimits here) with cgroupfs, explicit ulimits, criu found on PATH (the one
 * setup installs), and a local image built from Debian packages with
 * mmdebstrap (no registry is reachable: scripts/podman-image.sh).
 * criu's configuration for runc (/etc/criu/runc.conf) and stagegate's
 * containers file are written for the test and put back as they were.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { projectRoot } from '../../src/paths';
import { run } from '../../demo/harness';

export const IMAGE = 'localhost/stagegate-test:bookworm';
const CRIU_BIN = resolve(projectRoot, '.criu/bin');

/** podman with the options that work here, and our criu first on PATH (runc runs `criu swrk`). */
export function podman(args: string[]) {
  return run('podman', ['--runtime', 'runc', '--cgroup-manager', 'cgroupfs', ...args], {
    ...process.env,
    PATH: `${CRIU_BIN}:${process.env.PATH ?? '/usr/bin:/bin'}`,
  });
}

export const RUN_LIMITS = ['--ulimit', 'nproc=4096:4096', '--ulimit', 'nofile=1024:1024'];

/** The test image (scripts/podman-image.sh builds it before the tests; here only if it is gone since). */
export async function ensureImage(): Promise<void> {
  if ((await podman(['image', 'exists', IMAGE])).code === 0) return;
  const r = await run('bash', [resolve(projectRoot, 'scripts/podman-image.sh')]);
  if (r.code !== 0) throw new Error(`building the container image failed: ${r.output.slice(-2000)}`);
}

/** Writes `path` for the test; returns what puts back what was there (or removes it). */
export function replaceFile(path: string, text: string, mode = 0o644): () => void {
  const before = existsSync(path) ? readFileSync(path) : null;
  const madeDir = !existsSync(dirname(path));
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text, { mode });
  return () => {
    if (before) writeFileSync(path, before);
    else rmSync(path, { force: true });
    if (madeDir) rmSync(dirname(path), { recursive: true, force: true });
  };
}
