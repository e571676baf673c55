/**
 * The checkpoint's own copy of a shared memory object's pages, for the
 * optional check of sampled pages against the images (serve --verify-pages,
 * verify --pages). CRIU keeps the content of shared anonymous memory, memfds
 * and SysV segments in pagemap-shmem-<shmid>.img plus the raw pages-<id>.img
 * it names; file-backed objects (a /dev/shm file) are not in the checkpoint at
 * all. Only the sampled pages are read (a real checkpoint is many GB), each
 * from a regular file with a bounded read.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type Long from 'long';
import { criu } from './generated/criu';
import { MAGIC, big, readEntries, readImageRange } from './image-file';
import { ImageError } from '../errors';
import type { Checkpoint, Vma } from './checkpoint-model';
import { shmemOf } from './vma';
import { sampleDigest } from '../core/verify';

const PAGE = 4096n;
const PE_PARENT = 1;
const PE_PRESENT = 4;

interface Run {
  offset: bigint;
  pages: bigint;
  /** page index in the pages file, or -1: the pages are elsewhere (a parent checkpoint, lazy) */
  at: bigint;
}

/** One shmem object's pagemap: which offsets the pages file holds, and where. */
class ShmemPages {
  private constructor(
    private readonly pagesPath: string,
    private readonly runs: Run[],
  ) {}

  static read(dir: string, shmid: number): ShmemPages | null {
    const path = join(dir, `pagemap-shmem-${shmid}.img`);
    if (!existsSync(path)) return null;
    const [head, ...entries] = readEntries(path, MAGIC.pagemap, (b) => b);
    if (!head) throw new ImageError(path, 8, 'no pagemap head');
    const pagesId = criu.PagemapHead.decode(head).pagesId ?? 0;
    const runs: Run[] = [];
    let index = 0n;
    for (const bytes of entries) {
      const e = criu.PagemapEntry.decode(bytes);
      const pages =
        e.nrPages !== null && e.nrPages !== undefined && big(e.nrPages as Long) > 0n
          ? big(e.nrPages as Long)
          : BigInt(e.compatNrPages ?? 0);
      const flags = e.flags ?? (e.inParent ? PE_PARENT : PE_PRESENT);
      const here = (flags & PE_PRESENT) !== 0 && (flags & PE_PARENT) === 0;
      runs.push({ offset: big(e.vaddr as Long), pages, at: here ? index : -1n });
      if (here) index += pages;
    }
    return new ShmemPages(join(dir, `pages-${pagesId}.img`), runs);
  }

  /** Digest of the page at object offset `off` as the checkpoint holds it; null when it is not in this checkpoint. */
  digestAt(off: bigint): string | null {
    const run = this.runs.find((r) => r.offset <= off && off < r.offset + r.pages * PAGE);
    // a page in no entry was never dumped: it restores as zeros
    if (!run) return sampleDigest(Buffer.alloc(Number(PAGE)));
    if (run.at < 0n) return null;
    const position = (run.at + (off - run.offset) / PAGE) * PAGE;
    const page = readImageRange(this.pagesPath, Number(position), Number(PAGE));
    if (page.length !== Number(PAGE))
      throw new ImageError(this.pagesPath, Number(position), `truncated: the page at object offset 0x${off.toString(16)} is not there`);
    return sampleDigest(page);
  }
}

/** Reads sampled pages of shmem objects out of one checkpoint, each object's pagemap once. */
export class CheckpointPages {
  private readonly objects = new Map<number, ShmemPages | null>();

  constructor(private readonly cp: Checkpoint) {}

  /** Offset → digest of the sampled pages the checkpoint holds for this mapping; null when it holds none. */
  samples(v: Vma, offsets: bigint[]): Record<string, string> | null {
    const shmid = shmemOf(v, this.cp);
    if (shmid === null) return null;
    if (!this.objects.has(shmid)) this.objects.set(shmid, ShmemPages.read(this.cp.dir, shmid));
    const pages = this.objects.get(shmid);
    if (!pages) return null;
    const out: Record<string, string> = {};
    for (const off of offsets) {
      const d = pages.digestAt(off);
      if (d !== null) out[off.toString()] = d;
    }
    return out;
  }
}
