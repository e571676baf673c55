/**
 * exec:<command> activator: runs the user's command once per mapping of a
 * verified BO, with the mapping in its environment. Exit 0 activates; any
 * other exit (or 30 s without one) fails the BO, with the command's last
 * stderr line in the reason.
 */
import { spawn } from 'node:child_process';
import type { ActiveMapper } from '../core/model';
import { ActivatorError } from '../errors';

const TIMEOUT_MS = 30_000;

export async function execActivator(command: string, session: string, bo: string, label: string, mappers: ActiveMapper[]): Promise<void> {
  for (const m of mappers) {
    const env = {
      ...process.env,
      STAGEGATE_SESSION: session,
      STAGEGATE_BO: bo,
      STAGEGATE_BO_LABEL: label,
      STAGEGATE_TREE: m.tree,
      STAGEGATE_PID: String(m.hostPid),
      STAGEGATE_IMAGE_PID: String(m.pid),
      STAGEGATE_ADDRESS: `0x${m.start.toString(16)}`,
      STAGEGATE_SIZE: String(m.size),
      STAGEGATE_PROT: String(m.prot),
    };
    const child = spawn('/bin/sh', ['-c', command], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-2000)));
    const timer = setTimeout(() => child.kill('SIGKILL'), TIMEOUT_MS);
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((res) => {
      child.once('error', () => res([127, null]));
      child.once('close', (c, s) => res([c, s]));
    });
    clearTimeout(timer);
    if (code !== 0) {
      const last = stderr.trim().split('\n').pop() ?? '';
      const how = signal ? `killed by ${signal}${signal === 'SIGKILL' ? ` (no exit within ${TIMEOUT_MS / 1000} s)` : ''}` : `exit ${code}`;
      throw new ActivatorError(
        `'${command}' for tree ${m.tree} task ${m.pid} at 0x${m.start.toString(16)}: ${how}${last ? `: ${last}` : ''}`,
      );
    }
  }
}
