/**
 * `stagegate restore --set` before criu runs: which directories of a set it
 * takes (those dumped on this host), and what it refuses, on crafted sets.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { STAGEGATE, run } from '../../demo/harness';
import { commitId, writeRecord } from '../../src/checkpoint/commit-record';

let dir: string;
before(() => {
  dir = mkdtempSync('/tmp/sg-restore-set-');
});
after(() => rmSync(dir, { recursive: true, force: true }));

async function committedSet(name: string, hosts: string[]): Promise<string[]> {
  const members = hosts.map((host, i) => ({ tree: `t${i}`, host, run: `r${i}` }));
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
});
