/**
 * The hook where container runtimes run it (criu's configuration file, no
 * STAGEGATE_* environment): its container found by the id in its images
 * directory, its session and tree from the containers file, and everything
 * else refused loudly.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startCoordinator, until, type TestCoordinator } from '../support/coordinator';
import { runHook } from '../support/hook';

const ID = 'a1b2c3d4e5f6'.padEnd(64, '0');
const OTHER = 'f'.repeat(64);
let c: TestCoordinator;
let dir: string;
let images: string;

before(async () => {
  c = await startCoordinator(5000);
  dir = mkdtempSync('/tmp/sg-containers-');
  images = join(dir, 'overlay-containers', ID, 'userdata', 'checkpoint');
  mkdirSync(images, { recursive: true });
});
after(async () => {
  await c.close();
  rmSync(dir, { recursive: true, force: true });
});

function containersFile(name: string, text: string, mode = 0o644): string {
  const f = join(dir, name);
  writeFileSync(f, text);
  chmodSync(f, mode);
  return f;
}

/** The environment runc's criu gives a configured action script: CRTOOLS_* and the file, nothing of stagegate's. */
const env = (file: string, action: string, imageDir = images) => ({
  CRTOOLS_SCRIPT_ACTION: action,
  CRTOOLS_IMAGE_DIR: imageDir,
  STAGEGATE_CONTAINERS: file,
});

describe('hook in a container runtime (containers file)', () => {
  it('takes session, tree and tree count from the line naming its container (id prefix), and passes its gate', async () => {
    const file = containersFile(
      'ok.conf',
      `# containers of the app\n${OTHER} session=other tree=x trees=1 endpoint=${c.endpoint}\n${ID.slice(0, 12)} session=ctr tree=web trees=1 endpoint=${c.endpoint} timeout=5\n`,
    );
    const r = await runHook(env(file, 'pre-dump'));
    assert.equal(r.code, 0, r.stderr);
    assert.ok(await until(() => c.messages.some((m) => 'event' in m && m.event.session === 'ctr')));
    const ev = c.messages.flatMap((m) => ('event' in m && m.event.session === 'ctr' ? [m.event] : []))[0]!;
    assert.equal(ev.tree, 'web');
    assert.equal(ev.expectedTrees, 1);
    assert.equal(ev.imageDir, images);
  });

  it('refuses a container the file does not name, and an images directory with no container id', async () => {
    const file = containersFile('other.conf', `${OTHER} session=other tree=x trees=1 endpoint=${c.endpoint}\n`);
    const r = await runHook(env(file, 'pre-restore'));
    assert.equal(r.code, 2);
    assert.match(r.stderr, new RegExp(`container ${ID.slice(0, 12)} is not named in ${file}: refused`));
    const none = await runHook(env(file, 'pre-restore', dir));
    assert.equal(none.code, 2);
    assert.match(none.stderr, /no container id in the images directory/);
  });

  it('refuses a containers file others may write, a symlink, and a setting it does not know', async () => {
    const line = `${ID} session=ctr tree=web trees=1 endpoint=${c.endpoint}\n`;
    const writable = containersFile('writable.conf', line, 0o666);
    const w = await runHook(env(writable, 'pre-dump'));
    assert.equal(w.code, 2);
    assert.match(w.stderr, /refusing the containers file .*writable by no one else/);
    const link = join(dir, 'link.conf');
    symlinkSync(containersFile('target.conf', line), link);
    const l = await runHook(env(link, 'pre-dump'));
    assert.equal(l.code, 2);
    assert.match(l.stderr, /cannot open the containers file .*link.conf/);
    const unknown = containersFile('unknown.conf', `${ID} session=ctr tree=web trees=1 activator=exec:rm\n`);
    const u = await runHook(env(unknown, 'pre-dump'));
    assert.equal(u.code, 2);
    assert.match(u.stderr, /line 1: unknown setting 'activator=exec:rm'/);
    const bad = containersFile('bad.conf', `${ID} session=../etc tree=web trees=1 endpoint=${c.endpoint}\n`);
    const b = await runHook(env(bad, 'pre-dump'));
    assert.equal(b.code, 2);
    assert.match(b.stderr, /STAGEGATE_SESSION is invalid/);
  });
});
