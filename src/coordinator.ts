/**
 * The coordinator daemon: binds the hook and events endpoints and runs the
 * RxJS pipeline between them. Explicit lifecycle: start() then close().
 */
import { performance } from 'node:perf_hooks';
import { type Subscription, Subject, merge } from 'rxjs';
import { type Activator, type CoordinatorState, type Effect, type Input, fieldsOf, mapperText } from './core/model';
import type { HoldAt } from './core/actions';
import { ImageInspector } from './images/inspector';
import { inspectTreeShared } from './images/inspect';
import { observeMappings } from './proc/observe';
import { activate } from './activators';
import { encodeStatusReply } from './protocol/codec';
import { type SessionView, statusView } from './core/status';
import { coordinate, type OutputEffect } from './pipeline/coordinate';
import { EventPublisher } from './transport/event-publisher';
import { HookEndpoint } from './transport/hook-endpoint';
import type { CurveServer } from './transport/curve';
import { type Scope, permits, touches } from './transport/allow-list';
import { ZapHandler } from './transport/zap';
import { lockEndpoint, prepareEndpoint } from './transport/endpoints';
import { ConnectionBudget, defaultConnectionBound } from './transport/connection-budget';
import { ConnectionGuard } from './transport/connection-guard';
import { type FileLock, raiseNofileLimit } from './native';
import { Journal, journaled } from './state/journal';
import { recover } from './core/session-reducer';
import { UsageError } from './errors';
import type { Logger } from './log';

export interface CoordinatorOptions {
  listen: string[];
  events: string[];
  deadlineMs: number;
  /** activator of sessions that do not choose one (default verify) */
  activator?: Activator;
  /** activators clients may choose besides verify, none and the default (serve --allow-activator) */
  allowedActivators?: Activator[];
  /** connections (hooks, CLI clients, subscribers) held at once (serve --max-connections); default from the open-file limit */
  maxConnections?: number;
  /** verify also compares sampled pages with the checkpoint's page images (serve --verify-pages) */
  verifyPages?: boolean;
  /** sessions held at most (serve --max-sessions) */
  maxSessions?: number;
  /** arrival barrier of sessions that do not choose one (default none) */
  holdAt?: HoldAt;
  /** CURVE for TCP endpoints: the server's secret key and the allowed client keys */
  curve?: CurveServer | null;
  /** where the journal lives; without it a restart forgets every session */
  stateDir?: string;
  logger: Logger;
}

/** Wall clock in ms with sub-ms resolution (gate latencies are sub-ms). */
export const wallMs = (): number => performance.timeOrigin + performance.now();

const REJECTS_PER_SECOND = 10;

/** Admits at most `perSecond` items per second of `at` time; reports how many it dropped when the next second starts. */
class RateLimit {
  private second = -1;
  private count = 0;
  private dropped = 0;

  constructor(
    private readonly perSecond: number,
    private readonly onDropped: (n: number) => void,
  ) {}

  admit(at: number): boolean {
    const s = Math.floor(at / 1000);
    if (s !== this.second) {
      if (this.dropped) this.onDropped(this.dropped);
      this.second = s;
      this.count = 0;
      this.dropped = 0;
    }
    if (this.count < this.perSecond) {
      this.count++;
      return true;
    }
    this.dropped++;
    return false;
  }
}

/** What a key with `scopes` may see of the sessions: its own sessions, and in them its own trees. */
function scopedView(views: SessionView[], scopes: Scope[] | null): SessionView[] {
  if (scopes === null) return views;
  const mine = (tree: string, session: string) => permits(scopes, session, tree);
  return views
    .filter((v) => touches(scopes, v.session))
    .map((v) => ({
      ...v,
      trees: v.trees.filter((t) => mine(t.tree, v.session)),
      bos: v.bos
        .map((b) => ({ ...b, mappers: b.mappers.filter((m) => mine(m.slice(0, m.indexOf('/')), v.session)) }))
        .filter((b) => b.mappers.length > 0),
    }));
}

export class Coordinator {
  private state: CoordinatorState | null = null;
  private zap: ZapHandler | null = null;
  private locks: FileLock[] = [];
  private guard: ConnectionGuard | null = null;
  private journal: Journal | null = null;
  private readonly rejectLog = new RateLimit(REJECTS_PER_SECOND, (n) =>
    this.opts.logger.warn(`${n} more rejected frame(s) in the last second, not logged one by one`),
  );
  /** reads checkpoints in a worker thread, with limits (a checkpoint is untrusted input) */
  private readonly inspector = new ImageInspector();
  /** the pipeline died: the daemon can no longer serve */
  failed = false;

  /** Journals an input before the pipeline acts on it. */
  private record(i: Input): void {
    if (!this.journal || !journaled(i)) return;
    try {
      this.journal.append(i);
    } catch (err) {
      // e.g. disk full: go on without a journal (a restart would then forget sessions), and say so
      this.opts.logger.error('journal write failed: continuing without a journal', { error: (err as Error).message });
      this.journal.close();
      this.journal = null;
    }
  }
  /** Inputs of the daemon itself (shutdown). */
  private readonly control = new Subject<Input>();
  private sub: Subscription | null = null;
  private closed: Promise<void>;
  private resolveClosed!: () => void;

  private constructor(
    private readonly hooks: HookEndpoint,
    private readonly publisher: EventPublisher,
    private readonly opts: CoordinatorOptions,
  ) {
    this.closed = new Promise((r) => (this.resolveClosed = r));
  }

  static async start(opts: CoordinatorOptions): Promise<Coordinator> {
    // one descriptor per connection: bound them well below the open-file limit (libzmq aborts
    // the process when an IPC accept fails for lack of descriptors), and say so, loudly when few
    const nofile = raiseNofileLimit();
    const max = opts.maxConnections ?? defaultConnectionBound(nofile.after);
    const few = max < 1024;
    if (max > nofile.after - 256) {
      // a bound the descriptors cannot back would let libzmq abort the daemon again
      opts.logger.warn(
        `serve --max-connections ${max} is more than the open-file limit ${nofile.after} can hold (less 256 for the daemon's own files)`,
        {
          maxConnections: max,
          after: nofile.after,
        },
      );
    }
    opts.logger.log(
      few ? 'warn' : 'info',
      `open-file limit ${nofile.after}: at most ${max} connections (hooks, clients, subscribers) at once; beyond that new ones wait${few ? ' (raise the limit: ulimit -n, LimitNOFILE=)' : ''}`,
      { ...nofile, maxConnections: max },
    );
    const guard = new ConnectionGuard(new ConnectionBudget(max), {
      onPause: (n, m) =>
        opts.logger.warn(
          `${n} connections held, the bound (serve --max-connections ${m}): refusing new connections until some close; new hooks retry until their timeout`,
          { connections: n, maxConnections: m },
        ),
      onResume: (n, m) => opts.logger.info(`${n} connections held: accepting new connections again`, { connections: n, maxConnections: m }),
      onError: (err) => opts.logger.error('cannot hide or restore an IPC socket', { error: err.message }),
    });
    // one daemon per IPC endpoint: lock them all before binding any
    const locks: FileLock[] = [];
    try {
      for (const ep of [...opts.listen, ...opts.events]) {
        prepareEndpoint(ep);
        const l = lockEndpoint(ep);
        if (l) locks.push(l);
      }
    } catch (err) {
      for (const l of locks) l.release();
      throw err;
    }
    try {
      const c = await Coordinator.bindAll(opts, guard);
      c.locks = locks;
      return c;
    } catch (err) {
      for (const l of locks) l.release();
      throw err;
    }
  }

  private static async bindAll(opts: CoordinatorOptions, guard: ConnectionGuard): Promise<Coordinator> {
    const curve = opts.curve ?? null;
    const zap = curve
      ? await ZapHandler.start(curve.allow, (key, ok, address) =>
          opts.logger.log(ok ? 'info' : 'warn', ok ? 'client allowed' : 'client refused: key not in the allow-list', { key, address }),
        )
      : null;
    let hooks: HookEndpoint;
    let publisher: EventPublisher;
    let coordinator: Coordinator | null = null;
    try {
      // frames are only read once the pipeline subscribes below, when `coordinator` is set
      hooks = await HookEndpoint.bind(
        opts.listen,
        {
          onSendError: (err) => opts.logger.error('verdict not sent', { error: String(err) }),
          onStatus: (peer, session, scopes) =>
            hooks.replyFrame(peer, encodeStatusReply(scopedView(statusView(coordinator?.state ?? null, session), scopes), wallMs())),
        },
        curve,
        guard,
      );
    } catch (err) {
      zap?.close();
      throw err;
    }
    try {
      publisher = await EventPublisher.bind(opts.events, curve, guard);
    } catch (err) {
      hooks.close();
      zap?.close();
      throw err;
    }
    const c = new Coordinator(hooks, publisher, opts);
    coordinator = c;
    c.zap = zap;
    c.guard = guard;
    if ((opts.activator ?? 'verify') !== 'none' && opts.verifyPages) c.inspector.warm();
    const config = {
      defaultDeadlineMs: opts.deadlineMs,
      defaultActivator: opts.activator ?? 'verify',
      defaultHoldAt: opts.holdAt ?? 'none',
      allowedActivators: opts.allowedActivators ?? [],
      ...(opts.maxSessions ? { maxSessions: opts.maxSessions } : {}),
    } as const;
    let recovered: { state: CoordinatorState; effects: Effect[] } | undefined;
    if (opts.stateDir) {
      try {
        const j = Journal.open(opts.stateDir, config, wallMs());
        c.journal = j.journal;
        const [state, effects] = recover(j.state, wallMs());
        recovered = { state, effects };
        c.state = state;
        const open = [...state.sessions.values()].filter((s) => s.status === 'open').map((s) => s.session);
        opts.logger.info('journal replayed', { inputs: j.replayed, sessions: state.sessions.size, open });
        for (const why of j.skipped) opts.logger.warn('journal line not replayed', { reason: why });
      } catch (err) {
        hooks.close();
        publisher.close();
        zap?.close();
        throw new UsageError(`cannot use state directory ${opts.stateDir}: ${(err as Error).message}`, {
          cause: err,
        });
      }
    }
    c.sub = merge(hooks.inputs(wallMs), c.control)
      .pipe(
        coordinate({
          config,
          onState: (s) => (c.state = s),
          recovered,
          record: (i) => c.record(i),
          checks: {
            // the checkpoint's page samples (--verify-pages) are read by the worker; without them,
            // the shared mappings are read natively on a pool thread, with no worker round trip
            inspect: (tree, dir) => (opts.verifyPages ? c.inspector.inspect(tree, dir, true) : inspectTreeShared(tree, dir)),
            observe: observeMappings,
            activate,
            now: wallMs,
            onDone: (e, ms) =>
              opts.logger.debug(e.type, { session: e.session, attempt: e.attempt, tree: 'tree' in e ? e.tree : undefined, ms }),
          },
        }),
      )
      .subscribe({
        next: (e) => c.apply(e),
        error: (err) => {
          // unreachable by design (failing inputs are dropped one by one); if it happens, the
          // daemon must exit non-zero so that a supervisor restarts it from its journal
          opts.logger.error('pipeline failed', { error: String(err) });
          c.failed = true;
          c.resolveClosed();
        },
        complete: () => c.resolveClosed(),
      });
    opts.logger.info('coordinator listening', { listen: opts.listen, events: opts.events, deadlineMs: opts.deadlineMs });
    return c;
  }

  /** The latest session state (plain data). */
  snapshot(): CoordinatorState | null {
    return this.state;
  }

  private apply(e: OutputEffect): void {
    const log = this.opts.logger;
    switch (e.type) {
      case 'inspect-tree':
      case 'verify-tree':
      case 'activate-bo':
        return; // run by the pipeline (coordinate's checks)
      case 'reply':
        this.hooks.reply(e.peer, e.verdict);
        // one line per hook at debug: the gate-opened line already names every tree
        if (!log.isLevelEnabled(e.verdict.proceed ? 'debug' : 'warn')) return;
        log.log(e.verdict.proceed ? 'debug' : 'warn', e.verdict.proceed ? 'verdict proceed' : 'verdict abort', {
          session: e.verdict.session,
          tree: e.verdict.tree,
          action: e.verdict.action,
          attempt: e.verdict.attempt,
          code: e.verdict.code || undefined,
          reason: e.verdict.reason || undefined,
        });
        return;
      case 'publish-event': {
        const ev = e.event;
        this.publisher.publish(ev.session, { event: ev });
        // at debug: every event is published (watch, trace); a line per event at info cost
        // the daemon more than the gates themselves in a restore of many trees (issue #11)
        if (!log.isLevelEnabled('debug')) return;
        log.debug('event', {
          session: ev.session,
          tree: ev.tree,
          action: ev.action,
          attempt: ev.attempt,
          pid: ev.initPid,
          hookPid: ev.hookPid,
          host: ev.host,
        });
        return;
      }
      case 'publish-decision': {
        const d = e.decision;
        this.publisher.publish(d.session, { decision: d });
        // frames nobody can be told about (undecodable, unsealed…) are logged at most REJECTS_PER_SECOND a second
        if (d.kind === 'event-rejected' && !d.session && !this.rejectLog.admit(d.at)) return;
        // per tree and per BO at debug (a session's opening, gates and end at info): a line per
        // BO at info cost the daemon more than the gate it opened (issue #11)
        const level =
          d.kind === 'session-aborted' || d.kind === 'event-rejected'
            ? 'warn'
            : d.kind === 'tree-released' || d.kind === 'bo-verified' || d.kind === 'bo-activated' || d.kind === 'tree-inspected'
              ? 'debug'
              : 'info';
        if (!log.isLevelEnabled(level)) return; // the fields below (every mapper's text) are built for nothing otherwise
        const f = fieldsOf(d);
        log.log(level, d.kind, {
          session: d.session,
          tree: f.tree,
          attempt: d.attempt,
          action: f.action,
          code: f.code || undefined,
          reason: f.reason || f.label || undefined,
          waitedMs: d.kind === 'gate-opened' ? f.waitedMs : undefined,
          trees: f.trees.length ? f.trees : f.bos.length ? f.bos : undefined,
          mappings: d.kind === 'tree-inspected' ? f.mappings : undefined,
          bo: f.bo || undefined,
          mappers: f.mappers.map(mapperText).join(', ') || undefined,
        });
        return;
      }
    }
  }

  /** Resolves when the hook endpoint has closed. */
  whenClosed(): Promise<void> {
    return this.closed;
  }

  /**
   * Stops the daemon promptly. Without a journal its open sessions die with
   * it: every waiting hook is told (ABORT, E_SHUTDOWN) instead of waiting for
   * its timeout. With one, waiting hooks keep re-sending, for a restarted
   * daemon to answer.
   */
  async shutdown(): Promise<void> {
    if (!this.journal && this.sub) {
      this.control.next({ type: 'shutdown', at: wallMs() });
      await this.hooks.flush(1000);
    }
    this.close();
  }

  close(): void {
    this.hooks.close();
    this.publisher.close();
    this.guard?.close();
    this.zap?.close();
    this.journal?.close();
    this.inspector.close();
    for (const l of this.locks) l.release();
    this.sub?.unsubscribe();
    this.resolveClosed();
  }
}
