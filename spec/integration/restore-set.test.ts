/**
 * `stagegate restore --set` before criu runs: which directories of a set it
 * takes (those dumped on this host), and what it refuses, on crafted sets;
 * which sets the C driver takes itself (hooks/set-restore.c) and which it
 * hands to the Node CLI.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { STAGEGATE, run } from '../../demo/harness';
import { RECORD_NAME, commitId, writeRecord } from '../../src/checkpoint/commit-record';
import { nodeMarked } from '../support/node-probe';

let dir: string;
before(() => {
  dir = mkdtempSync('/tmp/sg-restore-set-');
});
after(() => rmSync(dir, { recursive: true, force: true }));

async function committedSet(name: string, hosts: string[], runs = hosts.map((_, i) => `r${i}`)): Promise<string[]> {
  const members = hosts.map((host, i) => ({ tree: `t${i}`, host, run: runs[i]! }));
  const commit = commitId('s', 1, members);
  const dirs: string[] = [];
  for (const [i, m] of members.entries()) {
    const d = join(dir, `${name}-${i}`);
    mkdirSync(d);
    writeFileSync(join(d, 'core-1.img'), `core ${i}`);
    await writeRecord(d, { session: 's', attempt: 1, commit, tree: m.tree, host: m.host, members, checksum: 'sampled' }, 'sampled');
    dirs.push(d);
  }
  return dirs;
}

describe('restore --set', () => {
  it('restores only the trees dumped on this host, and says so; none here is refused', async () => {
    const elsewhere = await committedSet('elsewhere', ['node-a', 'node-b']);
    const r = await run(STAGEGATE, ['restore', '--set', '--endpoint', `ipc://${dir}/none.sock`, ...elsewhere, '--', '-d']);
    assert.notEqual(r.code, 0);
    assert.match(r.output, new RegExp(`none of these trees was dumped on this host \\(${hostname()}; they were on node-a, node-b\\)`));
  });

  it('refuses a set one of whose directories has no record, naming it', async () => {
    const [a] = await committedSet('partial', [hostname(), 'node-b']);
    const bare = join(dir, 'bare');
    mkdirSync(bare);
    writeFileSync(join(bare, 'core-1.img'), 'x');
    const r = await run(STAGEGATE, ['restore', '--set', '--endpoint', `ipc://${dir}/none.sock`, a!, bare, '--', '-d']);
    assert.equal(r.code, 1);
    assert.match(r.output, /bare: no commit record: this checkpoint was never committed/);
    assert.match(r.output, /refused: this is not a committed set/);
  });

  // criu then fails on these made-up images (or the gate, with no coordinator, after 1 s): what
  // matters here is who checked the set, and that a set is refused or taken as before
  const restoreSet = (dirs: string[], env: NodeJS.ProcessEnv, more: string[] = []) =>
    run(STAGEGATE, ['restore', '--set', ...more, '--endpoint', `ipc://${dir}/none.sock`, '--timeout', '1', ...dirs, '--', '-d'], env);

  it('takes a committed set itself, whatever its records hold: each record digest reproduced byte for byte', async () => {
    // JSON.stringify's escapes, UTF-8 of 1 to 4 bytes, and the characters JSON leaves as they are
    const odd = ['quote " backslash \\ slash /', 'tab\t newline\n cr\r ff\f bs\b ctl\u0001\u001f del\u007f', 'é 漢 😀 \u2028\u2029'];
    const dirs = await committedSet('odd', odd, ['r"1', 'r\\2', 'r😀3']);
    const { env, mark } = nodeMarked(dir);
    const r = await restoreSet(dirs, env, ['--any-host']);
    assert.ok(!existsSync(mark), `Node.js was started: ${existsSync(mark) ? readFileSync(mark, 'utf8') : ''}\n${r.output}`);
    assert.doesNotMatch(r.output, /refused|not a committed set/);
  });

  it('hands every set it does not take itself to the CLI, which refuses or restores it as before', async () => {
    // a changed image: refused, naming it
    const changed = await committedSet('changed', [hostname()]);
    writeFileSync(join(changed[0]!, 'core-1.img'), 'core X');
    let { env, mark } = nodeMarked(join(dir, 'changed-0'));
    let r = await restoreSet(changed, env);
    assert.ok(existsSync(mark), 'the CLI took it');
    assert.equal(r.code, 1, r.output);
    assert.match(r.output, /core-1.img: content differs from the committed image/);
    assert.match(r.output, /refused: this is not a committed set/);
    // ...also in the last of several members, whose images the driver checks at once (a thread each)
    const several = await committedSet('several', [hostname(), hostname(), hostname(), hostname()]);
    writeFileSync(join(several[3]!, 'core-1.img'), 'core Y');
    ({ env, mark } = nodeMarked(join(dir, 'several-3')));
    r = await restoreSet(several, env);
    assert.ok(existsSync(mark), 'the CLI took it');
    assert.equal(r.code, 1, r.output);
    assert.match(r.output, /several-3: core-1.img: content differs from the committed image/);
    // a record whose digest this file does not reproduce (a fraction: JavaScript's number format), yet valid
    const fraction = await committedSet('fraction', [hostname()]);
    const path = join(fraction[0]!, RECORD_NAME);
    const { digest: _, ...body } = JSON.parse(readFileSync(path, 'utf8'));
    const edited = { ...body, note: 1.5 };
    writeFileSync(path, JSON.stringify({ ...edited, digest: createHash('sha256').update(JSON.stringify(edited)).digest('hex') }));
    ({ env, mark } = nodeMarked(join(dir, 'fraction-0')));
    r = await restoreSet(fraction, env);
    assert.ok(existsSync(mark), 'the CLI took it');
    assert.doesNotMatch(r.output, /refused|not a committed set/, 'and found it committed');
    // --force is the CLI's
    const forced = await committedSet('forced', [hostname()]);
    ({ env, mark } = nodeMarked(join(dir, 'forced-0')));
    r = await restoreSet(forced, env, ['--force']);
    assert.ok(existsSync(mark), 'the CLI took --force');
    // established TCP streams in a tree without a network namespace of its own: the CLI holds them
    const tcp = await committedSet('tcp', [hostname()]);
    writeFileSync(join(tcp[0]!, 'tcp-stream-1.img'), '');
    ({ env, mark } = nodeMarked(join(dir, 'tcp-0')));
    r = await restoreSet(tcp, env);
    assert.ok(existsSync(mark), 'the CLI took the set whose connections it must hold');
    // ...but not those of a tree with its own network namespace (criu locks them itself)
    const netns = await committedSet('netns', [hostname()]);
    writeFileSync(join(netns[0]!, 'tcp-stream-1.img'), '');
    writeFileSync(join(netns[0]!, 'netns-1.img'), '');
    ({ env, mark } = nodeMarked(join(dir, 'netns-0')));
    r = await restoreSet(netns, env);
    assert.ok(!existsSync(mark), `the set was taken natively: ${r.output}`);
  });
});
