/**
 * The connection keeper (hooks/keeper.c): the action scripts of one criu share
 * one IPC connection to the coordinator, held by a keeper process between
 * them. Real hooks, real ZeroMQ: a ROUTER stands in for the coordinator so
 * that the test sees each connection it accepts and which connection every
 * event came on.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type Socket } from 'node:net';
import { type ChildProcess, spawn } from 'node:child_process';
import { Router } from 'zeromq';
import { hookPath } from '../../src/paths';
import { decodeRequest } from '../../src/protocol/codec';
import { isGate } from '../../src/core/actions';
import { until } from '../support/coordinator';
import { hookEnv, proceedFor } from '../support/hook';
import { exited, finished } from '../../demo/harness';

const RESTORE = ['pre-restore', 'setup-namespaces', 'post-setup-namespaces', 'post-restore', 'pre-resume', 'post-resume'];

/** A ROUTER answering PROCEED to every gated event; records the connection of each event. */
class FakeCoordinator {
  readonly router = new Router();
  accepted = 0;
  /** action and routing id (hex) of every event, in order */
  readonly events: { action: string; peer: string }[] = [];
  /** a frame it sends right after the verdict for an action, made from that verdict */
  readonly extra = new Map<string, (verdict: Buffer) => Buffer>();

  constructor(readonly endpoint: string) {}

  async start(): Promise<this> {
    this.router.events.on('accept', () => this.accepted++);
    await this.router.bind(this.endpoint);
    void (async () => {
      for await (const [id, frame] of this.router) {
        const req = decodeRequest(frame!);
        if (req.type !== 'event') continue;
        const ev = req.event;
        if (!ev.resent) this.events.push({ action: ev.action, peer: id!.toString('hex') });
        if (!isGate(ev.action)) continue; // pre-restore included: the hook waits for its answer
        const verdict = proceedFor(ev);
        await this.router.send([id!, verdict]);
        const more = this.extra.get(ev.action);
        if (more) await this.router.send([id!, more(verdict)]);
      }
    })().catch(() => {});
    return this;
  }

  close(): void {
    this.router.close();
  }
}

/**
 * Every socket under a keeper name for the criu `pid` (/proc/net/unix lists them with '@'): the
 * listener, and also each hook's connection to it until the keeper has accepted and dropped it.
 */
const keeperSockets = (pid: number) =>
  readFileSync('/proc/net/unix', 'utf8')
    .split('\n')
    .filter((l) => l.includes(`@stagegate-keeper/${pid}/`));

/** Only the listening ones (Flags __SO_ACCEPTCON, 00010000): one per keeper holding the name. */
const keeperListeners = (pid: number) => keeperSockets(pid).filter((l) => l.split(/\s+/)[3] === '00010000');

/** Start time of `pid` in clock ticks (/proc/PID/stat field 22), the keeper's name's second part. */
const startTime = (pid: number) => {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return s.slice(s.lastIndexOf(')') + 2).split(' ')[19]!;
};

/** Lets `criu` (fakeCriu) go and waits for it: the events and connections the coordinator saw meanwhile. */
async function restoreThrough(criu: ReturnType<typeof fakeCriu>, dir: string) {
  const before = { accepted: daemon.accepted, events: daemon.events.length };
  writeFileSync(join(dir, 'go'), '');
  const { code } = await finished(criu.child);
  assert.equal(code, 0, criu.stderr());
  const evs = daemon.events.slice(before.events);
  assert.deepEqual(
    evs.map((e) => e.action),
    RESTORE,
    'every event reached the coordinator',
  );
  return { evs, accepted: daemon.accepted - before.accepted };
}

/**
 * A shell standing in for criu: waits for `go` to exist, then runs the hook once per action, in
 * order, as criu does; exits with the first failing hook's code. Stderr is collected.
 */
function fakeCriu(endpoint: string, dir: string, actions: string[], session: string) {
  const script = `
    while [ ! -e "${dir}/go" ]; do sleep 0.01; done
    for a in ${actions.join(' ')}; do
      CRTOOLS_SCRIPT_ACTION=$a "$SG_HOOK" || exit $?
    done
    # listeners only: the last hook's connection to the keeper is listed under its name too
    # until the keeper has accepted and dropped it
    awk -v n="@stagegate-keeper/$$/" '$4 == "00010000" && index($8, n) == 1' /proc/net/unix | wc -l > "${dir}/seen-${session}"`;
  const env = { ...hookEnv(endpoint, 'pre-restore', { STAGEGATE_SESSION: session, CRTOOLS_INIT_PID: '999' }), SG_HOOK: hookPath() };
  const child = spawn('sh', ['-c', script], { env: { PATH: process.env.PATH!, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  return { child, stderr: () => stderr };
}

let dir: string;
let daemon: FakeCoordinator;
before(async () => {
  dir = mkdtempSync('/tmp/sg-keeper-');
  daemon = await new FakeCoordinator(`ipc://${dir}/hooks.sock`).start();
});
after(() => {
  daemon.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('connection keeper', () => {
  it('the six action scripts of one restore share one connection, and its keeper goes with criu', async () => {
    const criu = fakeCriu(daemon.endpoint, dir, RESTORE, 'shared');
    const pid = criu.child.pid!;
    const { evs, accepted } = await restoreThrough(criu, dir);
    assert.equal(new Set(evs.map((e) => e.peer)).size, 1, `every event on one connection: ${JSON.stringify(evs)}`);
    assert.equal(accepted, 1, 'one connection accepted for the whole restore');
    assert.equal(readFileSync(join(dir, 'seen-shared'), 'utf8').trim(), '1', 'a keeper served the restore while criu ran');
    assert.ok(await until(() => keeperSockets(pid).length === 0, 2000), 'the keeper exits with its criu');
  });

  it('a stale frame waiting on the kept connection is skipped; an undecodable one makes the hook connect anew', async () => {
    // after pre-restore's verdict the same verdict again (the reply to a re-send, say): the next
    // hook that reads, at post-restore, finds it first. After post-restore's, a frame that no
    // Verdict decodes from (field 1, wire type 7), as a hook killed inside a frame would leave
    daemon.extra.set('pre-restore', (v) => v);
    daemon.extra.set('post-restore', () => Buffer.from([0x0f, 0x00]));
    try {
      const criu = fakeCriu(daemon.endpoint, dir, RESTORE, 'torn');
      const { evs, accepted } = await restoreThrough(criu, dir);
      assert.match(criu.stderr(), /undecodable reply on the connection kept for this criu's hooks: connecting anew/);
      assert.doesNotMatch(criu.stderr(), /aborting/);
      // pre-resume was sent again on a connection of its own (a re-send: not recorded); the
      // keeper's connection still served post-resume
      assert.equal(new Set(evs.map((e) => e.peer)).size, 1, JSON.stringify(evs));
      assert.equal(accepted, 2);
    } finally {
      daemon.extra.clear();
    }
  });

  for (const who of ['root, with a connection to another coordinator', 'another user, with a connection to this one'] as const) {
    it(`hooks refuse a keeper name squatted by ${who}, and connect on their own`, async () => {
      const sdir = mkdtempSync('/tmp/sg-keeper-squat-');
      let fake: FakeCoordinator | null = null;
      let squatter: ChildProcess | null = null;
      let conn: Socket | null = null;
      const criu = fakeCriu(daemon.endpoint, sdir, RESTORE, `squat-${who.startsWith('root') ? 'root' : 'user'}`);
      try {
        const pid = criu.child.pid!;
        const otherUser = !who.startsWith('root');
        // the connection the squatter offers: to an impostor that answers PROCEED, or (made as root,
        // handed to a process of nobody) to the real coordinator, whose replies it could then read
        if (!otherUser) fake = await new FakeCoordinator(`ipc://${sdir}/impostor.sock`).start();
        const target = otherUser ? daemon.endpoint : fake!.endpoint;
        conn = connect(target.slice('ipc://'.length));
        await new Promise<void>((res, rej) => conn!.once('connect', () => res()).once('error', rej));
        // fd 3 of the squatter is the connection, as a keeper's is; it listens on criu's keeper name
        // (Python: Node pads an abstract name to the whole sun_path, a name of another length)
        const squat = [
          'import socket, sys, time',
          'l = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)',
          "l.bind('\\0' + sys.argv[1])",
          'l.listen(8)',
          "print('listening', flush=True)",
          'time.sleep(60)',
        ].join('\n');
        squatter = spawn('python3', ['-c', squat, `stagegate-keeper/${pid}/${startTime(pid)}`], {
          stdio: ['ignore', 'pipe', 'ignore', conn],
          ...(otherUser ? { uid: 65534, gid: 65534 } : {}),
        });
        await new Promise<void>((res, rej) => {
          squatter!.stdout!.once('data', () => res());
          squatter!.once('exit', (c) => rej(new Error(`the squatter exited (${c})`)));
        });
        assert.equal(keeperListeners(pid).length, 1, 'the squatter holds the name');
        const { evs, accepted } = await restoreThrough(criu, sdir);
        // each hook connected itself (the name taken, no keeper of its own either)
        assert.equal(new Set(evs.map((e) => e.peer)).size, RESTORE.length);
        assert.equal(accepted, RESTORE.length);
        if (fake) assert.equal(fake.events.length, 0, 'nothing went to the impostor');
      } finally {
        criu.child.kill('SIGKILL');
        squatter?.kill('SIGKILL');
        if (squatter) await exited(squatter);
        conn?.destroy();
        fake?.close();
        rmSync(sdir, { recursive: true, force: true });
      }
    });
  }

  it('a keeper whose parent is not criu and that nobody asks for goes within seconds', async () => {
    // the hook run straight from this process: its "criu" is the test runner, which outlives it
    const env = hookEnv(daemon.endpoint, 'post-setup-namespaces', { STAGEGATE_SESSION: 'idle' });
    const hook = spawn(hookPath(), [], { env: { PATH: process.env.PATH!, ...env }, stdio: 'ignore' });
    assert.equal((await exited(hook)).code, 0);
    assert.ok(await until(() => keeperListeners(process.pid).length === 1, 2000), 'a keeper holds the connection for the next hook');
    const t0 = Date.now();
    assert.ok(await until(() => keeperSockets(process.pid).length === 0, 6000), 'the idle keeper exits');
    assert.ok(Date.now() - t0 < 5000);
  });
});
