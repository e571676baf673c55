/**
 * A bound on the connections the daemon holds at once. Every connection is a
 * file descriptor, and libzmq aborts the whole process when an IPC accept hits
 * the open-file limit, so the daemon must stop accepting well before that.
 * Counting is fed by socket monitors (accepted, closed); the listeners stop at
 * `max` and start again at `resumeAt` (hysteresis: no flapping at the edge).
 * Pure bookkeeping: what "stop" means is the caller's (see hook-endpoint.ts).
 */
export type BudgetChange = 'pause' | 'resume' | null;

export class ConnectionBudget {
  private open = 0;
  private paused = false;
  readonly resumeAt: number;

  constructor(readonly max: number) {
    this.resumeAt = Math.max(0, Math.floor(max * 0.9) - 1);
  }

  get connections(): number {
    return this.open;
  }

  get refusing(): boolean {
    return this.paused;
  }

  accepted(): BudgetChange {
    this.open++;
    if (!this.paused && this.open >= this.max) {
      this.paused = true;
      return 'pause';
    }
    return null;
  }

  closed(): BudgetChange {
    // a monitor can report a close of a connection accepted before it started
    this.open = Math.max(0, this.open - 1);
    if (this.paused && this.open <= this.resumeAt) {
      this.paused = false;
      return 'resume';
    }
    return null;
  }
}

/** The default bound for an open-file limit: room for the daemon's own files, sockets and workers. */
export function defaultConnectionBound(nofile: number): number {
  return Math.max(16, Math.floor((nofile - 256) / 2));
}
