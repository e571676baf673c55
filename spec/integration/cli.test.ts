/** The `stagegate` command line as a user runs it (bin/stagegate). */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { Dealer } from 'zeromq';
import { type Socket, connect } from 'node:net';
import { isAbsolute, join } from 'node:path';
import { Daemon, exited, run, sleep, STAGEGATE } from '../../demo/harness';
import { hookEnv, runHook } from '../support/hook';
import winston from 'winston';
import { Coordinator } from '../../src/coordinator';
import { COMMANDS } from '../../src/cli/commands';

const sg = (...args: string[]) => run(STAGEGATE, args);

describe('stagegate CLI', () => {
  it('has --help for the program and every command', async () => {
    for (const args of [
      ['--help'],
      ['serve', '--help'],
      ['restore', '--help'],
      ['open', '--help'],
      ['hook-path', '--help'],
      ['criu-path', '--help'],
    ]) {
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

  it("refuses a client-chosen exec activator (it would run as the daemon's user); one the operator allowed is accepted", async () => {
    const dir = mkdtempSync('/tmp/sg-cli-exec-');
    const pwned = `${dir}/pwned`;
    const allowed = 'exec:true';
    const d = await Daemon.start(dir, 30, 'verify', '', ['--allow-activator', allowed]);
    try {
      const r = await sg('open', '--session', 'x', '--trees', '1', '--activator', `exec:touch ${pwned}`, '--endpoint', d.endpoint);
      assert.equal(r.code, 1);
      assert.match(r.output, /refused \[E_FORBIDDEN\] activator exec:touch .* is not allowed by this coordinator/);
      const st = await sg('status', '--json', '--endpoint', d.endpoint);
      assert.equal(JSON.parse(st.output).sessions.length, 0, 'no session was opened');
      assert.ok(!existsSync(pwned));
      assert.equal((await sg('open', '--session', 'y', '--trees', '1', '--activator', allowed, '--endpoint', d.endpoint)).code, 0);
    } finally {
      await d.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses bad usage with a specific message and exit code 64', async () => {
    const cases: [string[], RegExp][] = [
      [['frobnicate'], /unknown command 'frobnicate'/],
      [['serve', '--log-level', 'verbose'], /log level 'verbose' is not one of error, warn, info, debug/],
      [['restore', '--session', 's', '--tree', 't', '--trees', '2', '--timeout', '100000'], /--timeout must be seconds in \(0, 86400\]/],
      [['keygen', '--out', '/nonexistent-dir/k'], /cannot write \/nonexistent-dir\/k.secret: ENOENT/],
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

  it('gives every flag one name and honours its environment variable the same way in every command', async () => {
    const env = (vars: Record<string, string>) =>
      run(STAGEGATE, ['restore', '--session', 's', '--tree', 't', '--trees', '2'], { ...process.env, ...vars });
    // restore used to ignore STAGEGATE_TIMEOUT (its own default won): the variable is read now, and checked
    const timeout = await env({ STAGEGATE_TIMEOUT: '100000' });
    assert.equal(timeout.code, 64, timeout.output);
    assert.match(timeout.output, /restore: --timeout must be seconds in \(0, 86400\], got '100000'/);
    const attempt = await env({ STAGEGATE_ATTEMPT: '0' });
    assert.match(attempt.output, /restore: --attempt must be an integer in 1..1000000, got '0'/);
    // the flag wins over the variable
    const both = await run(STAGEGATE, ['restore', '--session', 's', '--tree', 't', '--trees', '2', '--timeout', '100001'], {
      ...process.env,
      STAGEGATE_TIMEOUT: '5',
    });
    assert.match(both.output, /got '100001'/);
    // serve's session deadline is --deadline, as in open; --timeout stays as its old name
    for (const flag of ['--deadline', '--timeout']) {
      const r = await sg('serve', flag, '0');
      assert.equal(r.code, 64);
      assert.match(r.output, new RegExp(`serve: ${flag} must be seconds`));
    }
    const twice = await sg('serve', '--deadline', '5', '--timeout', '5');
    assert.match(twice.output, /give --deadline \(or its old name --timeout\), not both/);
    // every command's help sits with its options: each option it takes is described
    for (const c of COMMANDS) {
      const help = (await sg(c.name, '--help')).output;
      for (const opt of Object.keys(c.options)) assert.match(help, new RegExp(`--${opt}\\b`), `${c.name} --${opt}`);
    }
  });

  it('keygen never overwrites a key nor writes through a symlink; serve refuses a public key as its secret', async () => {
    const dir = mkdtempSync('/tmp/sg-keygen-');
    try {
      assert.equal((await sg('keygen', '--out', join(dir, 'k'))).code, 0);
      const before = readFileSync(join(dir, 'k.secret'), 'utf8');
      const again = await sg('keygen', '--out', join(dir, 'k'));
      assert.equal(again.code, 64);
      assert.match(again.output, /k.secret exists: keygen never overwrites a key/);
      assert.equal(readFileSync(join(dir, 'k.secret'), 'utf8'), before);
      writeFileSync(join(dir, 'victim'), 'precious');
      symlinkSync(join(dir, 'victim'), join(dir, 'trap.secret'));
      assert.equal((await sg('keygen', '--out', join(dir, 'trap'))).code, 64);
      assert.equal(readFileSync(join(dir, 'victim'), 'utf8'), 'precious');
      writeFileSync(join(dir, 'allow'), `${readFileSync(join(dir, 'k.public'), 'utf8')}`);
      const pub = await sg(
        'serve',
        '--listen',
        'tcp://127.0.0.1:1',
        '--curve-secret',
        join(dir, 'k.public'),
        '--allow',
        join(dir, 'allow'),
      );
      assert.equal(pub.code, 64);
      assert.match(pub.output, /is a public key: --curve-secret takes the .secret file/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reports a malformed endpoint as an error, not a crash', async () => {
    const r = await sg('watch', '--events', 'foo://bar');
    assert.equal(r.code, 1);
    assert.match(r.output, /\[E_ENDPOINT\] endpoint 'foo:\/\/bar' is neither ipc:\/\/PATH nor tcp:\/\/HOST:PORT/);
    assert.doesNotMatch(r.output, /\n\s+at /, 'no stack trace');
    const v = await sg('verify', '--images', '/nonexistent', '--init-pid', '1');
    assert.equal(v.code, 1);
    assert.match(v.output, /\[E_IMAGE\] \/nonexistent: cannot open checkpoint directory: ENOENT/);
    assert.doesNotMatch(v.output, /\n\s+at /, 'no stack trace');
    const dir = mkdtempSync('/tmp/sg-nobody-');
    try {
      const none = await sg('status', '--endpoint', `ipc://${dir}/hooks.sock`);
      assert.equal(none.code, 1);
      assert.match(none.output, /no coordinator listens at ipc:\/\/.*hooks.sock: .* does not exist \(is stagegate serve running\?\)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('logs at most 10 unaddressable rejected frames a second, then how many it did not log', async () => {
    const dir = mkdtempSync('/tmp/sg-ratelimit-');
    try {
      const d = await Daemon.start(dir, 30, 'none');
      const dealer = new Dealer({ linger: 0 });
      dealer.connect(d.endpoint);
      for (let i = 0; i < 300; i++) await dealer.send(Buffer.from([0xff, 0xff, i & 0xff]));
      await sleep(1100);
      await dealer.send(Buffer.from([0xff])); // the next second reports the last one
      await sleep(300);
      dealer.close();
      await d.stop();
      const rejected = d.logs().filter((l) => l.includes('"message":"event-rejected"')).length;
      assert.ok(rejected >= 1 && rejected <= 30, `${rejected} lines for 301 malformed frames`);
      assert.ok(d.logs().some((l) => /\d+ more rejected frame\(s\) in the last second, not logged one by one/.test(l)));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('serve refuses an endpoint it cannot use, with a clear error', async () => {
    const r = await sg('serve', '--listen', 'ipc://relative/path.sock');
    assert.equal(r.code, 1);
    assert.match(r.output, /\[E_ENDPOINT\] IPC endpoint 'ipc:\/\/relative\/path.sock' must be an absolute path/);
  });

  it('serve never changes a directory it did not make: a shared one is refused as it is, a new one is made 0700', async () => {
    const dir = mkdtempSync('/tmp/sg-shared-');
    try {
      chmodSync(dir, 0o1777); // like /tmp
      const r = await sg('serve', '--listen', `ipc://${dir}/hooks.sock`, '--events', `ipc://${dir}/events.sock`);
      assert.equal(r.code, 1);
      assert.match(r.output, /IPC directory .* is accessible to others \(mode 1777\)/);
      assert.equal(statSync(dir).mode & 0o7777, 0o1777, 'the shared directory is left as it was');
      const fresh = join(dir, 'fresh');
      const c = await Coordinator.start({
        listen: [`ipc://${fresh}/h.sock`],
        events: [`ipc://${fresh}/e.sock`],
        deadlineMs: 1000,
        logger: winston.createLogger({ silent: true }),
      });
      c.close();
      assert.equal(statSync(fresh).mode & 0o777, 0o700);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('SIGTERM stops the daemon at once, telling waiting hooks (no journal); a new daemon can take the endpoint right away', async () => {
    const dir = mkdtempSync('/tmp/sg-term-');
    try {
      const d = await Daemon.start(dir, 7 * 24 * 3600, 'none');
      const hook = runHook(
        hookEnv(d.endpoint, 'post-restore', {
          STAGEGATE_SESSION: 'term',
          STAGEGATE_TREES: '2',
          STAGEGATE_TIMEOUT: '60',
          CRTOOLS_INIT_PID: '999',
        }),
      );
      for (let i = 0; i < 100 && !d.messages.some((m) => 'event' in m && m.event.session === 'term'); i++) await sleep(20);
      const started = Date.now();
      d.child.kill('SIGTERM');
      const r = await hook;
      assert.equal(r.code, 1);
      assert.match(
        r.stderr,
        /\[E_SHUTDOWN\] the coordinator shut down and keeps no journal: session term attempt 1 is lost; restore the job again with --attempt 2/,
      );
      await exited(d.child);
      assert.ok(Date.now() - started < 3000, `the daemon took ${Date.now() - started} ms to stop`);
      await d.stop(); // its subscriber
      const again = await Daemon.start(dir, 30, 'none');
      await again.stop();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('says at start how many connections its open-file limit allows, and warns when that is few', async () => {
    const dir = mkdtempSync('/tmp/sg-nofile-');
    try {
      const low = await Daemon.start(dir, 30, 'none', '-low', [], process.env, ['prlimit', '--nofile=1024:1024']);
      await low.stop();
      const line = JSON.parse(low.logs().find((l) => l.includes('open-file limit'))!);
      assert.equal(line.level, 'warn');
      assert.match(
        line.message,
        /^open-file limit 1024: at most 384 connections \(hooks, clients, subscribers\) at once; beyond that new ones wait \(raise the limit/,
      );
      assert.equal(line.maxConnections, 384);
      assert.ok(!low.logs().some((l) => l.includes('is more than the open-file limit')));
      // a bound the limit cannot back is said so
      const over = await Daemon.start(dir, 30, 'none', '-over', ['--max-connections', '5000'], process.env, [
        'prlimit',
        '--nofile=1024:1024',
      ]);
      await over.stop();
      assert.ok(
        over.logs().some((l) => /serve --max-connections 5000 is more than the open-file limit 1024 can hold/.test(l)),
        over.logs().join('\n'),
      );
      const normal = await Daemon.start(dir, 30, 'none', '-normal');
      await normal.stop();
      const soft = Number((await run('sh', ['-c', 'ulimit -Hn'])).output.trim());
      assert.match(
        normal.logs().find((l) => l.includes('open-file limit'))!,
        new RegExp(`open-file limit (${soft}|\\d{5,})`),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('survives a flood of connections past its open-file limit: refuses new ones at its bound, then serves again', async () => {
    const dir = mkdtempSync('/tmp/sg-flood-');
    const socks: Socket[] = [];
    let d: Daemon | undefined;
    try {
      // libzmq aborts the process (exit 134) when an IPC accept fails with EMFILE. No event
      // subscriber of the harness: it would hold one of the 384 connections the flood is counted against.
      d = await Daemon.start(dir, 30, 'none', '', [], process.env, ['prlimit', '--nofile=1024:1024'], false);
      const path = d.endpoint.slice('ipc://'.length);
      for (let wave = 0; wave < 3; wave++) {
        for (let i = 0; i < 1100; i++) socks.push(connect(path).on('error', () => {}));
        await sleep(300);
      }
      await sleep(1000);
      assert.equal(d.child.exitCode, null, `daemon died: ${d.logs().slice(-3).join('\n')}`);
      const held = socks.filter((s) => !s.destroyed && s.readyState === 'open').length;
      assert.ok(held >= 384 && held < 1024 - 64, `connections held: ${held}`);
      for (const s of socks.splice(0)) s.destroy();
      await sleep(500);
      const st = await sg('status', '--endpoint', d.endpoint);
      assert.equal(st.code, 0, st.output);
      await d.stop();
      const logs = d.logs().map((l) => JSON.parse(l));
      assert.ok(
        logs.some(
          (l) =>
            l.level === 'warn' && /connections held, the bound \(serve --max-connections 384\): refusing new connections/.test(l.message),
        ),
      );
      assert.ok(logs.some((l) => /accepting new connections again/.test(l.message)));
    } finally {
      for (const s of socks) s.destroy();
      await d?.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('at its connection bound, makes new clients wait (not fail) and answers them once connections close', async () => {
    const dir = mkdtempSync('/tmp/sg-bound-');
    const socks: Socket[] = [];
    let d: Daemon | undefined;
    try {
      d = await Daemon.start(dir, 30, 'none', '', ['--max-connections', '8']);
      const path = d.endpoint.slice('ipc://'.length);
      while (existsSync(path) && socks.length < 16) {
        socks.push(connect(path).on('error', () => {}));
        await sleep(50);
      }
      assert.ok(!existsSync(path), 'the hook socket is hidden at the bound');
      const status = run(STAGEGATE, ['status', '--endpoint', d.endpoint]);
      const early = await Promise.race([status.then(() => 'answered'), sleep(800).then(() => 'waiting')]);
      assert.equal(early, 'waiting');
      for (const s of socks.splice(0)) s.destroy();
      const st = await status;
      assert.equal(st.code, 0, st.output);
      assert.ok(existsSync(path));
      await d.stop();
      assert.ok(!existsSync(path) && !existsSync(join(dir, '.hooks.sock.full')));
    } finally {
      for (const s of socks) s.destroy();
      await d?.stop();
      rmSync(dir, { recursive: true, force: true });
    }
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
