/** The verify activator's image step: a tree's shared mappings from its checkpoint directory. */
import { sharedMappings } from '../core/bo-graph';
import type { MappingRef } from '../core/model';
import { readCheckpoint } from './checkpoint';

export function inspectTree(tree: string, imageDir: string): MappingRef[] {
  return sharedMappings(tree, readCheckpoint(imageDir));
}
