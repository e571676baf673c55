/**
 * Queues messages for a socket whose send() must not overlap (zeromq.js
 * allows one send in flight per socket). Failed sends are reported, not thrown:
 * one unreachable peer must not stop the coordinator.
 */
export class SerialSender<M> {
  private queue: M[] = [];
  private busy = false;

  constructor(
    private readonly send: (m: M) => Promise<void>,
    private readonly onError: (err: unknown) => void = () => {},
  ) {}

  /** Resolves once every queued message has been handed to the socket. */
  idle(): Promise<void> {
    if (!this.busy && this.queue.length === 0) return Promise.resolve();
    return new Promise((r) => this.waiters.push(r));
  }

  private waiters: (() => void)[] = [];

  push(m: M): void {
    this.queue.push(m);
    if (!this.busy) void this.drain();
  }

  private async drain(): Promise<void> {
    this.busy = true;
    while (this.queue.length) {
      const m = this.queue.shift()!;
      try {
        await this.send(m);
      } catch (err) {
        this.onError(err);
      }
    }
    this.busy = false;
    for (const w of this.waiters.splice(0)) w();
  }
}
