/** The verify activator's image step: a tree's shared mappings from its checkpoint directory. */
import { sharedMappings } from './vma';
import type { MappingRef } from '../core/model';
import { sampleOffsets } from '../core/verify';
import { readCheckpoint, readSharedCheckpoint } from './checkpoint';
import { CheckpointPages } from './pages';
import { DEFAULT_INSPECTOR_LIMITS } from './inspector';
import { ImageError } from '../errors';

export interface InspectOptions {
  /** also read the checkpoint's copy of the sampled pages of each mapping (where it has one) */
  pages?: boolean;
}

export function inspectTree(tree: string, imageDir: string, o: InspectOptions = {}): MappingRef[] {
  const cp = readCheckpoint(imageDir);
  const mappings = sharedMappings(tree, cp);
  if (!o.pages) return mappings;
  const pages = new CheckpointPages(cp);
  const vmas = new Map(cp.tasks.flatMap((t) => t.vmas.map((v) => [`${t.pid}@${v.start}`, v] as const)));
  for (const m of mappings) {
    const v = vmas.get(`${m.pid}@${m.start}`);
    if (!v || !(m.prot & 1)) continue; // unreadable mappings are compared by identity only
    const samples = pages.samples(v, sampleOffsets(m.pgoff, m.size));
    if (samples) m.imageSamples = samples;
  }
  return mappings;
}

/** The read in progress, if any: checkpoints are read one at a time, as the worker read them. */
let reading: Promise<unknown> = Promise.resolve();

/**
 * A tree's shared mappings, read natively off the event loop (no page samples:
 * those are the worker's). One checkpoint at a time, so that the memory a
 * hostile one may take (its files, what protobuf-c allocates) is bounded once,
 * not per pool thread. A read that hangs (a stuck network filesystem) fails
 * after the worker's time limit, as a worker's job would, and the next one
 * starts then.
 */
export function inspectTreeShared(tree: string, imageDir: string, timeoutMs = DEFAULT_INSPECTOR_LIMITS.timeoutMs): Promise<MappingRef[]> {
  const read = reading.then(async () => {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new ImageError(imageDir, 0, `reading it took longer than ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return sharedMappings(tree, await Promise.race([readSharedCheckpoint(imageDir), late]));
    } finally {
      clearTimeout(timer);
    }
  });
  reading = read.catch(() => {});
  return read;
}
