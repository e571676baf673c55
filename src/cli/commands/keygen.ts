/** `stagegate keygen`: a CURVE key pair. */
import { UsageError } from '../../errors';
import { type Command, flag } from '../command';

export const keygen: Command = {
  name: 'keygen',
  summary: 'make a CURVE key pair (for TCP endpoints)',
  help: `usage: stagegate keygen --out PREFIX

Writes a CURVE key pair: PREFIX.secret (mode 0600) and PREFIX.public, and
prints the public key. The daemon uses its secret (serve --curve-secret) and
lists the clients' public keys (serve --allow); hooks and CLI clients on TCP
use STAGEGATE_CURVE_SERVER_PUBLIC=daemon.public and STAGEGATE_CURVE_CLIENT=PREFIX.`,
  options: { out: { type: 'string' } },
  async run(a) {
    const out = flag(a, 'out');
    if (!out) throw new UsageError('keygen: --out PREFIX is required');
    const { keygen: make } = await import('../../transport/keys');
    process.stdout.write(make(out) + '\n');
    return 0;
  },
};
