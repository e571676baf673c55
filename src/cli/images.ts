/** `stagegate images DIR...`: explains checkpoint directories (tasks, VMAs, BOs). */
import { basename } from 'node:path';
import type { Bo } from '../core/bo-graph';
import type { Checkpoint } from '../images/checkpoint-model';
import { readCheckpoint } from '../images/checkpoint';
import { bosOfCheckpoints, protString as prot, vmaKind } from '../images/vma';

const hex = (v: bigint) => `0x${v.toString(16)}`;

/** Tree names from directory names, made unique. */
export function treeNames(dirs: string[]): string[] {
  const seen = new Map<string, number>();
  return dirs.map((d) => {
    const base = basename(d.replace(/\/+$/, '')) || 'tree';
    const n = (seen.get(base) ?? 0) + 1;
    seen.set(base, n);
    return n === 1 ? base : `${base}#${n}`;
  });
}

export function describeImages(dirs: string[]): { trees: { tree: string; checkpoint: Checkpoint }[]; bos: Bo[] } {
  const names = treeNames(dirs);
  const trees = dirs.map((d, i) => ({ tree: names[i]!, checkpoint: readCheckpoint(d) }));
  return { trees, bos: bosOfCheckpoints(trees) };
}

export function imagesJson(d: ReturnType<typeof describeImages>): string {
  return JSON.stringify(
    {
      trees: d.trees.map(({ tree, checkpoint }) => ({
        tree,
        dir: checkpoint.dir,
        tasks: checkpoint.tasks.map((t) => ({
          pid: t.pid,
          ppid: t.ppid,
          threads: t.threads,
          vmas: t.vmas.map((v) => ({ start: hex(v.start), end: hex(v.end), prot: prot(v.prot), kind: vmaKind(v), shmid: Number(v.shmid) })),
        })),
      })),
      bos: d.bos.map((b) => ({
        ...b,
        mappers: b.mappers.map((m) => ({ ...m, start: hex(m.start), size: Number(m.size), pgoff: Number(m.pgoff), prot: prot(m.prot) })),
      })),
    },
    null,
    2,
  );
}

export function imagesTable(d: ReturnType<typeof describeImages>, allVmas: boolean): string {
  const L: string[] = [];
  for (const { tree, checkpoint } of d.trees) {
    L.push(`tree ${tree}  (${checkpoint.dir})`);
    L.push('  pid   ppid  threads  vmas  shared');
    for (const t of checkpoint.tasks) {
      const shared = t.vmas.filter((v) => vmaKind(v).endsWith('shared') || vmaKind(v) === 'sysv-shm');
      L.push(
        `  ${String(t.pid).padEnd(5)} ${String(t.ppid).padEnd(5)} ${String(t.threads.length).padEnd(8)} ${String(t.vmas.length).padEnd(5)} ${shared.length}`,
      );
      for (const v of allVmas ? t.vmas : shared) {
        L.push(`        ${hex(v.start).padStart(14)}-${hex(v.end).padEnd(14)} ${prot(v.prot)} ${vmaKind(v)}`);
      }
    }
    L.push('');
  }
  L.push(`${d.bos.length} shared buffer object(s) mapped by two or more tasks`);
  for (const b of d.bos) {
    L.push(`  BO ${b.id}  [${b.kind}] ${b.label}, ${b.mappers.length} mappers`);
    for (const m of b.mappers) {
      L.push(
        `    ${m.tree.padEnd(12)} pid ${String(m.pid).padEnd(6)} at ${hex(m.start).padEnd(16)} ${String(Number(m.size) / 1024).padStart(7)} KiB ${prot(m.prot)}`,
      );
    }
  }
  return L.join('\n');
}
