/** TCP endpoints with CURVE: allowed and rogue client keys, plain TCP refused. */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import winston from 'winston';
import { Coordinator } from '../../src/coordinator';
import { keygen, readKey } from '../../src/transport/keys';
import { permits, readAllowList } from '../../src/transport/allow-list';
import { Dealer, Subscriber } from 'zeromq';
import { openSession, requestStatus } from '../../src/transport/client';
import { decodeVerdict, encodeOpen, encodeRequestEvent, encodeSealed } from '../../src/protocol/codec';
import { Sealer } from '../../src/transport/seal';
import { stageEvent } from '../unit/fixtures';
import { run, STAGEGATE } from '../../demo/harness';
import { decode } from 'z85';
import { hookEnv, runHook } from '../support/hook';

let dir: string;
let c: Coordinator;
const port = 30000 + (process.pid % 20000);
const tcp = `tcp://127.0.0.1:${port}`;
const tcpEvents = `tcp://127.0.0.1:${port + 1}`;

before(async () => {
  dir = mkdtempSync('/tmp/sg-curve-');
  keygen(join(dir, 'server'));
  keygen(join(dir, 'allowed'));
  keygen(join(dir, 'rogue'));
  keygen(join(dir, 'scoped'));
  keygen(join(dir, 'owner'));
  const pub = (name: string) => readKey(join(dir, `${name}.public`));
  writeFileSync(join(dir, 'allow'), `# clients\n${pub('allowed')}\n${pub('scoped')} job-a/t1 job-a/rank-*\n${pub('owner')} job-b\n`);
  c = await Coordinator.start({
    listen: [`ipc://${dir}/hooks.sock`, tcp],
    events: [`ipc://${dir}/events.sock`, tcpEvents],
    deadlineMs: 10_000,
    activator: 'none',
    curve: { secretKey: readKey(join(dir, 'server.secret')), allow: readAllowList(join(dir, 'allow')) },
    logger: winston.createLogger({ silent: true }),
  });
});
after(() => {
  c.close();
  rmSync(dir, { recursive: true, force: true });
});

const overTcp = (session: string, client?: string, tree = 't1', trees = 1) =>
  hookEnv(tcp, 'post-restore', {
    STAGEGATE_SESSION: session,
    STAGEGATE_TREE: tree,
    STAGEGATE_TREES: String(trees),
    CRTOOLS_INIT_PID: '999',
    STAGEGATE_TIMEOUT: '1.5',
    ...(client ? { STAGEGATE_CURVE_SERVER_PUBLIC: join(dir, 'server.public'), STAGEGATE_CURVE_CLIENT: join(dir, client) } : {}),
  });

describe('CURVE on TCP', () => {
  it('keygen writes a private secret key and a public key', () => {
    assert.equal(statSync(join(dir, 'server.secret')).mode & 0o777, 0o600);
    assert.equal(readKey(join(dir, 'server.public')).length, 40);
  });

  it('serves a hook whose key is in the allow-list', async () => {
    const r = await runHook(overTcp('curve-ok', 'allowed'));
    assert.equal(r.code, 0, r.stderr);
  });

  it('never answers a rogue key, nor a client without CURVE: their gated hooks abort', async () => {
    for (const client of ['rogue', undefined]) {
      const r = await runHook(overTcp(`curve-${client ?? 'plain'}`, client));
      assert.equal(r.code, 1);
      assert.match(r.stderr, /no verdict from the coordinator at tcp:\/\/127\.0\.0\.1:\d+ within 1\.5s/);
    }
    assert.equal(c.snapshot()?.sessions.get('curve-rogue'), undefined, 'the rogue event never reached the pipeline');
  });

  it('binds a scoped key to its sessions and trees: anything else is refused with E_FORBIDDEN', async () => {
    const ok = await Promise.all(['t1', 'rank-3'].map((tree) => runHook(overTcp('job-a', 'scoped', tree, 2))));
    for (const r of ok) assert.equal(r.code, 0, r.stderr);
    for (const [session, tree] of [
      ['job-a', 't2'],
      ['job-b', 't1'],
    ] as const) {
      const r = await runHook(overTcp(session, 'scoped', tree));
      assert.equal(r.code, 1);
      assert.match(r.stderr, new RegExp(`\\[E_FORBIDDEN\\] client key \\S+ may not act on session ${session} tree ${tree}`));
    }
    assert.equal(c.snapshot()?.sessions.get('job-b'), undefined, 'the refused event never reached the pipeline');
    assert.deepEqual([...c.snapshot()!.sessions.get('job-a')!.trees.keys()].sort(), ['rank-3', 't1']);
  });

  it('lets only a key scoped to a whole session open it', async () => {
    const env = (client: string) => ({
      STAGEGATE_CURVE_SERVER_PUBLIC: join(dir, 'server.public'),
      STAGEGATE_CURVE_CLIENT: join(dir, client),
    });
    const saved = { ...process.env };
    try {
      Object.assign(process.env, env('scoped'));
      const refused = await openSession(tcp, { session: 'job-a', expectedTrees: 2, attempt: 2, deadlineMs: 0 });
      assert.equal(refused.proceed, false);
      assert.equal(refused.code, 'E_FORBIDDEN');
      assert.match(refused.reason, /may not open session job-a \(needs the scope job-a\/\*\)/);
      Object.assign(process.env, env('owner'));
      const opened = await openSession(tcp, { session: 'job-b', expectedTrees: 2, attempt: 1, deadlineMs: 0 });
      assert.equal(opened.proceed, true, opened.reason);
    } finally {
      process.env = saved;
    }
  });

  it('refuses unsealed requests and forged seals on CURVE', async () => {
    const d = new Dealer({
      linger: 0,
      receiveTimeout: 3000,
      curveServerKey: readKey(join(dir, 'server.public')),
      curvePublicKey: readKey(join(dir, 'allowed.public')),
      curveSecretKey: readKey(join(dir, 'allowed.secret')),
    });
    try {
      d.connect(tcp);
      const frame = encodeRequestEvent(stageEvent('t1', 'post-restore', { session: 'unsealed', expectedTrees: 1 }));
      await d.send(frame);
      const plain = decodeVerdict((await d.receive())[0]!);
      assert.equal(plain.proceed, false);
      assert.equal(plain.code, 'E_FORBIDDEN');
      assert.match(plain.reason, /must be sealed with the client key/);
      // claims the scoped key without its secret: the MAC cannot match
      const forged = encodeSealed(frame, {
        clientKey: Buffer.from(decode(readKey(join(dir, 'owner.public')))!),
        mac: Buffer.alloc(32, 7),
        nonce: Buffer.alloc(16),
        sentNs: BigInt(Date.now()) * 1_000_000n,
      });
      await d.send(forged);
      await assert.rejects(d.receive(), 'no answer without an address to answer');
    } finally {
      d.close();
    }
    const rejected = c.snapshot()?.sessions.get('unsealed');
    assert.equal(rejected, undefined);
  });

  it('takes a seal once, recently, and only on a connection made by its key', async () => {
    const keys = (name: string) => ({ publicKey: readKey(join(dir, `${name}.public`)), secretKey: readKey(join(dir, `${name}.secret`)) });
    const server = readKey(join(dir, 'server.public'));
    const sealer = (name: string) => new Sealer(keys(name), server);
    const dealer = (name: string, routingId: string) => {
      const d = new Dealer({
        linger: 0,
        receiveTimeout: 1500,
        curveServerKey: server,
        curvePublicKey: keys(name).publicKey,
        curveSecretKey: keys(name).secretKey,
        routingId,
      });
      d.connect(tcp);
      return d;
    };
    const sealedOpen = (session: string, by: string, nowNs?: bigint) => {
      const frame = encodeOpen({ session, expectedTrees: 1, attempt: 1, deadlineMs: 0 });
      return encodeSealed(frame, sealer(by).seal(frame, nowNs));
    };
    const operator = dealer('allowed', sealer('allowed').connectionId());
    const scoped = dealer('scoped', sealer('scoped').connectionId());
    try {
      const once = sealedOpen('seal-once', 'allowed');
      await operator.send(once);
      assert.equal(decodeVerdict((await operator.receive())[0]!).proceed, true, 'a fresh seal is taken');
      await operator.send(once);
      await assert.rejects(operator.receive(), 'the same seal again is refused (no answer: nothing in it can be trusted)');
      // an operator's seal over a connection the scoped key made: refused, whatever the seal says
      await scoped.send(sealedOpen('seal-borrowed', 'allowed'));
      await assert.rejects(scoped.receive());
      assert.equal(c.snapshot()?.sessions.get('seal-borrowed'), undefined, 'the borrowed seal opened nothing');
      await operator.send(sealedOpen('seal-stale', 'allowed', BigInt(Date.now() - 10 * 60_000) * 1_000_000n));
      await assert.rejects(operator.receive());
      assert.equal(c.snapshot()?.sessions.get('seal-stale'), undefined, 'a seal from 10 minutes ago opened nothing');
      // the same connection goes on with fresh seals
      await operator.send(sealedOpen('seal-next', 'allowed'));
      assert.equal(decodeVerdict((await operator.receive())[0]!).proceed, true);
    } finally {
      operator.close();
      scoped.close();
    }
  });

  it('parses allow-list scopes and matches them as globs', () => {
    const list = readAllowList(join(dir, 'allow'));
    assert.equal(list.get(readKey(join(dir, 'allowed.public'))), null);
    const scoped = list.get(readKey(join(dir, 'scoped.public')))!;
    assert.ok(permits(scoped, 'job-a', 'rank-12'));
    assert.ok(!permits(scoped, 'job-a', 'rank'));
    assert.ok(!permits(scoped, 'job-ab', 't1'));
    assert.ok(!permits(scoped, 'job-a', null));
    assert.ok(permits(list.get(readKey(join(dir, 'owner.public')))!, 'job-b', null));
    writeFileSync(join(dir, 'bad-allow'), `${readKey(join(dir, 'allowed.public'))} job/a/b\n`);
    assert.throws(() => readAllowList(join(dir, 'bad-allow')), /bad-allow:1: scope 'job\/a\/b' is not SESSION or SESSION\/TREE/);
  });

  it('keeps the local IPC endpoint open to hooks without keys', async () => {
    const r = await runHook(
      hookEnv(`ipc://${dir}/hooks.sock`, 'post-restore', { STAGEGATE_SESSION: 'curve-ipc', CRTOOLS_INIT_PID: '999' }),
    );
    assert.equal(r.code, 0, r.stderr);
  });

  it('refuses to serve plain TCP unless forced', async () => {
    const r = await run(STAGEGATE, ['serve', '--listen', 'tcp://127.0.0.1:1', '--events', `ipc://${dir}/e2.sock`]);
    assert.equal(r.code, 64);
    assert.match(
      r.output,
      /refusing plain TCP endpoint tcp:\/\/127\.0\.0\.1:1: give --curve-secret and --allow \(see stagegate keygen\), or --insecure-tcp/,
    );
    const half = await run(STAGEGATE, ['serve', '--listen', tcp, '--curve-secret', join(dir, 'server.secret')]);
    assert.equal(half.code, 64);
    assert.match(half.output, /--curve-secret and --allow go together/);
  });

  it('shows a scoped key only its own sessions and trees in status, and keeps it off the events endpoint', async () => {
    await runHook(overTcp('job-a', 'scoped', 't1', 2)); // job-a has trees t1 and rank-3 (and other sessions exist)
    const saved = { ...process.env };
    try {
      Object.assign(process.env, {
        STAGEGATE_CURVE_SERVER_PUBLIC: join(dir, 'server.public'),
        STAGEGATE_CURVE_CLIENT: join(dir, 'scoped'),
      });
      const mine = await requestStatus(tcp);
      assert.deepEqual(
        mine.sessions.map((s) => s.session),
        ['job-a'],
      );
      assert.deepEqual(mine.sessions[0]!.trees.map((t) => t.tree).sort(), ['rank-3', 't1']);
      Object.assign(process.env, { STAGEGATE_CURVE_CLIENT: join(dir, 'allowed') });
      const all = await requestStatus(tcp);
      assert.ok(all.sessions.length > 1 && all.sessions.some((s) => s.session === 'curve-ok'), 'an operator key sees every session');
    } finally {
      process.env = saved;
    }
    const subscriber = (client: string) => {
      const s = new Subscriber({
        curveServerKey: readKey(join(dir, 'server.public')),
        curvePublicKey: readKey(join(dir, `${client}.public`)),
        curveSecretKey: readKey(join(dir, `${client}.secret`)),
        receiveTimeout: 1500,
      });
      s.connect(tcpEvents);
      s.subscribe();
      return s;
    };
    // stagegate watch on the CURVE events endpoint, with the operator's keys from the hook's environment
    const watch = spawn(STAGEGATE, ['watch', '--events', tcpEvents, '--endpoint', tcp], {
      env: { ...process.env, STAGEGATE_CURVE_SERVER_PUBLIC: join(dir, 'server.public'), STAGEGATE_CURVE_CLIENT: join(dir, 'allowed') },
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let watched = '';
    watch.stdout!.on('data', (d) => (watched += d));
    const operator = subscriber('allowed');
    const scoped = subscriber('scoped');
    try {
      await new Promise((r) => setTimeout(r, 1500)); // the subscriptions (and watch's Node.js start) are in place
      await runHook(overTcp('curve-events', 'allowed'));
      const [topic] = await operator.receive();
      assert.equal(topic!.toString(), 'curve-events');
      await assert.rejects(scoped.receive(), /timed out|EAGAIN/i, 'a scoped key receives nothing from the events endpoint');
      for (let i = 0; i < 50 && !/curve-events/.test(watched); i++) await new Promise((r) => setTimeout(r, 100));
      assert.match(watched, / curve-events t1 event post-restore/, 'stagegate watch follows a CURVE events endpoint');
    } finally {
      operator.close();
      scoped.close();
      watch.kill('SIGTERM');
    }
  });
});
