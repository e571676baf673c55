/**
 * Observes a restored tree's mappings at post-restore, for the verify
 * activator: is each recorded mapping live at exactly its address, size and
 * protection, which object backs it (/proc/PID/map_files), and what do
 * sampled pages contain (process_vm_readv through the native addon).
 */
import { readFileSync, statSync } from 'node:fs';
import type { MappingRef, Observation } from '../core/model';
import { sampleDigest, sampleOffsets } from '../core/verify';
import { processVmReadMany } from '../native';
import { protString } from '../images/vma';
import { VerifyError } from '../errors';
import { innermostPid, treePids } from './tree';

const PAGE = 4096n;

interface LiveVma {
  start: bigint;
  end: bigint;
  perms: string;
}

function readMaps(pid: number): LiveVma[] {
  return readFileSync(`/proc/${pid}/maps`, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [range, perms] = line.split(/\s+/);
      const [s, e] = range!.split('-');
      return { start: BigInt(`0x${s}`), end: BigInt(`0x${e}`), perms: perms! };
    });
}

const hex = (v: bigint) => `0x${v.toString(16)}`;

/** Host pid of each checkpoint pid in the restored tree rooted at `initPid`. */
export function hostPids(initPid: number): Map<number, number> {
  return new Map(treePids(initPid).map((p) => [innermostPid(p), p]));
}

export async function observeMappings(initPid: number, mappings: MappingRef[]): Promise<Observation[]> {
  if (!initPid) throw new VerifyError('no init pid for the restored tree');
  const hosts = hostPids(initPid);
  const maps = new Map<number, LiveVma[]>();
  const out: Observation[] = [];
  // every sampled page of a task is read in one batch (process_vm_readv takes many ranges):
  // a read per page cost a round trip through the thread pool each, on the critical path of
  // the post-restore gate, and was most of the daemon's work in a restore (issue #11)
  const pages = new Map<number, { addr: bigint; done: (page: Buffer) => void }[]>();
  const compares: (() => void)[] = [];
  // the first mapping of each object range of this tree, whose samples the others of that range share
  const sampledBy = new Map<string, Observation>();
  const copies: (() => void)[] = [];
  for (const m of mappings) {
    const host = hosts.get(m.pid);
    const o: Observation = { bo: m.bo, tree: m.tree, pid: m.pid, start: m.start, hostPid: host ?? 0, problem: '', object: '', samples: {} };
    out.push(o);
    if (host === undefined) {
      o.problem = `task ${m.pid} is not in the restored tree rooted at host pid ${initPid}`;
      continue;
    }
    if (!maps.has(host)) maps.set(host, readMaps(host));
    const vmas = maps.get(host)!;
    const end = m.start + m.size;
    const vma = vmas.find((v) => v.start === m.start);
    if (!vma) {
      const around = vmas.find((v) => v.start <= m.start && m.start < v.end);
      o.problem = `no mapping starts at ${hex(m.start)}${around ? ` (it lies inside ${hex(around.start)}-${hex(around.end)} ${around.perms})` : ''}`;
      continue;
    }
    if (vma.end !== end) {
      o.problem = `mapping is ${hex(vma.start)}-${hex(vma.end)}, expected ${hex(m.start)}-${hex(end)}`;
      continue;
    }
    if (vma.perms.slice(0, 3) !== protString(m.prot)) {
      o.problem = `protection is ${vma.perms.slice(0, 3)}, expected ${protString(m.prot)}`;
      continue;
    }
    if (vma.perms[3] !== 's') {
      o.problem = 'mapping is private, not shared';
      continue;
    }
    try {
      const st = statSync(`/proc/${host}/map_files/${m.start.toString(16)}-${end.toString(16)}`);
      o.object = `${st.dev}:${st.ino}`;
    } catch (err) {
      o.problem = `cannot identify the object behind it: ${(err as Error).message}`;
      continue;
    }
    if (!(m.prot & 1)) continue; // unreadable: identity only
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
  }
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
