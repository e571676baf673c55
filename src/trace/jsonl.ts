/** Lossless JSON lines of published messages: 64-bit values as decimal strings, restored on reading. */
import type { PublishedMessage } from '../protocol/codec';
import { UsageError } from '../errors';

const BIGINT_KEYS = new Set(['seq', 'wallNs', 'monoNs']);

export function toJsonl(messages: PublishedMessage[]): string {
  return (
    messages.map((m) => JSON.stringify(m, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))).join('\n') + (messages.length ? '\n' : '')
  );
}

export function fromJsonl(text: string, source = 'trace'): PublishedMessage[] {
  return text
    .split('\n')
    .filter((l) => l.trim())
    .map((line, i) => {
      try {
        const m = JSON.parse(line, (k, v) => (BIGINT_KEYS.has(k) && typeof v === 'string' ? BigInt(v) : v)) as PublishedMessage;
        if (typeof m.seq === 'bigint' && ('event' in m || 'decision' in m)) return m;
        throw new UsageError(`${source}: line ${i + 1}: not a stagegate message`);
      } catch (err) {
        if (err instanceof UsageError) throw err;
        throw new UsageError(`${source}: line ${i + 1}: ${(err as Error).message}`, { cause: err });
      }
    });
}
