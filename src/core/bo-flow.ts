/**
 * The BO flow of the verify activator (pure): a tree's images are asked for
 * once its directory is known, its restored tasks observed at post-restore,
 * and each BO activated once every mapper is observed and consistent.
 */
import type { Effect, MappingRef, Observation, SessionState } from './model';
import { ErrorCodes } from '../errors';
import { crossTree, groupBos } from './bo-graph';
import { compareBo, mapperKey } from './verify';
import { decision, publish } from './messages';
import { abortSession } from './sessions';

/** Every mapping the session knows: from the trees' images and the manifest. */
export function allMappings(s: SessionState): MappingRef[] {
  const out: MappingRef[] = [...s.manifest];
  for (const t of s.trees.values()) if (t.mappings) out.push(...t.mappings);
  return out;
}

/** Whether every expected tree's images have been read (the BO graph is complete). */
export function allInspected(s: SessionState): boolean {
  if (s.trees.size < s.expectedTrees) return false;
  for (const t of s.trees.values()) if (!t.mappings) return false;
  return true;
}

/**
 * The BOs of the session (objects with two or more mappers, manifest BOs
 * always), kept in the session until a tree's images add mappings: the graph
 * is not recomputed on every input.
 */
export function bosOf(s: SessionState): Map<string, MappingRef[]> {
  return (s.bos ??= groupBos(allMappings(s)));
}

/** verify: asks for a tree's images the first time its image directory is known. */
export function inspect(s: SessionState, tree: string): Effect[] {
  const t = s.trees.get(tree);
  if (s.activator === 'none' || !t || t.mappings || t.inspecting || !t.imageDir || s.status !== 'open') return [];
  t.inspecting = true;
  return [{ type: 'inspect-tree', session: s.session, attempt: s.attempt, tree, imageDir: t.imageDir }];
}

/** verify: asks to observe a tree at post-restore once its images are known. */
export function verifyTree(s: SessionState, tree: string): Effect[] {
  const t = s.trees.get(tree);
  if (s.activator === 'none' || !t?.mappings || t.verifying || t.observations || s.status !== 'open') return [];
  if (!s.gates['post-restore'].arrived.has(tree)) return [];
  t.verifying = true;
  const mappings = [...t.mappings, ...s.manifest.filter((m) => m.tree === tree)];
  return [{ type: 'verify-tree', session: s.session, attempt: s.attempt, tree, initPid: t.initPid, mappings }];
}

/** Activates every BO whose mappers are all observed and consistent; aborts on the first inconsistency. */
export function activateBos(s: SessionState, at: number): Effect[] {
  const effects: Effect[] = [];
  const complete = allInspected(s);
  const observations = new Map<string, Observation>();
  for (const t of s.trees.values()) for (const o of t.observations ?? []) observations.set(mapperKey(o), o);
  for (const [id, ms] of bosOf(s)) {
    if (s.activeBos.has(id) || s.activating.has(id)) continue;
    if (crossTree(ms[0]!.kind) && !complete) continue;
    if (!ms.every((m) => s.trees.get(m.tree)?.observations)) continue;
    const problem = compareBo(id, ms, observations);
    if (problem) return [...effects, ...abortSession(s, ErrorCodes.VERIFY, problem, at)];
    if (s.activator === 'verify') {
      effects.push(...activated(s, id, at));
      continue;
    }
    // verified: hand it to the activator (exec, kfd); the BO is active once it succeeds
    s.activating.add(id);
    const mappers = ms.map((m) => ({
      tree: m.tree,
      pid: m.pid,
      hostPid: observations.get(mapperKey(m))!.hostPid,
      start: m.start,
      size: m.size,
      prot: m.prot,
    }));
    effects.push({
      type: 'activate-bo',
      session: s.session,
      attempt: s.attempt,
      bo: id,
      label: ms[0]!.label,
      activator: s.activator,
      mappers,
    });
  }
  return effects;
}

export function activated(s: SessionState, id: string, at: number): Effect[] {
  s.activeBos.set(id, at);
  const ms = bosOf(s).get(id) ?? [];
  const mappers = ms.map(({ tree, pid, start, size }) => ({ tree, pid, start, size }));
  return [
    publish(
      decision('bo-activated', s, at, { bo: id, label: ms[0]?.label ?? id, mappers, trees: [...new Set(ms.map((m) => m.tree))].sort() }),
    ),
  ];
}
