/** Lossless JSON lines of published messages: 64-bit values as decimal strings, restored on reading. */
import type { PublishedMessage } from '../protocol/codec';
import { UsageError } from '../errors';
import { type Decision, mappersFromText } from '../core/model';

// seq and the clocks; a BO mapper's start and size
const BIGINT_KEYS = new Set(['seq', 'wallNs', 'monoNs', 'start', 'size']);

/** A decision recorded by an older stagegate: bo-activated kept its label in reason and its mappers in detail, tree-inspected its BOs in trees. */
function upgrade(m: PublishedMessage): PublishedMessage {
  if (!('decision' in m)) return m;
  const d = m.decision as Decision & { reason?: string; detail?: string };
  if (d.kind === 'bo-activated' && !Array.isArray(d.mappers)) {
    return { ...m, decision: { ...d, label: d.label ?? d.reason ?? '', mappers: mappersFromText(d.detail ?? '') } };
  }
  if (d.kind === 'tree-inspected' && !Array.isArray(d.bos)) {
    const old = d as unknown as { trees?: string[]; reason?: string };
    return { ...m, decision: { ...d, bos: old.trees ?? [], mappings: parseInt(old.reason ?? '', 10) || 0 } };
  }
  return m;
}

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
        if (typeof m.seq === 'bigint' && ('event' in m || 'decision' in m)) return upgrade(m);
        throw new UsageError(`${source}: line ${i + 1}: not a stagegate message`);
      } catch (err) {
        if (err instanceof UsageError) throw err;
        throw new UsageError(`${source}: line ${i + 1}: ${(err as Error).message}`, { cause: err });
      }
    });
}
