/** Writes a trace file in the format its extension names: .jsonl, .json (Chrome trace events), .html. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, extname } from 'node:path';
import type { PublishedMessage } from '../protocol/codec';
import { readRestoreStats } from '../images/stats';
import { UsageError } from '../errors';
import { toChromeTrace } from './chrome';
import { toHtml } from './html';
import { toJsonl } from './jsonl';
import { buildTimeline } from './timeline';

export const TRACE_FORMATS = ['.jsonl', '.json', '.html'] as const;

/** CRIU's restore statistics of a tree: its stats-restore, found in one of its directories. */
const statsOf = (dirs: string[]) => dirs.map(readRestoreStats).find((s) => s !== null) ?? null;

export function renderTrace(path: string, messages: PublishedMessage[]): string {
  const ext = extname(path);
  if (ext === '.jsonl') return toJsonl(messages);
  if (ext === '.json') return JSON.stringify(toChromeTrace(buildTimeline(messages, statsOf))) + '\n';
  if (ext === '.html') return toHtml(buildTimeline(messages, statsOf));
  throw new UsageError(`trace: unknown format '${ext || path}': the file name must end in ${TRACE_FORMATS.join(', ')}`);
}

export function writeTrace(path: string, messages: PublishedMessage[]): void {
  const text = renderTrace(path, messages);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
}
