/**
 * The benchmark's Node.js floor (bench/floor-daemon.ts) against the real
 * hook: it must answer every gate, or section 2's floor rows would measure
 * hooks timing out instead of the least a Node.js coordinator costs.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { exited } from '../../demo/harness';
import { projectRoot } from '../../src/paths';
import { hookEnv, runHook } from '../support/hook';

let dir: string;
let floor: ChildProcess;
let endpoint: string;

before(async () => {
  dir = mkdtempSync('/tmp/sg-floor-');
  endpoint = `ipc://${dir}/floor.sock`;
  floor = spawn('node', ['--import', 'tsx', join(projectRoot, 'bench/floor-daemon.ts'), endpoint], {
    cwd: projectRoot,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  await new Promise<void>((res, rej) => {
    floor.stderr!.on('data', (b: Buffer) => {
      err += b.toString();
      if (err.includes('floor daemon listening')) res();
    });
    floor.once('exit', () => rej(new Error(`floor daemon exited: ${err}`)));
  });
});
after(async () => {
  floor.kill('SIGTERM');
  await exited(floor);
  rmSync(dir, { recursive: true, force: true });
});

describe('bench floor daemon', () => {
  for (const action of ['pre-restore', 'post-restore', 'pre-resume', 'post-setup-namespaces']) {
    it(`lets the real hook through at ${action}`, async () => {
      const r = await runHook(hookEnv(endpoint, action, { STAGEGATE_SESSION: `floor-${action}`, CRTOOLS_INIT_PID: String(process.pid) }));
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, '');
      // answered, not timed out: the hook's timeout is 5 s (its tree, this process, is no child of its criu: not stopped)
      assert.ok(r.ms < 2500, `${action} took ${r.ms} ms`);
    });
  }
});
