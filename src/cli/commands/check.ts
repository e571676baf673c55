/** `stagegate check`: is a set of checkpoint directories a committed, consistent set? */
import { UsageError } from '../../errors';
import { type Command, bool } from '../command';

export const check: Command = {
  name: 'check',
  summary: 'check a checkpoint set: commit records, image files, and the TCP cut between its trees',
  positionals: true,
  help: `usage: stagegate check [--json] DIR...

Checks the images directories of one job (one per tree, as 'stagegate dump'
wrote them):
- committed: each directory's commit record verifies, every record names the
  same commit, and no recorded image file is missing or changed;
- the TCP cut: for every TCP connection with both ends in the given
  directories, what the sender counts as acknowledged the receiver has
  received, and the receiver holds nothing the sender had not yet written.
Prints each connection and each violation. Exits 0 when the set is committed
and its cut consistent, 1 otherwise.

  --json   machine-readable output`,
  options: { json: { type: 'boolean' } },
  async run(a) {
    if (a.positionals.length === 0) throw new UsageError('check: give the images directories of the set');
    const { checkSet, setText } = await import('../../checkpoint/set');
    const r = await checkSet(a.positionals);
    process.stdout.write(
      (bool(a, 'json') ? JSON.stringify(r, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 1) : setText(r)) + '\n',
    );
    return r.committed && r.cut.violations === 0 ? 0 : 1;
  },
};
