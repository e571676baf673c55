/**
 * Observes a restored tree's mappings at post-restore, for the verify
 * activator: is each recorded mapping live at exactly its address, size and
 * protection, which object backs it (/proc/PID/map_files), and what do
 * sampled pages contain (process_vm_readv). The /proc reads, the page reads
 * and their digests are one native call per tree, off the event loop
 * (observeTree): a second call for the pages and hashing them here cost the
 * daemon's main thread about as much as the rest of a tree's verification
 * (issue #11).
 */
import type { MappingRef, Observation } from '../core/model';
import { sampleOffsets } from '../core/verify';
import { type LiveMapping, observeTree } from '../native';
import { protString } from '../images/vma';
import { VerifyError, errnoName } from '../errors';

const hex = (v: bigint) => `0x${v.toString(16)}`;

export async function observeMappings(initPid: number, mappings: MappingRef[]): Promise<Observation[]> {
  if (!initPid) throw new VerifyError('no init pid for the restored tree');
  // every mapping readable in the checkpoint is sampled at the same object offsets in every mapper
  const offsets = mappings.map((m) => (m.prot & 1 ? sampleOffsets(m.pgoff, m.size) : []));
  const live = await observeTree(
    initPid,
    mappings.map((m, i) => ({ nsPid: m.pid, start: m.start, end: m.start + m.size, pgoff: m.pgoff, samples: offsets[i] })),
  );
  return mappings.map((m, i) => {
    const vma = live[i]!;
    const host = vma.hostPid;
    const o: Observation = { bo: m.bo, tree: m.tree, pid: m.pid, start: m.start, hostPid: host, problem: '', object: '', samples: {} };
    o.problem = problemOf(m, vma, initPid);
    if (o.problem) return o;
    o.object = vma.object;
    if (!offsets[i]!.length) return o; // unreadable, or no sampled offset falls inside it: identity only
    if (!vma.samples) {
      // the native side reads every readable shared mapping with an object: not reached unless they disagree
      o.problem = 'its sampled pages were not read';
      return o;
    }
    offsets[i]!.forEach((off, k) => (o.samples[off.toString()] = vma.samples![k]!));
    // serve --verify-pages: the restored bytes must be the checkpoint's
    const differs = Object.entries(m.imageSamples ?? {}).filter(([off, d]) => o.samples[off] !== undefined && o.samples[off] !== d);
    if (differs.length) {
      const first = BigInt(differs[0]![0]);
      o.problem = `content at object offset ${hex(first)} (${hex(m.start + first - m.pgoff)}) differs from the checkpoint's page image${differs.length > 1 ? ` (${differs.length} of ${Object.keys(m.imageSamples!).length} sampled pages)` : ''}`;
    }
    return o;
  });
}

/** Why a live mapping is not the recorded one; '' when it is. */
function problemOf(m: MappingRef, vma: LiveMapping, initPid: number): string {
  if (vma.found === 'no-task') return `task ${m.pid} is not in the restored tree rooted at host pid ${initPid}`;
  const end = m.start + m.size;
  if (vma.found !== 'at')
    return `no mapping starts at ${hex(m.start)}${vma.found === 'around' ? ` (it lies inside ${hex(vma.start)}-${hex(vma.end)} ${vma.perms})` : ''}`;
  if (vma.end !== end) return `mapping is ${hex(vma.start)}-${hex(vma.end)}, expected ${hex(m.start)}-${hex(end)}`;
  if (vma.perms.slice(0, 3) !== protString(m.prot)) return `protection is ${vma.perms.slice(0, 3)}, expected ${protString(m.prot)}`;
  if (vma.perms[3] !== 's') return 'mapping is private, not shared';
  if (!vma.object)
    return `cannot identify the object behind it: ${errnoName(vma.statErrno)}, stat '/proc/${vma.hostPid}/map_files/${m.start.toString(16)}-${end.toString(16)}'`;
  return '';
}
