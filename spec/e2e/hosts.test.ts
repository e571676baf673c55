/**
 * Several hosts: two "hosts" simulated by network namespaces this test makes
 * (a veth pair each, addresses only inside them), each running its own
 * `criu restore` of one tree; the hooks reach the coordinator over TCP with
 * CURVE. The tree on the second host is late; neither tree runs before both
 * are ready.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  Daemon,
  checkpointTrees,
  killTree,
  readPidfile,
  readSlots,
  restoreTree,
  sleep,
  type Checkpoint,
  type RestoreRun,
} from '../../demo/harness';
import { keygen } from '../../src/transport/keys';

const tag = process.pid % 10000;
const hosts = [1, 2].map((h) => ({ h, ns: `sg${tag}h${h}`, veth: `sg${tag}v${h}`, daemonIp: `10.231.${h}.1`, hostIp: `10.231.${h}.2` }));
const port = 31000 + (process.pid % 20000);
const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });

let dir: string;
let cp: Checkpoint;
let daemon: Daemon;
const runs: RestoreRun[] = [];

before(async () => {
  dir = mkdtempSync('/tmp/sg-hosts-');
  for (const x of hosts) {
    ip('netns', 'add', x.ns);
    ip('link', 'add', x.veth, 'type', 'veth', 'peer', 'name', `${x.veth}p`);
    ip('link', 'set', `${x.veth}p`, 'netns', x.ns);
    ip('addr', 'add', `${x.daemonIp}/30`, 'dev', x.veth);
    ip('link', 'set', x.veth, 'up');
    ip('netns', 'exec', x.ns, 'ip', 'addr', 'add', `${x.hostIp}/30`, 'dev', `${x.veth}p`);
    ip('netns', 'exec', x.ns, 'ip', 'link', 'set', `${x.veth}p`, 'up');
    ip('netns', 'exec', x.ns, 'ip', 'link', 'set', 'lo', 'up');
  }
  keygen(join(dir, 'daemon'));
  writeFileSync(join(dir, 'allow'), hosts.map((x) => keygen(join(dir, `host${x.h}`))).join('\n') + '\n');
  cp = await checkpointTrees(dir, 2, 3, `/dev/shm/sg-hosts-${process.pid}`);
  daemon = await Daemon.start(dir, 30, 'none', '', [
    ...hosts.flatMap((x) => ['--listen', `tcp://${x.daemonIp}:${port}`]),
    '--curve-secret',
    join(dir, 'daemon.secret'),
    '--allow',
    join(dir, 'allow'),
  ]);
});

after(async () => {
  for (const r of runs) {
    const root = readPidfile(r.pidfile);
    if (root) killTree(root);
  }
  await daemon?.stop();
  for (const x of hosts) {
    try {
      ip('netns', 'del', x.ns);
    } catch {
      // already gone
    }
  }
  for (const f of cp?.shmFiles ?? []) rmSync(f, { force: true });
  rmSync(dir, { recursive: true, force: true });
});

describe('several hosts over TCP with CURVE', () => {
  it('restores one tree per network-namespace host through one coordinator, the late host holding the other', async () => {
    const restoreOn = (i: number) => {
      const x = hosts[i]!;
      const r = restoreTree({
        endpoint: `tcp://${x.daemonIp}:${port}`,
        session: 'hosts',
        tree: `host${x.h}`,
        trees: 2,
        images: cp.images[i]!,
        workDir: dir,
        via: ['ip', 'netns', 'exec', x.ns],
        extraEnv: { STAGEGATE_CURVE_SERVER_PUBLIC: join(dir, 'daemon.public'), STAGEGATE_CURVE_CLIENT: join(dir, `host${x.h}`) },
      });
      runs.push(r);
      return r;
    };
    const first = restoreOn(0);
    await sleep(1500);
    const late = restoreOn(1);
    for (const r of await Promise.all([first.done, late.done])) assert.equal(r.code, 0, r.output);
    const events = daemon.messages.flatMap((m) => ('event' in m ? [m.event] : []));
    assert.deepEqual([...new Set(events.map((e) => e.tree))].sort(), ['host1', 'host2']);
    const lateReady = Number(events.find((e) => e.tree === 'host2' && e.action === 'post-restore')!.wallNs / 1_000_000n);
    await sleep(200);
    const slots = readSlots(cp.shm);
    assert.equal(slots.length, 6);
    for (const s of slots) {
      assert.equal(s.gaps, 1);
      assert.ok(s.resumedAtMs >= lateReady, `tree ${s.tree} task ${s.idx} ran before the late host was ready`);
    }
    const allowed = daemon.logs().filter((l) => l.includes('client allowed')).length;
    assert.ok(allowed >= 2, 'both hosts authenticated with CURVE');
  });
});
