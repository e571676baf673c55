/**
 * The compiled hook (build/stagegate-hook) against a real coordinator over
 * real ZeroMQ IPC sockets: every CRIU action name, the gates, aborts, a
 * missing coordinator, and malformed or missing environment.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { spawn } from 'node:child_process';
import { Dealer, Router } from 'zeromq';
import { hookPath } from '../../src/paths';
import { CRIU_ACTIONS } from '../../src/core/actions';
import { startCoordinator, until, type TestCoordinator } from '../support/coordinator';
import { hookEnv, proceedFor, runHook } from '../support/hook';
import { decodeRequest, decodeVerdict, encodeVerdict } from '../../src/protocol/codec';
import { STAGEGATE, run } from '../../demo/harness';
import { openSession } from '../../src/transport/client';
import { stagegate } from '../../src/protocol/generated/stagegate';
import { isLive } from '../../src/proc/tree';

let c: TestCoordinator;
before(async () => {
  c = await startCoordinator(5000);
});
after(async () => {
  await c.close();
});

const events = (session: string) => c.messages.flatMap((m) => ('event' in m && m.event.session === session ? [m.event] : []));

describe('hook against a real coordinator', () => {
  it('publishes every CRIU action and returns at once for the ungated ones', async () => {
    // the dump actions belong to a dump session (pre-dump, network-lock and post-dump are its gates: one tree, answered at once)
    const dumpActions = ['pre-dump', 'network-lock', 'post-dump'] as const;
    const others = CRIU_ACTIONS.filter(
      (a) => a !== 'post-restore' && a !== 'pre-resume' && !(dumpActions as readonly string[]).includes(a),
    );
    for (const [session, actions] of [
      ['all-actions', others],
      ['all-dump-actions', dumpActions],
    ] as const) {
      for (const action of actions) {
        const r = await runHook(hookEnv(c.endpoint, action, { STAGEGATE_SESSION: session, CRTOOLS_INIT_PID: '4242' }));
        assert.equal(r.code, 0, `${action}: ${r.stderr}`);
      }
    }
    assert.ok(await until(() => events('all-actions').length + events('all-dump-actions').length === CRIU_ACTIONS.length - 2));
    const seen = [...events('all-actions'), ...events('all-dump-actions')];
    assert.deepEqual(seen.map((e) => e.action).sort(), CRIU_ACTIONS.filter((a) => a !== 'post-restore' && a !== 'pre-resume').sort());
    // published after the post-dump event: wait for it as for the events
    const committed = () =>
      c.messages.some(
        (m) =>
          'decision' in m &&
          m.decision.session === 'all-dump-actions' &&
          m.decision.kind === 'gate-opened' &&
          m.decision.action === 'post-dump',
      );
    assert.ok(await until(committed), 'the one-tree dump session committed');
    const e = seen[0]!;
    assert.equal(e.tree, 't1');
    assert.equal(e.expectedTrees, 1);
    assert.equal(e.attempt, 1);
    assert.equal(e.initPid, 4242);
    assert.equal(e.imageDir, '/tmp');
    assert.ok(e.hookPid > 0 && e.criuPid > 0);
    assert.ok(e.wallNs > 1_700_000_000_000_000_000n && e.monoNs > 0n);
  });

  it('is the static build (no dynamic loader at each action); its full build beside it loads libraries', () => {
    // PT_INTERP names the dynamic loader: the hook criu runs has none, stagegate-hook-full has one
    const interp = (file: string): boolean => {
      const b = readFileSync(file);
      assert.equal(b.readUInt32BE(0), 0x7f454c46, `${file} is ELF`);
      const phoff = Number(b.readBigUInt64LE(0x20));
      const phentsize = b.readUInt16LE(0x36);
      const phnum = b.readUInt16LE(0x38);
      return [...Array(phnum).keys()].some((i) => b.readUInt32LE(phoff + i * phentsize) === 3);
    };
    assert.equal(interp(hookPath()), false);
    assert.equal(interp(`${hookPath()}-full`), true);
  });

  it('speaks ZeroMQ over IPC without libzmq, which it loads only for TCP (CURVE)', async () => {
    // a libzmq that cannot be loaded, found first by the dynamic loader
    const dir = mkdtempSync('/tmp/sg-nozmq-');
    try {
      writeFileSync(join(dir, 'libzmq.so.5'), 'not a library');
      const env = { LD_LIBRARY_PATH: dir, STAGEGATE_SESSION: 'nozmq' };
      const ungated = await runHook(hookEnv(c.endpoint, 'post-setup-namespaces', env));
      assert.equal(ungated.code, 0, ungated.stderr);
      assert.equal(ungated.stderr, '');
      assert.ok(await until(() => events('nozmq').length === 1));
      assert.equal(events('nozmq')[0]!.action, 'post-setup-namespaces');
      // a gated action waits for its verdict over the same plain socket
      const gated = await runHook(hookEnv(c.endpoint, 'pre-restore', { ...env, STAGEGATE_TIMEOUT: '5' }));
      assert.equal(gated.code, 0, gated.stderr);
      assert.ok(await until(() => events('nozmq').length === 2));
      const tcp = await runHook(hookEnv('tcp://127.0.0.1:9', 'pre-restore', { ...env, STAGEGATE_TIMEOUT: '1' }));
      assert.equal(tcp.code, 1);
      assert.match(tcp.stderr, /stagegate-hook\[pre-restore\]: cannot load libzmq: .*libzmq.so.5/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('publishes an action name it does not know verbatim and does not block', async () => {
    const r = await runHook(hookEnv(c.endpoint, 'some-future-action', { STAGEGATE_SESSION: 'future' }));
    assert.equal(r.code, 0, r.stderr);
    assert.ok(await until(() => events('future').length === 1));
    assert.equal(events('future')[0]!.action, 'unknown');
    assert.equal(events('future')[0]!.actionName, 'some-future-action');
    // the names come from the proto's enum (PRE_RESTORE): only criu's own spelling is that action, and
    // restore-failed (the wrapper's, not criu's) is not taken from the environment
    for (const name of ['PRE-RESTORE', 'post_restore', 'restore-failed']) {
      const odd = await runHook(hookEnv(c.endpoint, name, { STAGEGATE_SESSION: 'odd' }));
      assert.equal(odd.code, 0, odd.stderr);
    }
    assert.ok(await until(() => events('odd').length === 3));
    assert.deepEqual(
      events('odd').map((e) => [e.actionName, e.action]),
      [
        ['PRE-RESTORE', 'unknown'],
        ['post_restore', 'unknown'],
        ['restore-failed', 'unknown'],
      ],
    );
  });

  it('names its run after its criu when STAGEGATE_RUN is unset: one criu is one run, another criu is refused', async () => {
    const env = hookEnv(c.endpoint, 'pre-restore', { STAGEGATE_SESSION: 'derived', STAGEGATE_RUN: '', CRTOOLS_INIT_PID: '999' });
    // one parent standing in for one criu runs the hook at two stages
    const same = await runHook(env, '"$SG_HOOK" || exit 1; CRTOOLS_SCRIPT_ACTION=post-restore "$SG_HOOK"; rc=$?; exit $rc');
    assert.equal(same.code, 0, same.stderr);
    const other = await runHook({ ...env, CRTOOLS_SCRIPT_ACTION: 'post-restore' });
    assert.equal(other.code, 1);
    assert.match(other.stderr, /\[E_RUN_CONFLICT\] tree t1 of session derived attempt 1 is already being restored by run criu-/);
    const runs = events('derived').map((e) => e.run);
    assert.equal(runs.length, 3);
    assert.match(runs[0]!, /^criu-[0-9a-f-]{36}-\d+-\d+$/);
    assert.equal(runs[1], runs[0]);
    assert.notEqual(runs[2], runs[0]);
  });

  it('blocks post-restore until every tree of the session has arrived', async () => {
    const env = (tree: string) =>
      hookEnv(c.endpoint, 'post-restore', {
        STAGEGATE_SESSION: 'gate2',
        STAGEGATE_TREE: tree,
        STAGEGATE_TREES: '2',
        CRTOOLS_INIT_PID: '999',
      });
    let firstDone = false;
    const first = runHook(env('a')).then((r) => ((firstDone = true), r));
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(firstDone, false, 'the first tree must wait for the second');
    const second = await runHook(env('b'));
    const r1 = await first;
    assert.equal(r1.code, 0, r1.stderr);
    assert.equal(second.code, 0, second.stderr);
    assert.ok(r1.ms >= 400);
  });

  it('a hook killed while it waits is noticed by its silence: the session aborts and the other hooks with it', async () => {
    const env = (tree: string) =>
      hookEnv(c.endpoint, 'post-restore', {
        STAGEGATE_SESSION: 'lost',
        STAGEGATE_TREE: tree,
        STAGEGATE_TREES: '3',
        STAGEGATE_TIMEOUT: '30',
        CRTOOLS_INIT_PID: '999',
      });
    const doomed = spawn(hookPath(), [], { env: { PATH: process.env.PATH!, ...env('a') }, stdio: 'ignore' });
    const survivor = runHook(env('b'));
    const aborted = () => c.messages.find((m) => 'decision' in m && m.decision.session === 'lost' && m.decision.kind === 'session-aborted');
    await new Promise((r) => setTimeout(r, 1500)); // both wait, and have re-sent once
    doomed.kill('SIGKILL');
    const killedAt = Date.now();
    const r = await survivor;
    const after = Date.now() - killedAt;
    assert.equal(r.code, 1, 'the surviving hook aborts');
    assert.match(r.stderr, /\[E_HOOK_LOST\] the hook of tree a went silent while it waited at post-restore/);
    assert.ok(after < 10_000, `noticed ${after} ms after the kill (lease: 3 re-send periods of 1 s)`);
    // published in the step that sent the verdicts: it may arrive after the hook is back
    assert.ok(await until(() => aborted() !== undefined), 'the session-aborted decision is published');
    const d = aborted();
    assert.ok(d && 'decision' in d && d.decision.kind === 'session-aborted' && d.decision.code === 'E_HOOK_LOST');
  });

  it("exits non-zero with the coordinator's reason when the session aborts", async () => {
    // explicitly opened with a 300 ms deadline; 1 of 3 trees arrives
    const opened = await openSession(c.endpoint, { session: 'aborts', expectedTrees: 3, attempt: 1, deadlineMs: 300 });
    assert.equal(opened.proceed, true);
    const r = await runHook(
      hookEnv(c.endpoint, 'post-restore', { STAGEGATE_SESSION: 'aborts', STAGEGATE_TREES: '3', CRTOOLS_INIT_PID: '999' }),
    );
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /coordinator aborted session aborts attempt 1 at tree t1: \[E_DEADLINE\] deadline of 300 ms passed at the post-restore gate; still missing: 2 tree\(s\) not seen yet/,
    );
  });

  it('at pre-resume, an abort kills the whole restored tree before it runs', async () => {
    const dir = mkdtempSync('/tmp/sg-hook-');
    try {
      // The shell stands in for criu: the restored root must be its child.
      const script = `
        sh -c 'sleep 100 & echo $! > ${dir}/c1; sleep 100 & echo $! > ${dir}/c2; wait' &
        root=$!; echo $root > ${dir}/root
        while [ ! -s ${dir}/c2 ]; do sleep 0.01; done
        CRTOOLS_INIT_PID=$root "$SG_HOOK"; rc=$?; exit $rc`;
      const r = await runHook(hookEnv(c.endpoint, 'pre-resume', { STAGEGATE_SESSION: 'kill', STAGEGATE_TREES: '1' }), script);
      // pre-resume before post-restore contradicts the session: ABORT
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /E_CONTRADICTION/);
      assert.match(r.stderr, /killed 3 task\(s\) of the restored tree/);
      for (const f of ['root', 'c1', 'c2']) {
        const pid = readFileSync(join(dir, f), 'utf8').trim();
        assert.ok(await until(() => !isLive(pid)), `task ${f} (${pid}) still alive`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('kills a criu that is still waiting on the killed tree after the grace period', async () => {
    const script = `
      sleep 100 >/dev/null 2>&1 & root=$!
      CRTOOLS_INIT_PID=$root "$SG_HOOK"
      exec sleep 30 >/dev/null 2>&1`; // criu stuck in wait4 on the dead tree (exec: the watchdog's kill ends it)
    const r = await runHook(hookEnv(c.endpoint, 'pre-resume', { STAGEGATE_SESSION: 'stuck', STAGEGATE_TREES: '1' }), script);
    assert.equal(r.signal, 'SIGKILL');
    assert.ok(r.ms >= 900 && r.ms < 10_000, `took ${r.ms} ms`);
  });

  it('never kills a process that is not a child of its criu', async () => {
    const r = await runHook(
      hookEnv(c.endpoint, 'pre-resume', { STAGEGATE_SESSION: 'notmine', STAGEGATE_TREES: '1', CRTOOLS_INIT_PID: String(process.pid) }),
    );
    assert.equal(r.code, 1);
    assert.match(r.stderr, /is not a child of criu \d+: not killing it/);
  });

  it("never kills a sibling of its criu that criu did not make (started before it): only runc's restore-as-sibling roots count", async () => {
    // a process of the same parent as the hook's "criu", started before it
    const victim = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      await new Promise((r) => setTimeout(r, 50));
      const r = await runHook(
        hookEnv(c.endpoint, 'pre-resume', {
          STAGEGATE_SESSION: 'older-sibling',
          STAGEGATE_TREES: '1',
          CRTOOLS_INIT_PID: String(victim.pid),
        }),
      );
      assert.equal(r.code, 1);
      assert.match(r.stderr, /is not a child of criu \d+: not killing it/);
      assert.ok(isLive(victim.pid!), 'the older sibling still runs');
    } finally {
      victim.kill('SIGKILL');
      await new Promise((r) => victim.once('exit', r));
    }
  });

  it('answers a frame of an unknown protocol version with a clear ABORT, and keeps serving', async () => {
    const d = new Dealer({ receiveTimeout: 2000, linger: 0 });
    d.connect(c.endpoint);
    await d.send(Buffer.from('definitely not protobuf \xff\xff\xff'));
    const frame = stagegate.v1.Request.encode({
      event: { protocolVersion: 2, session: 'v2', tree: 't', action: stagegate.v1.Action.POST_RESTORE, attempt: 1, expectedTrees: 1 },
    }).finish();
    await d.send(frame);
    const [reply] = await d.receive();
    const v = decodeVerdict(reply!);
    d.close();
    assert.equal(v.proceed, false);
    assert.equal(v.code, 'E_PROTOCOL_VERSION');
    assert.match(v.reason, /protocol version 2, this daemon 1/);
    const ok = await runHook(hookEnv(c.endpoint, 'post-restore', { STAGEGATE_SESSION: 'after-garbage', CRTOOLS_INIT_PID: '999' }));
    assert.equal(ok.code, 0, ok.stderr);
  });
});

describe('hook without a coordinator', () => {
  // a private directory where no coordinator listens
  const quiet = mkdtempSync('/tmp/stagegate-quiet-');
  after(() => rmSync(quiet, { recursive: true, force: true }));
  const nowhere = `ipc://${quiet}/hooks.sock`;

  it('aborts a gated action within its timeout, with one clear line', async () => {
    const r = await runHook(hookEnv(nowhere, 'post-restore', { STAGEGATE_TIMEOUT: '0.5', CRTOOLS_INIT_PID: '999' }));
    assert.equal(r.code, 1);
    assert.ok(r.ms >= 450 && r.ms < 3000, `took ${r.ms} ms`);
    assert.equal(r.stderr.trim().split('\n').length, 1);
    assert.match(r.stderr, /no verdict from the coordinator at ipc:\/\/\/tmp\/stagegate-quiet-\w+\/hooks.sock within 0.5s/);
  });

  it('does not hold up an ungated action', async () => {
    const r = await runHook(hookEnv(nowhere, 'post-setup-namespaces'));
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.ms < 2000, `took ${r.ms} ms`);
  });

  it('fails pre-restore within its timeout, so that criu restores nothing', async () => {
    const r = await runHook(hookEnv(nowhere, 'pre-restore', { STAGEGATE_TIMEOUT: '0.5' }));
    assert.equal(r.code, 1);
    assert.ok(r.ms >= 450 && r.ms < 3000, `took ${r.ms} ms`);
    assert.match(r.stderr, /stagegate-hook\[pre-restore\]: no verdict from the coordinator/);
  });

  it("notes the abort's reason in the memfd `stagegate restore` gives it, and in no other descriptor it is pointed at", async () => {
    // as swrk-restore.c hands it over: an inherited memfd opened for appending
    const viaMemfd = [
      'import fcntl, os, subprocess, sys',
      'fd = os.memfd_create("note")',
      'fcntl.fcntl(fd, fcntl.F_SETFL, os.O_APPEND)',
      'env = dict(os.environ, STAGEGATE_ABORT_NOTE_FD=str(fd))',
      'rc = subprocess.run([os.environ["SG_HOOK"]], env=env, pass_fds=[fd], stderr=subprocess.DEVNULL).returncode',
      'print(rc, os.pread(fd, 4096, 0).decode(), end="")',
    ].join('\n');
    const env = {
      ...hookEnv(nowhere, 'pre-restore', { STAGEGATE_TIMEOUT: '0.3' }),
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      SG_HOOK: hookPath(),
    };
    const r = await run('python3', ['-c', viaMemfd], env);
    assert.match(
      r.output,
      /^1 pre-restore: no verdict from the coordinator at .* within 0\.3s \(session hook-test, tree t1\): aborting\n$/,
    );
    // a descriptor that is not an appending memfd (here a file opened for appending) is left alone
    const dir = mkdtempSync('/tmp/sg-note-');
    try {
      const file = join(dir, 'note');
      writeFileSync(file, '');
      const h = await runHook(
        { ...hookEnv(nowhere, 'pre-restore', { STAGEGATE_TIMEOUT: '0.3' }), STAGEGATE_ABORT_NOTE_FD: '3', NOTE: file },
        'exec 3>>"$NOTE"; "$SG_HOOK"',
      );
      assert.equal(h.code, 1);
      assert.match(h.stderr, /no verdict from the coordinator/);
      assert.equal(readFileSync(file, 'utf8'), '');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('hook against a peer that sends what the daemon never does', () => {
  it('takes a verdict only from a one-frame message: a message of several frames is skipped whole', async () => {
    const dir = mkdtempSync('/tmp/sg-multipart-');
    const endpoint = `ipc://${dir}/hooks.sock`;
    const fake = new Router();
    await fake.bind(endpoint);
    void (async () => {
      for await (const [id, frame] of fake) {
        const req = decodeRequest(frame!);
        if (req.type !== 'event') continue;
        const v = (proceed: boolean) =>
          encodeVerdict({
            session: req.event.session,
            tree: req.event.tree,
            action: req.event.action,
            attempt: 1,
            proceed,
            code: proceed ? '' : 'E_DEADLINE',
            reason: 'the real answer',
          });
        // PROCEED in the first frame of a two-frame message, then the one-frame ABORT
        await fake.send([id!, v(true), Buffer.from('trailer')]);
        await fake.send([id!, v(false)]);
      }
    })().catch(() => {});
    try {
      const r = await runHook(hookEnv(endpoint, 'pre-restore', { STAGEGATE_TIMEOUT: '5' }));
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /\[E_DEADLINE\] the real answer/);
    } finally {
      fake.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('hook against a peer that accepts and never speaks', () => {
  it('gives up within its own timeout, not twice it', async () => {
    const dir = mkdtempSync('/tmp/sg-mute-');
    const mute = createServer((s) => s.resume()); // accepts and reads, never answers the handshake
    await new Promise<void>((r) => mute.listen(join(dir, 'hooks.sock'), r));
    try {
      const r = await runHook(hookEnv(`ipc://${dir}/hooks.sock`, 'pre-restore', { STAGEGATE_TIMEOUT: '1' }));
      assert.equal(r.code, 1);
      assert.match(r.stderr, /no verdict from the coordinator .* within 1s/);
      assert.ok(r.ms >= 950 && r.ms < 1800, `took ${r.ms} ms for a 1 s timeout`);
    } finally {
      await new Promise((r) => mute.close(r));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('hook with malformed or missing environment', () => {
  const base = hookEnv('ipc:///tmp/unused.sock', 'post-restore', { CRTOOLS_INIT_PID: '999' });
  const cases: [string, Record<string, string | undefined>, RegExp][] = [
    ['no action', { CRTOOLS_SCRIPT_ACTION: undefined }, /CRTOOLS_SCRIPT_ACTION is not set/],
    ['no endpoint', { STAGEGATE_ENDPOINT: undefined }, /STAGEGATE_ENDPOINT is not set/],
    ['no session', { STAGEGATE_SESSION: undefined }, /STAGEGATE_SESSION is not set/],
    ['bad session', { STAGEGATE_SESSION: 'a b' }, /STAGEGATE_SESSION is invalid/],
    ['no tree', { STAGEGATE_TREE: undefined }, /STAGEGATE_TREE is not set/],
    ['long tree', { STAGEGATE_TREE: 'x'.repeat(129) }, /STAGEGATE_TREE is invalid/],
    ['no tree count', { STAGEGATE_TREES: undefined }, /STAGEGATE_TREES must be an integer in 1..65536, got '\(unset\)'/],
    ['zero trees', { STAGEGATE_TREES: '0' }, /STAGEGATE_TREES must be an integer/],
    ['negative trees', { STAGEGATE_TREES: '-3' }, /STAGEGATE_TREES must be an integer/],
    ['bad timeout', { STAGEGATE_TIMEOUT: 'soon' }, /STAGEGATE_TIMEOUT must be seconds/],
    ['zero timeout', { STAGEGATE_TIMEOUT: '0' }, /STAGEGATE_TIMEOUT must be seconds/],
    ['bad attempt', { STAGEGATE_ATTEMPT: '1x' }, /STAGEGATE_ATTEMPT must be an integer/],
    ['bad init pid', { CRTOOLS_INIT_PID: 'init' }, /CRTOOLS_INIT_PID is not a pid/],
    ['bad endpoint', { STAGEGATE_ENDPOINT: 'carrier-pigeon://x' }, /cannot connect to 'carrier-pigeon:\/\/x'/],
  ];
  for (const [name, over, message] of cases) {
    it(`refuses: ${name}`, async () => {
      const env = Object.fromEntries(Object.entries({ ...base, ...over }).filter(([, v]) => v !== undefined)) as Record<string, string>;
      const r = await runHook(env);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, message);
    });
  }

  it('refuses pre-resume without CRTOOLS_INIT_PID (it could not guard the tree)', async () => {
    const env = { ...base, CRTOOLS_SCRIPT_ACTION: 'pre-resume' } as Record<string, string>;
    delete env.CRTOOLS_INIT_PID;
    const r = await runHook(env);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /CRTOOLS_INIT_PID is not set at pre-resume/);
  });
});

describe('coordinator under a flood of malformed frames', () => {
  it('keeps serving hooks while thousands of garbage frames arrive', async () => {
    const c2 = await startCoordinator(5000);
    try {
      const d = new Dealer({ linger: 0, sendHighWaterMark: 0 });
      d.connect(c2.endpoint);
      let seed = 7;
      const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) % 256;
      const flood = (async () => {
        for (let i = 0; i < 20_000; i++) await d.send(Buffer.from(Array.from({ length: 1 + (i % 64) }, rnd)));
      })();
      const r = await runHook(hookEnv(c2.endpoint, 'post-restore', { STAGEGATE_SESSION: 'flooded', CRTOOLS_INIT_PID: '999' }));
      await flood;
      d.close();
      assert.equal(r.code, 0, r.stderr);
      assert.ok(
        await until(() => c2.messages.filter((m) => 'decision' in m && m.decision.kind === 'event-rejected').length > 1000, 10_000),
      );
    } finally {
      await c2.close();
    }
  });
});

describe('clients refuse an IPC endpoint another local user could have made', () => {
  it('the hook and the CLI refuse a directory of another user, with a fake coordinator answering PROCEED there, and one that is not private', async () => {
    const dir = mkdtempSync('/tmp/sg-fake-');
    const endpoint = `ipc://${dir}/hooks.sock`;
    const fake = new Router();
    await fake.bind(endpoint);
    void (async () => {
      for await (const [id, frame] of fake) {
        const req = decodeRequest(frame!);
        const ev = req.type === 'event' ? req.event : { session: '', tree: '', action: 'unknown' as const, attempt: 1 };
        await fake.send([id!, proceedFor(ev)]);
      }
    })().catch(() => {});
    try {
      chownSync(dir, 65534, 65534); // nobody's directory, nobody's "coordinator"
      const r = await runHook(hookEnv(endpoint, 'post-restore', { CRTOOLS_INIT_PID: '999' }));
      assert.equal(r.code, 1, 'never PROCEED from an impostor');
      assert.match(r.stderr, /refusing IPC endpoint .* belongs to uid 65534, neither this user nor root/);
      const st = await run(STAGEGATE, ['status', '--endpoint', endpoint]);
      assert.notEqual(st.code, 0);
      assert.match(st.output, /refusing IPC endpoint .* belongs to uid 65534/);
      chownSync(dir, process.getuid!(), process.getgid!());
      chmodSync(dir, 0o755);
      const open = await runHook(hookEnv(endpoint, 'pre-restore'));
      assert.equal(open.code, 1);
      assert.match(open.stderr, /refusing IPC endpoint .* is not private \(mode 755\)/);
    } finally {
      fake.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
