/** The activators, one interface: activate(BO) resolves when it is live, rejects with the reason. */
import type { Activator, ActiveMapper } from '../core/model';
import { execActivator } from './exec';
import { kfdActivator } from './kfd';

export async function activate(activator: Activator, session: string, bo: string, label: string, mappers: ActiveMapper[]): Promise<void> {
  if (activator === 'kfd') return kfdActivator(mappers);
  if (activator.startsWith('exec:')) return execActivator(activator.slice('exec:'.length), session, bo, label, mappers);
  // verify and none need no action beyond the reducer's own checks
}
