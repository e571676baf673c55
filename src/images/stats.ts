/** CRIU's restore statistics (stats-restore in criu's work directory). */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type Long from 'long';
import { criu } from './generated/criu';
import { MAGIC, SERVICE_MAGIC, readEntries } from './image-file';

export interface RestoreStats {
  forkingTimeUs: number;
  restoreTimeUs: number;
  pagesRestored: number;
  pagesCompared: number;
}

/** The restore stats in `dir`, or null when there are none (or they cannot be read). */
export function readRestoreStats(dir: string): RestoreStats | null {
  const path = join(dir, 'stats-restore');
  if (!existsSync(path)) return null;
  try {
    const [e] = readEntries(path, MAGIC.stats, (b) => criu.StatsEntry.decode(b), SERVICE_MAGIC);
    const r = e?.restore;
    if (!r) return null;
    const n = (v: unknown) => Number((v as Long | number | null | undefined)?.toString() ?? 0);
    return {
      forkingTimeUs: r.forkingTime ?? 0,
      restoreTimeUs: r.restoreTime ?? 0,
      pagesRestored: n(r.pagesRestored),
      pagesCompared: n(r.pagesCompared),
    };
  } catch {
    return null;
  }
}
