/**
 * A checkpoint set: the images directories of one job's trees. Whether it is
 * committed (every directory's commit record verifies, names the same commit,
 * and its image files are unchanged), whether every member is there, and
 * whether its TCP cut is consistent (tcp-cut.ts).
 */
import { basename } from 'node:path';
import { type CommitRecord, checkFiles, readRecord } from './commit-record';
import { type CutReport, checkCut, readTcpEnds } from './tcp-cut';

export interface DirReport {
  dir: string;
  /** the tree, from its record (else the directory's name) */
  tree: string;
  record: CommitRecord | null;
  /** why this directory does not count as committed (empty when it does) */
  problems: string[];
}

export interface SetReport {
  dirs: DirReport[];
  /** the set's commit id when every directory agrees on one */
  commit: string;
  session: string;
  attempt: number;
  /** members of the set whose directory was not given: tree (host) */
  notGiven: string[];
  /** problems of the set as a whole (disagreeing records) */
  problems: string[];
  committed: boolean;
  cut: CutReport;
}

export async function checkSet(dirs: string[], o: { cut?: boolean } = {}): Promise<SetReport> {
  const reports: DirReport[] = [];
  for (const dir of dirs) {
    let record: CommitRecord | null = null;
    const problems: string[] = [];
    try {
      record = readRecord(dir);
      problems.push(...(await checkFiles(dir, record)).map((p) => `${dir}: ${p}`));
    } catch (err) {
      problems.push((err as Error).message);
    }
    reports.push({ dir, tree: record?.tree ?? basename(dir), record, problems });
  }
  const records = reports.flatMap((r) => (r.record ? [r.record] : []));
  const first = records[0];
  const problems: string[] = [];
  for (const r of records) {
    if (r.commit !== first!.commit)
      problems.push(`tree ${r.tree} was committed as ${r.commit}, tree ${first!.tree} as ${first!.commit}: not one set`);
  }
  const trees = reports.map((r) => r.tree);
  for (const t of new Set(trees)) if (trees.filter((x) => x === t).length > 1) problems.push(`tree ${t} is given twice`);
  const notGiven = first ? first.members.filter((m) => !trees.includes(m.tree)).map((m) => `${m.tree} (${m.host})`) : [];
  const ends = o.cut === false ? [] : reports.flatMap((r) => readTcpEnds(r.dir, r.tree));
  return {
    dirs: reports,
    commit: problems.length === 0 && first ? first.commit : '',
    session: first?.session ?? '',
    attempt: first?.attempt ?? 0,
    notGiven,
    problems,
    committed: problems.length === 0 && reports.every((r) => r.record && r.problems.length === 0),
    cut: checkCut(ends),
  };
}

/** The report in words, one finding per line. */
export function setText(r: SetReport): string {
  const lines: string[] = [];
  lines.push(
    r.committed
      ? `committed set ${r.commit}: session ${r.session} attempt ${r.attempt}, ${r.dirs.length} tree(s) given`
      : `NOT a committed set (${r.dirs.length} director${r.dirs.length === 1 ? 'y' : 'ies'} given)`,
  );
  for (const d of r.dirs) lines.push(`  tree ${d.tree}: ${d.dir}${d.problems.length ? '' : ' (record and images verified)'}`);
  for (const p of [...r.problems, ...r.dirs.flatMap((d) => d.problems)]) lines.push(`  problem: ${p}`);
  if (r.notGiven.length) lines.push(`  members not given (their connections are not checked): ${r.notGiven.join(', ')}`);
  lines.push(`TCP cut: ${r.cut.connections.length} connection(s) within the set, ${r.cut.violations} violation(s)`);
  for (const c of r.cut.connections) {
    lines.push(`  ${c.name}`);
    for (const d of c.directions) {
      lines.push(
        `    ${d.from} -> ${d.to}: snd_una ${d.sndUna} snd_nxt ${d.sndNxt} write_seq ${d.writeSeq}, rcv_nxt ${d.rcvNxt}: ${d.problem ? `VIOLATION: ${d.problem}` : `consistent (${d.inFlight} byte(s) in flight)`}`,
      );
    }
  }
  for (const o of r.cut.outside) lines.push(`  not checked: ${o}`);
  return lines.join('\n');
}
