/**
 * The benchmark's Node.js floor (bench/floor-daemon.ts) against the real
 * hook: it must answer every gate, or section 2's floor rows would measure
 * hooks timing out instead of the least a Node.js coordinator costs.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { exited, startFloorDaemon } from '../../demo/harness';
import { Dealer } from 'zeromq';
import { hookEnv, runHook } from '../support/hook';

let dir: string;
let floor: ChildProcess;
let endpoint: string;

before(async () => {
  dir = mkdtempSync('/tmp/sg-floor-');
  ({ endpoint, child: floor } = await startFloorDaemon(dir));
});
after(async () => {
  floor.kill('SIGTERM');
  await exited(floor);
  rmSync(dir, { recursive: true, force: true });
});

describe('bench floor daemon', () => {
  it('skips an undecodable frame and goes on answering', async () => {
    const dealer = new Dealer({ linger: 2000 });
    try {
      dealer.connect(endpoint);
      await dealer.send(Buffer.from('not a request'));
      await dealer.send(Buffer.alloc(1 << 20, 0xff)); // over the codec's frame bound
      await sleep(200); // delivered (linger keeps them past close, but the hook must come after)
    } finally {
      dealer.close();
    }
    const r = await runHook(hookEnv(endpoint, 'pre-restore', { STAGEGATE_SESSION: 'floor-after-junk' }));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(floor.exitCode, null, 'the floor is still running');
  });

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
