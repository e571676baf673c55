/**
 * Hands messages to a socket whose send() must not overlap: zeromq.js runs one
 * send at a time per socket and throws EBUSY while one is in progress. Most
 * sends finish before send() returns (zeromq.js's fast path: libzmq has taken
 * the message), so each message is tried at once, and a gate's replies to
 * every waiting hook go out in the step that opened it instead of one per
 * turn of the event loop after everything else that step did (issue #11). A
 * send refused as busy waits, with every later one, for the one in progress:
 * order is kept. Failed sends are reported, not thrown: one unreachable peer
 * must not stop the coordinator.
 */
export class SerialSender<M> {
  private readonly queue: M[] = [];
  /** the last send not yet known to be finished */
  private inflight: Promise<void> | null = null;
  private draining = false;
  private waiters: (() => void)[] = [];

  constructor(
    private readonly send: (m: M) => Promise<void>,
    private readonly onError: (err: unknown) => void = () => {},
  ) {}

  /** Resolves once every queued message has been handed to the socket. */
  async idle(): Promise<void> {
    while (this.inflight || this.queue.length) {
      if (this.queue.length) await new Promise<void>((r) => this.waiters.push(r));
      else await this.inflight;
    }
  }

  push(m: M): void {
    if (this.queue.length || !this.trySend(m)) {
      this.queue.push(m);
      if (!this.draining) void this.drain();
    }
  }

  /** Sends `m` unless the socket is busy with an earlier send: false then. */
  private trySend(m: M): boolean {
    let sent: Promise<void>;
    try {
      sent = this.send(m);
    } catch (err) {
      if ((err as { code?: unknown })?.code === 'EBUSY') return false;
      this.onError(err);
      return true;
    }
    const tracked: Promise<void> = sent.then(
      () => this.settled(tracked),
      (err) => {
        this.onError(err);
        this.settled(tracked);
      },
    );
    this.inflight = tracked;
    return true;
  }

  private settled(p: Promise<void>): void {
    if (this.inflight === p) this.inflight = null;
  }

  private async drain(): Promise<void> {
    this.draining = true;
    while (this.queue.length) {
      // busy: after the send in progress (or, not knowing of one, the next turn)
      await (this.inflight ?? new Promise<void>((r) => setImmediate(r)));
      if (this.trySend(this.queue[0]!)) this.queue.shift();
    }
    this.draining = false;
    for (const w of this.waiters.splice(0)) w();
  }
}
