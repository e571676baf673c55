/** The `stagegate` command line as a user runs it (bin/stagegate). */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { Daemon, run, STAGEGATE } from '../../demo/harness';

const sg = (...args: string[]) => run(STAGEGATE, args);

describe('stagegate CLI', () => {
  it('has --help for the program and every command', async () => {
    for (const args of [['--help'], ['serve', '--help'], ['restore', '--help'], ['open', '--help'], ['hook-path', '--help'], ['criu-path', '--help']]) {
      const r = await sg(...args);
      assert.equal(r.code, 0, args.join(' '));
      assert.match(r.output, /^usage: stagegate/);
    }
  });

  it('prints absolute paths of the hook and of a criu >= 4.2', async () => {
    const hook = (await sg('hook-path')).output.trim();
    const criu = (await sg('criu-path')).output.trim();
    assert.ok(isAbsolute(hook) && existsSync(hook));
    assert.ok(isAbsolute(criu) && existsSync(criu));
    const v = await run(criu, ['--version']);
    const [, major, minor] = /Version: (\d+)\.(\d+)/.exec(v.output)!;
    assert.ok(Number(major) > 4 || (Number(major) === 4 && Number(minor) >= 2), v.output);
  });

  it('refuses bad usage with a specific message and exit code 64', async () => {
    const cases: [string[], RegExp][] = [
      [['frobnicate'], /unknown command 'frobnicate'/],
      [['restore', '--session', 's', '--tree', 't'], /--trees is required/],
      [['restore', '--session', 'bad name', '--tree', 't', '--trees', '2'], /session "bad name" is not 1-128 characters/],
      [['restore', '--session', 's', '--tree', 't', '--trees', 'many'], /--trees must be an integer in 1..65536, got 'many'/],
      [['restore', '--session', 's', '--tree', 't', '--trees', '2', '--timeout=-1'], /--timeout must be seconds/],
      [['serve', '--bogus'], /Unknown option '--bogus'/],
    ];
    for (const [args, message] of cases) {
      const r = await sg(...args);
      assert.equal(r.code, 64, `${args.join(' ')}: ${r.output}`);
      assert.match(r.output, message);
    }
  });

  it('serve refuses an endpoint it cannot use, with a clear error', async () => {
    const r = await sg('serve', '--listen', 'ipc://relative/path.sock');
    assert.equal(r.code, 1);
    assert.match(r.output, /\[E_ENDPOINT\] IPC endpoint 'ipc:\/\/relative\/path.sock' must be an absolute path/);
  });

  it('lets one daemon own an IPC endpoint: a second one is refused; the socket is removed on shutdown', async () => {
    const dir = mkdtempSync('/tmp/sg-lock-');
    try {
      const d = await Daemon.start(dir, 30, 'none');
      const second = await sg('serve', '--listen', d.endpoint, '--events', `ipc://${dir}/other.sock`);
      assert.equal(second.code, 1);
      assert.match(second.output, /\[E_ENDPOINT\] ipc:\/\/.*hooks.sock is in use by another stagegate daemon/);
      assert.ok(existsSync(`${dir}/hooks.sock`));
      await d.stop();
      assert.ok(!existsSync(`${dir}/hooks.sock`) && !existsSync(`${dir}/events.sock`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
