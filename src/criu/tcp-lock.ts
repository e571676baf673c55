/**
 * Holds a restored set's TCP connections silent until every tree is back.
 *
 * criu restores a TCP socket expecting its connection to be blocked by the
 * netfilter rules its dump left behind; a dump with --leave-running removes
 * them. Restoring such a set, the first tree's sockets would talk to a peer
 * that does not exist yet and be reset. `restore --set` therefore drops each
 * connection's packets (iptables, in the network namespace the restore runs
 * in) from before criu starts until it has exited: by then the post-restore
 * gate has seen every tree's sockets restored, and TCP retransmits what the
 * rules dropped. Trees with a netns of their own are locked by criu itself.
 */
import { execFileSync } from 'node:child_process';
import type { TcpEnd } from '../checkpoint/tcp-cut';

const COMMENT = 'stagegate restore lock';

interface Rule {
  tool: 'iptables' | 'ip6tables';
  /** chain and match, as -I takes them and -D removes them */
  spec: string[];
}

/** The two rules that silence one end's connection: what comes in to it and what goes out of it. */
function rules(e: TcpEnd): Rule[] {
  const [sip, sport] = split(e.src);
  const [dip, dport] = split(e.dst);
  const tool = e.src.startsWith('[') ? 'ip6tables' : 'iptables';
  const rule = (chain: string, from: [string, string], to: [string, string]): Rule => ({
    tool,
    spec: [
      chain,
      '--protocol',
      'tcp',
      '--source',
      from[0],
      '--sport',
      from[1],
      '--destination',
      to[0],
      '--dport',
      to[1],
      '-m',
      'comment',
      '--comment',
      COMMENT,
      '-j',
      'DROP',
    ],
  });
  return [rule('INPUT', [dip, dport], [sip, sport]), rule('OUTPUT', [sip, sport], [dip, dport])];
}

/** "1.2.3.4:80" or "[::1]:80" → [address, port] */
function split(a: string): [string, string] {
  const i = a.lastIndexOf(':');
  return [a.slice(0, i).replace(/^\[|\]$/g, ''), a.slice(i + 1)];
}

const run = (r: Rule, op: '-I' | '-D') => execFileSync(r.tool, ['-w', op, ...r.spec], { stdio: ['ignore', 'ignore', 'pipe'] });

/** Drops every packet of `ends`' connections; returns what lifts it again (idempotent, never throws). */
export function lockConnections(ends: TcpEnd[]): () => void {
  const added: Rule[] = [];
  const unlock = () => {
    for (const r of added.splice(0)) {
      try {
        run(r, '-D');
      } catch {
        // already gone
      }
    }
  };
  try {
    for (const e of ends) {
      for (const r of rules(e)) {
        run(r, '-I');
        added.push(r);
      }
    }
  } catch (err) {
    unlock();
    throw new Error(`cannot lock the set's TCP connections with iptables: ${(err as Error).message.split('\n')[0]}`, { cause: err });
  }
  return unlock;
}
