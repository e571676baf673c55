/**
 * The checkpoint side on real CRIU: two "hosts" (network namespaces joined by
 * a veth pair) run one tree each; the trees stream counters to each other
 * over one TCP connection, both ways, each checking the other's stream for
 * gaps and duplicates (demo/stream-peer.c).
 * - a coordinated `stagegate dump --leave-running` commits both, both run on,
 *   the cut check passes; both killed, `restore --set` brings them back and
 *   the streams go on with no gap or duplicate;
 * - the negative control: the same trees dumped without coordination, one
 *   after the other, fail the cut check;
 * - the faults: a dump that fails, the coordinator killed at post-dump, a
 *   tree missing at pre-dump, a criu killed mid-way: every other tree rolled
 *   back and running, no committed set.
 */
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Daemon, STAGEGATE, exited, finished, firstChild, killTree, readPidfile, run, sleep } from '../../demo/harness';
import { criuPath, projectRoot } from '../../src/paths';
import { fieldsOf } from '../../src/core/model';
import { until } from '../support/coordinator';

const PEER = resolve(projectRoot, 'build/stream-peer');
const tag = process.pid % 10000;
const ns = [`sg${tag}d1`, `sg${tag}d2`];
const ips = ['10.232.0.1', '10.232.0.2'];
const PORT = 7000;
const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });
const inNs = (i: number) => ['nsenter', `--net=/run/netns/${ns[i]}`];

interface Progress {
  sent: number;
  recv: number;
  errors: number;
}
interface Peer {
  root: number;
  unshare: ChildProcess | null;
  progress: string;
}

let dir: string;
let daemon: Daemon;
let peers: Peer[] = [];
let job = 0;

function progress(p: Peer): Progress {
  const [sent, recv, errors] = readFileSync(p.progress, 'utf8').trim().split(/\s+/).map(Number);
  return { sent: sent!, recv: recv!, errors: errors! };
}

/** Both counters of every peer advance (and no stream error), within a few seconds. */
async function advancing(ps: Peer[]): Promise<Progress[]> {
  const before = ps.map(progress);
  const deadline = Date.now() + 5000;
  for (;;) {
    await sleep(100);
    const now = ps.map(progress);
    if (now.every((n, i) => n.recv > before[i]!.recv + 200 && n.sent > before[i]!.sent + 200)) {
      for (const n of now) assert.equal(n.errors, 0, 'a stream saw a gap or a duplicate');
      return now;
    }
    if (Date.now() > deadline) assert.fail(`streams stalled: ${JSON.stringify(before)} -> ${JSON.stringify(now)}`);
  }
}

/** Starts the two stream peers (one tree per host), each in its own pid namespace and working directory. */
async function startPeers(): Promise<Peer[]> {
  job++;
  const out: Peer[] = [];
  for (const i of [0, 1]) {
    // a cwd of its own: criu's parasite mounts proc at ./proc.crtools of the task's cwd, and the trees are dumped at once
    const cwd = join(dir, `job${job}-w${i}`);
    mkdirSync(cwd);
    const progressFile = join(dir, `job${job}-progress${i}`);
    const role = i === 0 ? ['--listen', String(PORT + job)] : ['--connect', `${ips[0]}:${PORT + job}`];
    const unshare = spawn(
      inNs(i)[0]!,
      [...inNs(i).slice(1), 'unshare', '--pid', '--fork', 'setsid', PEER, ...role, '--progress', progressFile],
      {
        cwd,
        stdio: 'ignore',
        detached: true,
      },
    );
    out.push({ root: await firstChild(unshare.pid!), unshare, progress: progressFile });
  }
  const deadline = Date.now() + 5000;
  while (!out.every((p) => existsSync(p.progress) && progress(p).recv > 100)) {
    if (Date.now() > deadline) throw new Error('stream peers did not connect');
    await sleep(20);
  }
  peers.push(...out);
  return out;
}

function imagesDir(name: string): string {
  const d = join(dir, `job${job}-${name}`);
  mkdirSync(d);
  return d;
}

/** `stagegate dump` of peer i in its host's netns. */
function dumpPeer(
  i: number,
  p: Peer,
  images: string,
  o: { trees?: number; extra?: string[]; timeoutS?: number; session?: string; env?: NodeJS.ProcessEnv } = {},
): { child: ChildProcess; done: Promise<{ code: number | null; output: string }> } {
  const args = [
    'dump',
    '--session',
    o.session ?? `job${job}`,
    '--tree',
    `t${i + 1}`,
    '--trees',
    String(o.trees ?? 2),
    '--endpoint',
    daemon.endpoint,
    '--timeout',
    String(o.timeoutS ?? 20),
    '--',
    '-t',
    String(p.root),
    '-D',
    images,
    '-o',
    'dump.log',
    '--tcp-established',
    '--leave-running',
    ...(o.extra ?? []),
  ];
  const child = spawn(inNs(i)[0]!, [...inNs(i).slice(1), STAGEGATE, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...o.env },
  });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  return { child, done: finished(child).then((e) => ({ code: e.code, output })) };
}

async function killPeers(ps: Peer[]): Promise<void> {
  for (const p of ps) killTree(p.root);
  const deadline = Date.now() + 5000;
  while (ps.some((p) => existsSync(`/proc/${p.root}`)) && Date.now() < deadline) await sleep(20);
}

/** A stopped (ptrace- or signal-stopped) task state. */
const stateOf = (pid: number) => readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]![0];

before(async () => {
  dir = mkdtempSync('/tmp/sg-dump-');
  ip('netns', 'add', ns[0]!);
  ip('netns', 'add', ns[1]!);
  ip('link', 'add', `sg${tag}va`, 'type', 'veth', 'peer', 'name', `sg${tag}vb`);
  ip('link', 'set', `sg${tag}va`, 'netns', ns[0]!);
  ip('link', 'set', `sg${tag}vb`, 'netns', ns[1]!);
  ip('-n', ns[0]!, 'addr', 'add', `${ips[0]}/24`, 'dev', `sg${tag}va`);
  ip('-n', ns[1]!, 'addr', 'add', `${ips[1]}/24`, 'dev', `sg${tag}vb`);
  for (const [n, v] of [
    [ns[0]!, `sg${tag}va`],
    [ns[1]!, `sg${tag}vb`],
  ]) {
    ip('-n', n!, 'link', 'set', 'lo', 'up');
    ip('-n', n!, 'link', 'set', v!, 'up');
  }
  daemon = await Daemon.start(dir, 20, 'none');
});

afterEach(async () => {
  await killPeers(peers);
  for (const p of peers) if (p.unshare) await exited(p.unshare);
  peers = [];
});

after(async () => {
  await daemon?.stop();
  for (const n of ns) {
    try {
      ip('netns', 'del', n);
    } catch {
      // already gone
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('coordinated checkpoint (stagegate dump) on real CRIU', () => {
  it('dumps two hosts together with --leave-running, both run on, the cut is consistent, and the set restores with no gap or duplicate', async () => {
    const ps = await startPeers();
    const imgs = [imagesDir('i1'), imagesDir('i2')];
    const runs = [dumpPeer(0, ps[0]!, imgs[0]!), dumpPeer(1, ps[1]!, imgs[1]!)];
    const results = await Promise.all(runs.map((r) => r.done));
    for (const r of results) assert.equal(r.code, 0, r.output);
    for (const r of results) assert.match(r.output, /committed tree t\d of session job\d+ attempt 1 as c-[0-9a-f]{32}/);
    await advancing(ps);
    // decisions reach the subscriber after the hooks' verdicts: wait for them
    const commits = () => decisions().filter((d) => d.kind === 'gate-opened' && d.action === 'post-dump' && d.session === `job${job}`);
    await until(() => commits().length > 0);
    const committed = commits();
    assert.equal(committed.length, 1);

    const check = await run(STAGEGATE, ['check', ...imgs]);
    assert.equal(check.code, 0, check.output);
    assert.match(check.output, /^committed set c-[0-9a-f]{32}: session job\d+ attempt 1, 2 tree\(s\) given/);
    assert.match(check.output, /TCP cut: 1 connection\(s\) within the set, 0 violation\(s\)/);

    // the job dies; its last committed checkpoint brings it back
    const atDump = imgs.map((d) => JSON.parse(readFileSync(join(d, 'stagegate-commit.json'), 'utf8')).commit);
    assert.equal(atDump[0], atDump[1]);
    await killPeers(ps);
    const restored: Peer[] = [];
    const rs = [0, 1].map((i) => {
      const pidfile = join(dir, `job${job}-restored${i}.pid`);
      restored.push({ root: 0, unshare: null, progress: ps[i]!.progress });
      return {
        pidfile,
        r: run(inNs(i)[0]!, [
          ...inNs(i).slice(1),
          STAGEGATE,
          'restore',
          '--set',
          '--endpoint',
          daemon.endpoint,
          imgs[i]!,
          '--',
          '-d',
          '--tcp-established',
          '-o',
          'restore.log',
          '--pidfile',
          pidfile,
        ]),
      };
    });
    const outs = await Promise.all(rs.map((x) => x.r));
    rs.forEach((x, i) => (restored[i]!.root = readPidfile(x.pidfile) ?? 0));
    peers.push(...restored.filter((p) => p.root));
    for (const o of outs) assert.equal(o.code, 0, o.output);
    const after = await advancing(restored);
    for (const a of after) assert.equal(a.errors, 0);
    // the streams went on from the checkpoint: each side's received count went past what it had before the kill
    assert.ok(after.every((a) => a.recv > 0));
    const resumes = () => decisions().filter((d) => d.kind === 'gate-opened' && d.action === 'pre-resume' && d.session === `job${job}`);
    await until(() => resumes().length > 0);
    const restoredSession = resumes();
    assert.equal(restoredSession.length, 1, 'the set was restored through the gates of its session');
    for (const i of [0, 1]) {
      const rules = execFileSync(inNs(i)[0]!, [...inNs(i).slice(1), 'iptables', '-S'], { encoding: 'utf8' });
      assert.doesNotMatch(rules, /stagegate/, 'the restore lock was lifted');
    }
  });

  it('trees with network namespaces of their own pass the network-lock barrier together, then commit', async () => {
    job++;
    const own: Peer[] = [];
    for (const i of [0, 1]) {
      const cwd = join(dir, `job${job}-w${i}`);
      mkdirSync(cwd);
      const unshare = spawn('unshare', ['--net', '--pid', '--fork', 'setsid', 'sleep', '1000'], { cwd, stdio: 'ignore', detached: true });
      own.push({ root: await firstChild(unshare.pid!), unshare, progress: '' });
    }
    peers.push(...own);
    const imgs = [imagesDir('n1'), imagesDir('n2')];
    const outs = await Promise.all(
      own.map((p, i) =>
        run(STAGEGATE, [
          'dump',
          '--session',
          `job${job}`,
          '--tree',
          `t${i + 1}`,
          '--trees',
          '2',
          '--endpoint',
          daemon.endpoint,
          '--',
          '-t',
          String(p.root),
          '-D',
          imgs[i]!,
          '-o',
          'dump.log',
          '--leave-running',
        ]),
      ),
    );
    for (const o of outs) assert.equal(o.code, 0, o.output);
    await until(() => decisions().some((d) => d.session === `job${job}` && d.kind === 'gate-opened' && d.action === 'post-dump'));
    const mine = decisions().filter((d) => d.session === `job${job}`);
    const netLock = mine.find((d) => d.kind === 'gate-opened' && d.action === 'network-lock');
    assert.ok(netLock, 'the network-lock barrier opened');
    assert.deepEqual(netLock.trees, ['t1', 't2']);
    const order = mine.filter((d) => d.kind === 'gate-opened').map((d) => d.action);
    assert.deepEqual(order, ['pre-dump', 'network-lock', 'post-dump']);
    const events = daemon.messages.flatMap((m) =>
      'event' in m && m.event.session === `job${job}` && m.event.action === 'pre-dump' ? [m.event] : [],
    );
    assert.deepEqual(
      events.map((e) => e.netLock),
      [true, true],
    );
    for (const p of own) assert.notEqual(stateOf(p.root), 't');
    assert.equal((await run(STAGEGATE, ['check', ...imgs])).code, 0);
  });

  it('negative control: the same trees dumped without coordination, one after the other, fail the cut check', async () => {
    const ps = await startPeers();
    const imgs = [imagesDir('u1'), imagesDir('u2')];
    for (const i of [0, 1]) {
      const r = await run(inNs(i)[0]!, [
        ...inNs(i).slice(1),
        criuPath(),
        'dump',
        '-t',
        String(ps[i]!.root),
        '-D',
        imgs[i]!,
        '-o',
        'dump.log',
        '--tcp-established',
        '--leave-running',
      ]);
      assert.equal(r.code, 0, r.output);
      if (i === 0) await sleep(500); // the first tree runs on, and streams to the second, while it is not yet dumped
    }
    const check = await run(STAGEGATE, ['check', ...imgs]);
    assert.equal(check.code, 1, check.output);
    assert.match(check.output, /NOT a committed set/);
    assert.match(check.output, /no commit record: this checkpoint was never committed/);
    assert.match(check.output, /TCP cut: 1 connection\(s\) within the set, [12] violation\(s\)/);
    assert.match(check.output, /VIOLATION: \d+ byte\(s\) received by tree job\d+-u2 .* that tree job\d+-u1 .* had not yet written/);
    const json = JSON.parse((await run(STAGEGATE, ['check', '--json', ...imgs])).output);
    assert.ok(json.cut.violations >= 1);
    // and restoring it is refused
    const refused = await run(STAGEGATE, ['restore', '--set', '--endpoint', daemon.endpoint, imgs[0]!, '--', '-d']);
    assert.equal(refused.code, 1);
    assert.match(refused.output, /refused: this is not a committed set/);
  });
});

describe('coordinated checkpoint faults: every other tree rolled back and running, no committed set', () => {
  /** A user action script criu runs before the hook: it holds tree 2 at post-dump while tree 1 waits there. */
  function slowPostDump(seconds: number): string {
    const script = join(dir, `slow-post-dump-${seconds}.sh`);
    writeFileSync(script, `#!/bin/sh\n[ "$CRTOOLS_SCRIPT_ACTION" = post-dump ] && touch ${script}.running && sleep ${seconds}\nexit 0\n`);
    chmodSync(script, 0o755);
    return script;
  }

  function assertNotCommitted(imgs: string[]): void {
    for (const d of imgs) assert.ok(!existsSync(join(d, 'stagegate-commit.json')), `${d} has a commit record`);
  }

  // the failing tree's wrapper tells the coordinator: `stagegate dump` in C (hooks/dump.c), and the
  // Node CLI it hands over to (the reference, src/criu/dump.ts)
  for (const [via, env] of [
    ['the C driver', {}],
    ['the Node CLI', { STAGEGATE_NO_SWRK: '1' }],
  ] as const)
    it(`one tree's dump fails (its images directory fills up): the other is rolled back (the failing one through ${via})`, async () => {
      const ps = await startPeers();
      const imgs = [imagesDir('f1'), imagesDir('f2')];
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'sg-full', imgs[1]!]);
      try {
        const runs = [dumpPeer(0, ps[0]!, imgs[0]!), dumpPeer(1, ps[1]!, imgs[1]!, { env })];
        const [a, b] = await Promise.all(runs.map((r) => r.done));
        assert.notEqual(b!.code, 0, b!.output);
        assert.notEqual(a!.code, 0, a!.output);
        assert.match(a!.output, /aborted at post-dump: .*\[E_TREE_FAILED\] tree t2 failed to dump: criu exited with 1/);
        await advancing(ps);
        assertNotCommitted(imgs);
      } finally {
        execFileSync('umount', [imgs[1]!]);
      }
    });

  it('the coordinator killed while the trees wait at post-dump: all resume within the timeout', async () => {
    const own = await Daemon.start(dir, 20, 'none', `-killed${job}`);
    const saved = daemon;
    daemon = own;
    try {
      const ps = await startPeers();
      const imgs = [imagesDir('k1'), imagesDir('k2')];
      const started = Date.now();
      const runs = [
        dumpPeer(0, ps[0]!, imgs[0]!, { timeoutS: 3 }),
        dumpPeer(1, ps[1]!, imgs[1]!, { timeoutS: 3, extra: ['--action-script', slowPostDump(2)] }),
      ];
      // tree 1 waits at post-dump, tree 2 is in its slow script
      const deadline = Date.now() + 10_000;
      while (!own.messages.some((m) => 'event' in m && m.event.action === 'post-dump')) {
        if (Date.now() > deadline) assert.fail('no tree reached post-dump');
        await sleep(20);
      }
      own.child.kill('SIGKILL');
      await exited(own.child);
      const [a, b] = await Promise.all(runs.map((r) => r.done));
      assert.notEqual(a!.code, 0, a!.output);
      assert.notEqual(b!.code, 0, b!.output);
      assert.ok(Date.now() - started < 15_000, 'rolled back within the hook timeouts');
      await advancing(ps);
      assertNotCommitted(imgs);
    } finally {
      await own.stop();
      daemon = saved;
    }
  });

  it('a tree missing at pre-dump: nothing is frozen, the dump that came is called off at the deadline', async () => {
    const own = await Daemon.start(dir, 2, 'none', `-missing${job}`);
    const saved = daemon;
    daemon = own;
    try {
      const ps = await startPeers();
      const imgs = [imagesDir('m1')];
      const r = dumpPeer(0, ps[0]!, imgs[0]!, { trees: 2 });
      // while it waits at pre-dump the tree is not frozen: its stream goes on
      await sleep(300);
      await advancing(ps);
      const out = await r.done;
      assert.notEqual(out.code, 0, out.output);
      assert.match(out.output, /\[E_DEADLINE\] deadline of 2000 ms passed at the pre-dump gate; still missing: 1 tree\(s\) not seen yet/);
      assert.ok(!readdirSync(imgs[0]!).some((f) => /^(core|pages|mm)-/.test(f)), 'criu dumped nothing');
      await advancing(ps);
    } finally {
      await own.stop();
      daemon = saved;
    }
  });

  it('criu dump killed mid-way: the other tree is rolled back, not left frozen', async () => {
    const ps = await startPeers();
    const imgs = [imagesDir('c1'), imagesDir('c2')];
    const slow = slowPostDump(3);
    const runs = [dumpPeer(0, ps[0]!, imgs[0]!), dumpPeer(1, ps[1]!, imgs[1]!, { extra: ['--action-script', slow] })];
    // the slow script marks when it runs: criu of tree 2 is then past its images, tree 1 waits at post-dump
    const deadline = Date.now() + 10_000;
    while (!existsSync(`${slow}.running`)) {
      if (Date.now() > deadline) assert.fail('tree 2 never reached its slow post-dump script');
      await sleep(20);
    }
    const criu = readdirSync('/proc')
      .filter((p) => /^\d+$/.test(p))
      .find((p) => {
        try {
          const argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
          return argv[0]!.includes('ld-linux') && argv.includes('dump') && argv.includes(imgs[1]!);
        } catch {
          return false;
        }
      });
    assert.ok(criu, 'criu of tree 2 is running');
    // both trees are frozen now: tree 1 waits at post-dump
    process.kill(Number(criu), 'SIGKILL');
    const [a, b] = await Promise.all(runs.map((r) => r.done));
    assert.notEqual(b!.code, 0);
    assert.notEqual(a!.code, 0, a!.output);
    assert.match(a!.output, /\[E_TREE_FAILED\] tree t2 failed to dump: criu killed by SIGKILL/);
    // tree 1 runs again: not stopped by criu (its stream to tree 2 is held by the rules the killed criu left)
    for (let i = 0; i < 20 && stateOf(ps[0]!.root) === 't'; i++) await sleep(50);
    assert.notEqual(stateOf(ps[0]!.root), 't');
    const before = progress(ps[0]!);
    await sleep(300);
    assert.ok(progress(ps[0]!).sent >= before.sent);
    assertNotCommitted(imgs);
  });
});

const decisions = () => daemon.messages.flatMap((m) => ('decision' in m ? [fieldsOf(m.decision)] : []));
