/**
 * A real two-tree restore recorded by `stagegate trace` to all three formats:
 * the JSONL is lossless, the JSON is valid Chrome trace-event format, and the
 * HTML page renders in headless Chromium with no console error (its
 * screenshot is kept in spec/artifacts/).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { exited, run, sleep, STAGEGATE } from '../../demo/harness';
import { scenario } from '../support/scenario';
import { fromJsonl } from '../../src/trace/jsonl';
import { projectRoot } from '../../src/paths';

const ARTIFACTS = resolve(projectRoot, 'spec/artifacts');

async function chromium(args: string[]) {
  const profile = mkdtempSync('/tmp/sg-chromium-');
  try {
    return await run('chromium', [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      `--user-data-dir=${profile}`,
      '--enable-logging=stderr',
      '--v=0',
      ...args,
    ]);
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
}

describe('stagegate trace on a real restore', () => {
  it('records two trees to .jsonl, converts it to Chrome trace JSON and to an HTML page that renders cleanly', async () => {
    const { dir, daemon, restore } = await scenario('trace', 2);
    const jsonl = join(dir, 'trace.jsonl');
    const rec = spawn(STAGEGATE, ['trace', '--out', jsonl, '--session', 'trace', '--events', daemon.events], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    await sleep(800);
    const a = restore(0);
    await sleep(500);
    const b = restore(1);
    for (const r of await Promise.all([a.done, b.done])) assert.equal(r.code, 0, r.output);
    const recorded = await Promise.race([exited(rec), sleep(10_000).then(() => null)]);
    assert.ok(recorded && recorded.code === 0, 'the recording ends by itself once the session completes');

    // .jsonl: lossless, the same messages the daemon published
    const messages = fromJsonl(readFileSync(jsonl, 'utf8'));
    const mine = daemon.messages.filter((m) => ('event' in m ? m.event.session : m.decision.session) === 'trace');
    assert.deepEqual(messages, mine);

    // .json: Chrome trace-event format
    const json = join(dir, 'trace.json');
    assert.equal((await run(STAGEGATE, ['trace', '--from', jsonl, '--out', json])).code, 0);
    const t = JSON.parse(readFileSync(json, 'utf8'));
    assert.ok(Array.isArray(t.traceEvents) && t.traceEvents.length > 20);
    for (const e of t.traceEvents) {
      assert.equal(typeof e.name, 'string');
      assert.ok(['X', 'i', 'M'].includes(e.ph), `phase ${e.ph}`);
      assert.ok(Number.isInteger(e.pid) && Number.isInteger(e.tid));
      if (e.ph === 'X') assert.ok(Number.isInteger(e.ts) && e.ts >= 0 && Number.isInteger(e.dur) && e.dur >= 1, JSON.stringify(e));
      if (e.ph === 'i') assert.ok(Number.isInteger(e.ts) && ['g', 'p', 't'].includes(e.s), JSON.stringify(e));
      if (e.ph === 'M') assert.equal(typeof e.args.name, 'string');
    }
    const tracks = t.traceEvents
      .filter((e: { name: string }) => e.name === 'thread_name')
      .map((e: { args: { name: string } }) => e.args.name);
    assert.deepEqual(tracks, ['coordinator', 'tree t0', 'tree t1']);
    assert.equal(t.traceEvents.filter((e: { name: string }) => e.name === 'waiting at post-restore gate').length, 2);
    assert.ok(t.traceEvents.some((e: { name: string }) => /^BO .* activated/.test(e.name)));
    const stats = t.traceEvents.filter((e: { name: string }) => e.name === 'criu restore stats');
    assert.equal(stats.length, 2, "criu's stats-restore is folded in for both trees");
    assert.ok(stats.every((e: { args: { restoreTimeUs: number } }) => e.args.restoreTimeUs > 0));

    // .html: renders in headless Chromium with no console error
    const html = join(dir, 'trace.html');
    assert.equal((await run(STAGEGATE, ['trace', '--from', jsonl, '--out', html])).code, 0);
    mkdirSync(ARTIFACTS, { recursive: true });
    const png = join(ARTIFACTS, 'trace.png');
    const shot = await chromium(['--hide-scrollbars', '--window-size=1240,900', `--screenshot=${png}`, `file://${html}`]);
    assert.equal(shot.code, 0, shot.output);
    assert.ok(
      readFileSync(png)
        .subarray(0, 8)
        .equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])),
      'a PNG',
    );
    assert.ok(statSync(png).size > 20_000, 'the screenshot has content');
    assert.doesNotMatch(shot.output, /CONSOLE|Uncaught/, 'no console message while rendering');
    const dom = await chromium(['--dump-dom', `file://${html}`]);
    assert.match(dom.output, /<svg [^>]*aria-label="restore timeline"/);
    assert.match(dom.output, /<td>trace<\/td><td>t0<\/td>/);
    assert.match(dom.output, /<td>trace<\/td><td>t1<\/td>/);
    assert.match(dom.output, /Shared buffer objects: who maps what, where/);
    assert.doesNotMatch(dom.output, /CONSOLE|Uncaught/);
  });

  it('refuses an unknown format and a malformed recording with a specific error', async () => {
    const bad = await run(STAGEGATE, ['trace', '--out', '/tmp/x.txt', '--duration', '1']);
    assert.equal(bad.code, 64);
    assert.match(bad.output, /unknown format '\.txt': the file name must end in \.jsonl, \.json, \.html/);
    const dir = mkdtempSync('/tmp/sg-trace-');
    try {
      const file = join(dir, 'broken.jsonl');
      writeFileSync(file, '{"seq":"1","event":{}}\nnot json\n');
      const r = await run(STAGEGATE, ['trace', '--from', file, '--out', join(dir, 'x.html')]);
      assert.equal(r.code, 64);
      assert.match(r.output, /broken.jsonl: line 2: /);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
