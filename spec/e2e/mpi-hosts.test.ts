/**
 * MPI across two hosts: an MPICH job with one rank on each of two "hosts"
 * (network namespaces on a bridge, each with its own UTS, mount, pid and IPC
 * namespaces), launched by Hydra's manual launcher so that each host's proxy
 * and rank are a tree of their own; the head (mpiexec) is a third tree.
 * Checkpointed with `stagegate dump` (three trees, one committed set, the
 * TCP cut between them checked), restored with `stagegate restore --set`,
 * and its result checked: an allreduce checksum every iteration that breaks
 * if a rank's state or a message were lost (demo/mpi-job.c).
 * The recipe is ../shared/notes/mpi-across-hosts.md, as measured here.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Daemon, STAGEGATE, exited, firstChild, killTree, readPidfile, run, sleep } from '../../demo/harness';
import { projectRoot } from '../../src/paths';

const JOB = resolve(projectRoot, 'build/mpi-job');
const tag = process.pid % 10000;
const BR = `sg${tag}br`;
const hosts = [1, 2].map((h) => ({
  h,
  ns: `sg${tag}m${h}`,
  outer: `sg${tag}o${h}`,
  inner: `sg${tag}n${h}`,
  ip: `10.198.${tag % 250}.${h}`,
}));
const headIp = `10.198.${tag % 250}.254`;
const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });
const ITERS = 150;

let dir: string;
let daemon: Daemon;
const started: ChildProcess[] = [];
const roots: number[] = [];

async function waitFor(file: string, re: RegExp, ms: number): Promise<string> {
  const deadline = Date.now() + ms;
  for (;;) {
    const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
    if (re.test(text)) return text;
    if (Date.now() > deadline) throw new Error(`${re} not in ${file} after ${ms} ms:\n${text.slice(-2000)}`);
    await sleep(100);
  }
}

before(async () => {
  dir = mkdtempSync('/tmp/sg-mpihosts-');
  ip('link', 'add', BR, 'type', 'bridge');
  ip('addr', 'add', `${headIp}/24`, 'dev', BR);
  ip('link', 'set', BR, 'up');
  for (const x of hosts) {
    ip('netns', 'add', x.ns);
    ip('link', 'add', x.outer, 'type', 'veth', 'peer', 'name', x.inner);
    ip('link', 'set', x.outer, 'master', BR);
    ip('link', 'set', x.outer, 'up');
    ip('link', 'set', x.inner, 'netns', x.ns);
    ip('-n', x.ns, 'addr', 'add', `${x.ip}/24`, 'dev', x.inner);
    ip('-n', x.ns, 'link', 'set', x.inner, 'up');
    ip('-n', x.ns, 'link', 'set', 'lo', 'up');
    ip('-n', x.ns, 'route', 'add', 'default', 'via', headIp);
  }
  daemon = await Daemon.start(dir, 120, 'none');
});

after(async () => {
  for (const r of roots) killTree(r);
  for (const c of started) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const c of started) await exited(c);
  await daemon?.stop();
  for (const x of hosts) {
    try {
      ip('netns', 'del', x.ns);
    } catch {
      // already gone
    }
  }
  try {
    ip('link', 'del', BR);
  } catch {
    // already gone
  }
  if (!process.env.SG_KEEP) rmSync(dir, { recursive: true, force: true });
});

describe('MPI across two hosts', () => {
  it('checkpoints an MPICH job with a rank on each host as one committed set and restores it with restore --set: results right', async () => {
    const out = join(dir, 'job.out');
    // the head: mpiexec in its own pid namespace, printing one launch line per host. Its output file is its
    // alone (criu checks the size of every open file): unshare, outside the tree, writes to its own stderr
    for (const d of ['cwd-head', 'wd-rank0', 'wd-rank1']) mkdirSync(join(dir, d));
    const head = spawn(
      'unshare',
      [
        '--pid',
        '--fork',
        'setsid',
        'sh',
        '-c',
        'out="$1"; shift; exec "$@" > "$out" 2>&1',
        'sh',
        out,
        'mpiexec',
        '-hosts',
        hosts.map((x) => x.ip).join(','),
        '-launcher',
        'manual',
        '-iface',
        BR,
        '-genv',
        'UCX_TLS',
        'tcp,self',
        '-genv',
        'UCX_POSIX_USE_PROC_LINK',
        'n',
        // a working directory of its own for each rank (Hydra gives them the head's otherwise): the trees are
        // dumped at once, and criu's parasite mounts proc at ./proc.crtools of each task's cwd
        ...[0, 1].flatMap((r) => [...(r ? [':'] : []), '-n', '1', '-wdir', join(dir, `wd-rank${r}`), JOB, String(ITERS)]),
      ],
      { cwd: join(dir, 'cwd-head'), stdio: 'ignore', detached: true },
    );
    started.push(head);
    const headRoot = await firstChild(head.pid!);
    roots.push(headRoot);
    const launch = await waitFor(out, /HYDRA_LAUNCH_END/, 15_000);
    const cmds = [...launch.matchAll(/^HYDRA_LAUNCH: (.*)$/gm)].map((m) => m[1]!);
    assert.equal(cmds.length, 2, launch);
    const treeRoots: number[] = [];
    for (const [i, x] of hosts.entries()) {
      const cmd = cmds.find((c) => new RegExp(`--proxy-id ${i}\\b`).test(c)) ?? cmds[i]!;
      const proxy = cmd.replace(new RegExp(`--iface ${BR}\\b`), `--iface ${x.inner}`);
      const cwd = join(dir, `cwd-host${x.h}`);
      mkdirSync(cwd);
      // its own host: sysfs for UCX to find its interface, a hostname of its own, no view of /run/netns, fresh stdio
      const script =
        `mount -t sysfs none /sys && hostname mpihost${x.h} && ` +
        `for m in /run/netns/*; do umount "$m" 2>/dev/null; done; ` +
        `exec </dev/null >/dev/null 2>&1; export UCX_TLS=tcp,self UCX_POSIX_USE_PROC_LINK=n; exec ${proxy}`;
      const p = spawn(
        'nsenter',
        [
          `--net=/run/netns/${x.ns}`,
          'unshare',
          '--mount',
          '--propagation',
          'private',
          '--uts',
          '--pid',
          '--ipc',
          '--fork',
          'setsid',
          'sh',
          '-c',
          script,
        ],
        { cwd, stdio: 'ignore', detached: true },
      );
      started.push(p);
      const root = await firstChild(p.pid!);
      roots.push(root);
      treeRoots.push(root);
    }
    await waitFor(out, /^iter 10 total \d+ ok$/m, 60_000);

    // one committed set of three trees
    const imgs = ['head', 'host1', 'host2'].map((t) => join(dir, `images-${t}`));
    for (const d of imgs) mkdirSync(d);
    const dumpArgs = (tree: string, pid: number, images: string) => [
      'dump',
      '--session',
      'mpi-hosts',
      '--tree',
      tree,
      '--trees',
      '3',
      '--endpoint',
      daemon.endpoint,
      '--timeout',
      '60',
      '--',
      '-t',
      String(pid),
      '-D',
      images,
      '-o',
      'dump.log',
      '--tcp-established',
      '--ext-unix-sk',
      '--ghost-limit',
      '256M',
    ];
    const dumps = await Promise.all([
      run(STAGEGATE, dumpArgs('head', headRoot, imgs[0]!)),
      ...hosts.map((x, i) =>
        run('nsenter', [`--net=/run/netns/${x.ns}`, STAGEGATE, ...dumpArgs(`host${x.h}`, treeRoots[i]!, imgs[i + 1]!)]),
      ),
    ]);
    const failed = dumps.flatMap((d, i) =>
      d.code === 0 ? [] : [`${imgs[i]} (${d.code}): ${d.output}\n${tailOf(join(imgs[i]!, 'dump.log'))}`],
    );
    assert.deepEqual(failed, []);
    const check = await run(STAGEGATE, ['check', ...imgs]);
    assert.equal(check.code, 0, check.output);
    assert.match(check.output, /^committed set c-[0-9a-f]{32}: session mpi-hosts attempt 1, 3 tree\(s\) given/);
    assert.match(check.output, /TCP cut: \d+ connection\(s\) within the set, 0 violation\(s\)/);
    // the head's connection to each proxy, and the ranks' connection between the hosts, are among them
    for (const [a, b] of [
      ['head', 'host1'],
      ['head', 'host2'],
      ['host1', 'host2'],
    ])
      assert.match(check.output, new RegExp(`^  tree (${a} \\S+ <-> tree ${b}|${b} \\S+ <-> tree ${a}) `, 'm'), check.output);
    const before = readFileSync(out, 'utf8');
    const lastBefore = Number([...before.matchAll(/^iter (\d+) /gm)].pop()?.[1]);
    for (const r of [headRoot, ...treeRoots]) {
      const deadline = Date.now() + 10_000;
      while (existsSync(`/proc/${r}`) && Date.now() < deadline) await sleep(20);
    }
    await sleep(1200); // dumped pids linger as zombies for a moment

    // restore the set: the head here, each host's tree in its host (own mount namespace: --root /)
    const pidfiles = imgs.map((_, i) => join(dir, `restored-${i}.pid`));
    const restoreArgs = (images: string, pidfile: string, extra: string[] = []) => [
      'restore',
      '--set',
      '--endpoint',
      daemon.endpoint,
      '--timeout',
      '60',
      images,
      '--',
      '-d',
      '--tcp-established',
      '--ext-unix-sk',
      '-o',
      'restore.log',
      '--pidfile',
      pidfile,
      ...extra,
    ];
    const restores = await Promise.all([
      run(STAGEGATE, restoreArgs(imgs[0]!, pidfiles[0]!)),
      ...hosts.map((x, i) =>
        run('nsenter', [`--net=/run/netns/${x.ns}`, STAGEGATE, ...restoreArgs(imgs[i + 1]!, pidfiles[i + 1]!, ['--root', '/'])]),
      ),
    ]);
    for (const p of pidfiles) {
      const r = readPidfile(p);
      if (r) roots.push(r);
    }
    restores.forEach((r, i) => assert.equal(r.code, 0, `${imgs[i]}: ${r.output}\n${tailOf(join(imgs[i]!, 'restore.log'))}`));
    const done = await waitFor(out, /^done$/m, 90_000);
    assert.doesNotMatch(done, /MISMATCH/);
    assert.match(done, new RegExp(`^iter ${ITERS - 1} total \\d+ ok$`, 'm'));
    // it went on from the checkpoint: no iteration printed twice, none skipped
    const iters = [...done.matchAll(/^iter (\d+) total \d+ ok$/gm)].map((m) => Number(m[1]));
    assert.deepEqual(
      iters,
      [...new Set(iters)].sort((a, b) => a - b),
    );
    assert.ok(iters.includes(lastBefore) && iters.at(-1) === ITERS - 1);
  });
});

function tailOf(path: string): string {
  try {
    return readFileSync(path, 'utf8').split('\n').slice(-20).join('\n');
  } catch {
    return '';
  }
}
