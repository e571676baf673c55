/**
 * `stagegate dump` without Node.js (hooks/dump.c) against the Node CLI's
 * (src/criu/dump.ts), the reference: the real daemon, the real hooks, and a
 * stand-in for criu that copies a template of images into -D and runs the
 * action script at pre-dump and post-dump, as `criu dump` does. The e2e
 * tests (spec/e2e/dump.test.ts) run the same driver with real criu.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Daemon, STAGEGATE, run } from '../../demo/harness';
import { RECORD_NAME, SAMPLE_BYTES, checkFiles, readRecord } from '../../src/checkpoint/commit-record';
import { decisionArrived } from '../support/scenario';
import { nodeMarked } from '../support/node-probe';

const FAKE_CRIU = `#!/bin/sh
# criu dump, as far as its action scripts and images directory show: $FAKE_CRIU_FAIL makes it fail
# after pre-dump (before any image is written)
[ "$1" = dump ] && [ "$2" = --action-script ] || exit 64
hook=$3; shift 3
dir=.
while [ $# -gt 0 ]; do [ "$1" = -D ] && dir=$2; shift; done
readlink /proc/$PPID/exe > "$FAKE_CRIU_PARENT"
export CRTOOLS_IMAGE_DIR="$dir" CRTOOLS_INIT_PID=$$
CRTOOLS_SCRIPT_ACTION=pre-dump "$hook" || exit 1
[ -n "$FAKE_CRIU_FAIL" ] && exit "$FAKE_CRIU_FAIL"
cp -P "$FAKE_CRIU_IMAGES"/* "$dir"/
CRTOOLS_SCRIPT_ACTION=post-dump "$hook" || exit 1
[ -n "$FAKE_CRIU_DROP_MARK" ] && rm -f "$STAGEGATE_COMMIT_MARK"
exit 0
`;

let dir: string;
let daemon: Daemon;
let fakeCriu: string;
let session = 0;
before(async () => {
  dir = mkdtempSync('/tmp/sg-dump-driver-');
  fakeCriu = join(dir, 'criu');
  writeFileSync(fakeCriu, FAKE_CRIU);
  chmodSync(fakeCriu, 0o755);
  daemon = await Daemon.start(dir, 30, 'none');
});
after(async () => {
  await daemon.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** A template of images: metadata, a page image of 5 MiB (sampled unless --full-checksum), stats. */
function template(name: string): string {
  const t = join(dir, `template-${name}`);
  mkdirSync(t);
  writeFileSync(join(t, 'core-1.img'), 'core of task 1');
  writeFileSync(join(t, 'pagemap-1.img'), Buffer.from([1, 2, 3, 4]));
  const pages = Buffer.alloc(5 * SAMPLE_BYTES);
  for (let i = 0; i < pages.length; i += 4096) pages.writeUInt32LE(i, i);
  writeFileSync(join(t, 'pages-1.img'), pages);
  writeFileSync(join(t, 'stats-dump'), 'stats');
  writeFileSync(join(t, 'dump.log'), 'not covered: a log');
  return t;
}

interface DumpRun {
  code: number | null;
  output: string;
  images: string;
  /** the executable that started criu */
  parent: string;
  /** whether Node.js was started */
  node: boolean;
}

/** One tree's `stagegate dump` of the template into a fresh images directory. */
async function dump(
  tree: string,
  tmpl: string,
  o: { session?: string; trees?: number; nodeCli?: boolean; fail?: number; dropMark?: boolean; extra?: string[] } = {},
): Promise<DumpRun> {
  const images = join(dir, `images-${tree}-${session++}`);
  mkdirSync(images);
  const probeDir = mkdtempSync(join(dir, 'probe-'));
  const { env, mark } = nodeMarked(probeDir);
  const parentFile = join(probeDir, 'parent');
  const s = o.session ?? `dd${session}`;
  const r = await run(
    STAGEGATE,
    ['dump', '--session', s, '--tree', tree, '--trees', String(o.trees ?? 1), '--endpoint', daemon.endpoint, ...(o.extra ?? [])].concat([
      '--timeout',
      '10',
      '--',
      '-t',
      '1',
      '-D',
      images,
    ]),
    {
      ...env,
      STAGEGATE_CRIU: fakeCriu,
      FAKE_CRIU_IMAGES: tmpl,
      FAKE_CRIU_PARENT: parentFile,
      ...(o.fail ? { FAKE_CRIU_FAIL: String(o.fail) } : {}),
      ...(o.dropMark ? { FAKE_CRIU_DROP_MARK: '1' } : {}),
      ...(o.nodeCli ? { STAGEGATE_NO_SWRK: '1' } : {}),
    },
  );
  const parent = existsSync(parentFile) ? readFileSync(parentFile, 'utf8').trim() : '';
  return { ...r, images, parent, node: existsSync(mark) };
}

const files = (images: string) => readRecord(images).files;

describe('stagegate dump without Node.js (hooks/dump.c)', () => {
  it('runs criu itself and writes the record the Node CLI writes, which the Node reader verifies', async () => {
    const t = template('same');
    const c = await dump('t0', t);
    assert.equal(c.code, 0, c.output);
    assert.ok(!c.node, 'Node.js was not started');
    assert.equal(c.parent, resolve('build/stagegate-hook-full'), 'criu was started by the C driver');
    assert.match(c.output, /stagegate dump: committed tree t0 of session \S+ attempt 1 as c-[0-9a-f]{32} \(4 image files\)/);
    const n = await dump('t0', t, { nodeCli: true });
    assert.equal(n.code, 0, n.output);
    assert.ok(n.node, 'the reference ran in Node.js');
    // the same images, the same digests (the page image sampled: its size and both ends)
    assert.deepEqual(files(c.images), files(n.images));
    assert.deepEqual(
      files(c.images).map((f) => f.name),
      ['core-1.img', 'pagemap-1.img', 'pages-1.img', 'stats-dump'],
    );
    assert.match(files(c.images).find((f) => f.name === 'pages-1.img')!.sha256, /^sampled:[0-9a-f]{64}$/);
    const rc = readRecord(c.images);
    const rn = readRecord(n.images);
    assert.deepEqual(Object.keys(rc), Object.keys(rn), 'the same fields in the same order');
    assert.deepEqual(
      { ...rc, committedAt: '', digest: '', commit: '', session: '', members: [] },
      { ...rn, committedAt: '', digest: '', commit: '', session: '', members: [] },
    );
    assert.equal(rc.members.length, 1);
    assert.match(rc.members[0]!.run, /^sg-[0-9a-f-]{36}$/);
    assert.deepEqual(await checkFiles(c.images, rc), []);
    // and the CLI's check of the set agrees
    const check = await run(STAGEGATE, ['check', c.images]);
    assert.equal(check.code, 0, check.output);
    assert.ok(!readdirSync(c.images).some((f) => f.endsWith('.tmp')), 'no temporary record left');
  });

  it('--full-checksum hashes page images whole: a change in the middle is then found', async () => {
    const t = template('full');
    const c = await dump('t0', t, { extra: ['--full-checksum'] });
    assert.equal(c.code, 0, c.output);
    assert.ok(!c.node);
    const r = readRecord(c.images);
    assert.equal(r.checksum, 'full');
    const whole = createHash('sha256')
      .update(readFileSync(join(c.images, 'pages-1.img')))
      .digest('hex');
    assert.equal(r.files.find((f) => f.name === 'pages-1.img')!.sha256, whole);
    const pages = readFileSync(join(c.images, 'pages-1.img'));
    pages.writeUInt8(pages.readUInt8(pages.length >> 1) ^ 0xff, pages.length >> 1);
    writeFileSync(join(c.images, 'pages-1.img'), pages);
    assert.deepEqual(await checkFiles(c.images, r), ['pages-1.img: content differs from the committed image']);
  });

  it('a failed criu: its exit code is passed on, the coordinator is told at once, the other tree rolls back, no record', async () => {
    const t = template('fail');
    const s = `failing${session}`;
    const [ok, failed] = await Promise.all([dump('t1', t, { session: s, trees: 2 }), dump('t0', t, { session: s, trees: 2, fail: 3 })]);
    assert.equal(failed.code, 3, failed.output);
    assert.ok(!failed.node);
    assert.equal(ok.code, 1, ok.output);
    assert.match(ok.output, /aborted at post-dump: .*\[E_TREE_FAILED\] tree t0 failed to dump: criu exited with 3/);
    const aborted = await decisionArrived(daemon, 'session-aborted');
    assert.match(aborted?.reason ?? '', /criu exited with 3/);
    assert.ok(!existsSync(join(ok.images, RECORD_NAME)) && !existsSync(join(failed.images, RECORD_NAME)), 'no record');
  });

  it('an image that is a symlink: no record is written, and the command fails', async () => {
    const t = template('link');
    symlinkSync('/etc/passwd', join(t, 'fdinfo-2.img'));
    const c = await dump('t0', t);
    assert.equal(c.code, 1, c.output);
    assert.ok(!c.node);
    assert.match(
      c.output,
      /no commit record written \(.*fdinfo-2\.img: a symlink \(not followed\)\), so this set does not count as committed/,
    );
    assert.ok(!readdirSync(c.images).some((f) => f.startsWith(RECORD_NAME) || f.endsWith('.tmp')), 'no record, whole or partial');
  });

  it('criu succeeded but the hook left no COMMIT mark: no record, and the command fails (the safe side)', async () => {
    const c = await dump('t0', template('nomark'), { dropMark: true });
    assert.equal(c.code, 1, c.output);
    assert.ok(!c.node);
    assert.match(
      c.output,
      /criu dumped tree t0, but the commit is not confirmed \(no commit mark from the hook\): no commit record written/,
    );
    assert.ok(!existsSync(join(c.images, RECORD_NAME)));
  });

  it('hands what it does not take to the Node CLI: --help, an option it does not know', async () => {
    const help = await run(STAGEGATE, ['dump', '--help'], nodeMarked(mkdtempSync(join(dir, 'probe-'))).env);
    assert.equal(help.code, 0, help.output);
    assert.match(help.output, /usage: stagegate dump --session S/);
    const probe = mkdtempSync(join(dir, 'probe-'));
    const { env, mark } = nodeMarked(probe);
    const bad = await run(STAGEGATE, ['dump', '--session', 's', '--tree', 't', '--trees', '1', '--bogus', '--', '-t', '1'], env);
    assert.ok(existsSync(mark), 'the CLI took it');
    assert.equal(bad.code, 64, bad.output);
  });
});
