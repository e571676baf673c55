/**
 * Observes a restored tree's mappings at post-restore, for the verify
 * activator: is each recorded mapping live at exactly its address, size and
 * protection, which object backs it (/proc/PID/map_files), and what do
 * sampled pages contain (process_vm_readv). The /proc reads are one native
 * call per tree, off the event loop (observeTree).
 */
import type { MappingRef, Observation } from '../core/model';
import { sampleDigest, sampleOffsets } from '../core/verify';
import { observeTree, processVmReadMany } from '../native';
import { protString } from '../images/vma';
import { VerifyError, errnoName } from '../errors';

const PAGE = 4096n;

const hex = (v: bigint) => `0x${v.toString(16)}`;

export async function observeMappings(initPid: number, mappings: MappingRef[]): Promise<Observation[]> {
  if (!initPid) throw new VerifyError('no init pid for the restored tree');
  const live = await observeTree(
    initPid,
    mappings.map((m) => ({ nsPid: m.pid, start: m.start, end: m.start + m.size })),
  );
  const out: Observation[] = [];
  // every sampled page of a task is read in one batch (process_vm_readv takes many ranges):
  // a read per page cost a round trip through the thread pool each, on the critical path of
  // the post-restore gate, and was most of the daemon's work in a restore (issue #11)
  const pages = new Map<number, { addr: bigint; done: (page: Buffer) => void }[]>();
  const compares: (() => void)[] = [];
  // the first mapping of each object range of this tree, whose samples the others of that range share
  const sampledBy = new Map<string, Observation>();
  const copies: (() => void)[] = [];
  mappings.forEach((m, i) => {
    const vma = live[i]!;
    const host = vma.hostPid;
    const o: Observation = { bo: m.bo, tree: m.tree, pid: m.pid, start: m.start, hostPid: host, problem: '', object: '', samples: {} };
    out.push(o);
    if (vma.found === 'no-task') {
      o.problem = `task ${m.pid} is not in the restored tree rooted at host pid ${initPid}`;
      return;
    }
    const end = m.start + m.size;
    if (vma.found !== 'at') {
      o.problem = `no mapping starts at ${hex(m.start)}${vma.found === 'around' ? ` (it lies inside ${hex(vma.start)}-${hex(vma.end)} ${vma.perms})` : ''}`;
      return;
    }
    if (vma.end !== end) {
      o.problem = `mapping is ${hex(vma.start)}-${hex(vma.end)}, expected ${hex(m.start)}-${hex(end)}`;
      return;
    }
    if (vma.perms.slice(0, 3) !== protString(m.prot)) {
      o.problem = `protection is ${vma.perms.slice(0, 3)}, expected ${protString(m.prot)}`;
      return;
    }
    if (vma.perms[3] !== 's') {
      o.problem = 'mapping is private, not shared';
      return;
    }
    if (!vma.object) {
      o.problem = `cannot identify the object behind it: ${errnoName(vma.statErrno)}, stat '/proc/${host}/map_files/${m.start.toString(16)}-${end.toString(16)}'`;
      return;
    }
    o.object = vma.object;
    if (!(m.prot & 1)) return; // unreadable: identity only
    // Another task of this tree sharing the same range of the same object (the identity just
    // read, and a shared mapping) sees the same page-cache pages: its samples are read once
    // (a tree's tasks mapping each BO tripled the pages read, issue #11)
    const range = `${o.object}@${m.pgoff}+${m.size}`;
    const first = sampledBy.get(range);
    if (first) {
      copies.push(() => (o.samples = { ...first.samples }));
    } else {
      sampledBy.set(range, o);
      const wanted = pages.get(host) ?? [];
      pages.set(host, wanted);
      for (const off of sampleOffsets(m.pgoff, m.size))
        wanted.push({ addr: m.start + (off - m.pgoff), done: (page) => (o.samples[off.toString()] = sampleDigest(page)) });
    }
    // serve --verify-pages: the restored bytes must be the checkpoint's
    compares.push(() => {
      const differs = Object.entries(m.imageSamples ?? {}).filter(([off, d]) => o.samples[off] !== undefined && o.samples[off] !== d);
      if (differs.length) {
        const first = BigInt(differs[0]![0]);
        o.problem = `content at object offset ${hex(first)} (${hex(m.start + first - m.pgoff)}) differs from the checkpoint's page image${differs.length > 1 ? ` (${differs.length} of ${Object.keys(m.imageSamples!).length} sampled pages)` : ''}`;
      }
    });
  });
  await Promise.all(
    [...pages].map(async ([host, wanted]) => {
      const got = await processVmReadMany(
        host,
        wanted.map((w) => w.addr),
        Number(PAGE),
      );
      wanted.forEach((w, i) => w.done(got[i]!));
    }),
  );
  for (const c of copies) c();
  for (const c of compares) c();
  return out;
}
