/**
 * Enforces the daemon's connection bound (connection-budget.ts) on its
 * listening sockets. libzmq has no way to stop accepting short of unbinding,
 * and unbinding closes every connection accepted on that endpoint (the hooks
 * waiting at a gate). An IPC socket file is only a name for the bound socket,
 * so a full daemon renames it out of the way: new hooks find no socket and
 * ZeroMQ retries their connect until the name is back, or their own timeout
 * aborts them; connected hooks keep their connections. TCP listeners cannot
 * be hidden; libzmq refuses a TCP accept at the open-file limit without
 * aborting, so for them the bound is advisory (and CURVE drops unknown keys).
 */
import { renameSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Socket } from 'zeromq';
import { ConnectionBudget, type BudgetChange } from './connection-budget';
import { ipcPath } from './endpoints';

/** Where a hidden IPC socket waits (same private directory: a rename, never a copy). */
export const hiddenPath = (path: string): string => join(dirname(path), `.${basename(path)}.full`);

export interface GuardEvents {
  onPause(connections: number, max: number): void;
  onResume(connections: number, max: number): void;
  onError(err: Error): void;
}

export class ConnectionGuard {
  private readonly ipc: string[] = [];

  constructor(
    readonly budget: ConnectionBudget,
    private readonly events: GuardEvents,
  ) {}

  /** Counts `socket`'s connections against the bound; its IPC endpoints are hidden while the daemon is full. */
  watch(socket: Socket, endpoints: string[]): void {
    for (const ep of endpoints) {
      const p = ipcPath(ep);
      if (p) this.ipc.push(p);
    }
    socket.events.on('accept', () => this.change(this.budget.accepted()));
    socket.events.on('disconnect', () => this.change(this.budget.closed()));
  }

  private change(c: BudgetChange): void {
    if (!c) return;
    for (const p of this.ipc) {
      try {
        if (c === 'pause') renameSync(p, hiddenPath(p));
        else renameSync(hiddenPath(p), p);
      } catch (err) {
        this.events.onError(err as Error);
      }
    }
    if (c === 'pause') this.events.onPause(this.budget.connections, this.budget.max);
    else this.events.onResume(this.budget.connections, this.budget.max);
  }

  /** Removes hidden socket files (call after the sockets are closed). */
  close(): void {
    for (const p of this.ipc) rmSync(hiddenPath(p), { force: true });
  }
}
