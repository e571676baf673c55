/** TCP endpoints with CURVE: allowed and rogue client keys, plain TCP refused. */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import winston from 'winston';
import { Coordinator } from '../../src/coordinator';
import { keygen, readAllowList, readKey } from '../../src/transport/curve';
import { run, STAGEGATE } from '../../demo/harness';
import { hookEnv, runHook } from '../support/hook';

let dir: string;
let c: Coordinator;
const port = 30000 + (process.pid % 20000);
const tcp = `tcp://127.0.0.1:${port}`;

before(async () => {
  dir = mkdtempSync('/tmp/sg-curve-');
  keygen(join(dir, 'server'));
  keygen(join(dir, 'allowed'));
  keygen(join(dir, 'rogue'));
  writeFileSync(join(dir, 'allow'), `# clients\n${readKey(join(dir, 'allowed.public'))}\n`);
  c = await Coordinator.start({
    listen: [`ipc://${dir}/hooks.sock`, tcp],
    events: [`ipc://${dir}/events.sock`],
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

const overTcp = (session: string, client?: string) =>
  hookEnv(tcp, 'post-restore', {
    STAGEGATE_SESSION: session,
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
    assert.equal(c.snapshot()?.sessions['curve-rogue'], undefined, 'the rogue event never reached the pipeline');
  });

  it('keeps the local IPC endpoint open to hooks without keys', async () => {
    const r = await runHook(hookEnv(`ipc://${dir}/hooks.sock`, 'post-restore', { STAGEGATE_SESSION: 'curve-ipc', CRTOOLS_INIT_PID: '999' }));
    assert.equal(r.code, 0, r.stderr);
  });

  it('refuses to serve plain TCP unless forced', async () => {
    const r = await run(STAGEGATE, ['serve', '--listen', 'tcp://127.0.0.1:1', '--events', `ipc://${dir}/e2.sock`]);
    assert.equal(r.code, 64);
    assert.match(r.output, /refusing plain TCP endpoint tcp:\/\/127\.0\.0\.1:1: give --curve-secret and --allow \(see stagegate keygen\), or --insecure-tcp/);
    const half = await run(STAGEGATE, ['serve', '--listen', tcp, '--curve-secret', join(dir, 'server.secret')]);
    assert.equal(half.code, 64);
    assert.match(half.output, /--curve-secret and --allow go together/);
  });
});
