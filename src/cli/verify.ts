/**
 * `stagegate verify --images DIR --init-pid PID`: checks a restored tree
 * against its images right now, the way the verify activator does (every BO
 * within the tree). Useful from an action script, or to see why a session
 * aborted.
 */
import { realpathSync } from 'node:fs';
import { groupBos } from '../core/bo-graph';
import { compareBo, mapperKey } from '../core/verify';
import { inspectTree } from '../images/inspect';
import { observeMappings } from '../proc/observe';
import { ImageError } from '../errors';

export async function verifyTree(
  imageDir: string,
  initPid: number,
  tree = 'tree',
  pages = false,
): Promise<{ ok: boolean; lines: string[] }> {
  let dir: string;
  try {
    dir = realpathSync(imageDir);
  } catch (err) {
    throw new ImageError(imageDir, 0, `cannot open checkpoint directory: ${(err as Error).message}`, { cause: err });
  }
  const mappings = inspectTree(tree, dir, { pages });
  const bos = groupBos(mappings);
  const inBos = mappings.filter((m) => bos.has(m.bo));
  const observations = new Map((await observeMappings(initPid, inBos)).map((o) => [mapperKey(o), o]));
  const lines: string[] = [];
  let ok = true;
  for (const [id, ms] of bos) {
    const problem = compareBo(id, ms, observations);
    if (problem) ok = false;
    lines.push(problem ? `FAIL ${problem}` : `ok   BO ${ms[0]!.label} (${id}): ${ms.length} mappers verified`);
  }
  return { ok, lines };
}
