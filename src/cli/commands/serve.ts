/** `stagegate serve`: the coordinator daemon. */
import { UsageError } from '../../errors';
import type { Activator } from '../../core/model';
import { defaultEventsEndpoint, defaultHookEndpoint } from '../../transport/endpoints';
import { type Command, activatorOf, bool, flag, holdAtOf, int, list, seconds } from '../command';

export const serve: Command = {
  name: 'serve',
  summary: 'run the coordinator daemon',
  help: `usage: stagegate serve [--listen EP]... [--events EP]... [--deadline SECONDS] [--hold-at H] [--log-level LEVEL]

  --listen EP      ZeroMQ endpoint for hooks (default ${defaultHookEndpoint()});
                   ipc://PATH (its directory is made 0700) or tcp://HOST:PORT
  --events EP      PUB endpoint republishing every event and decision
                   (default ${defaultEventsEndpoint()})
  --deadline S     session deadline in seconds, from the session's first event
                   (default 60; --timeout is the old name)
  --activator A    verify (default): check every BO mapping against the images and
                   answer a tree's post-restore once all BOs it maps are verified;
                   exec:CMD: verify, then run CMD per mapping (STAGEGATE_PID,
                   STAGEGATE_ADDRESS, STAGEGATE_SIZE, STAGEGATE_BO, ... in its
                   environment); exit 0 activates the BO;
                   kfd: verify, then AMD KFD CRIU RESUME per task (/dev/kfd);
                   none: no BO checks, post-restore waits for every tree
  --allow-activator A  an activator clients may choose in 'open' besides verify,
                   none and the --activator default (repeatable; exec:CMD by its
                   exact command): exec and kfd run with this daemon's privileges
  --log-level L    error|warn|info|debug (default info, or STAGEGATE_LOG_LEVEL)
  --curve-secret F the daemon's CURVE secret key file (stagegate keygen); TCP
                   endpoints then require CURVE from every client
  --allow F        allowed clients, one per line: KEY [SESSION[/TREE]]...
                   (globs with *); a key with scopes acts only on those
                   (with --curve-secret)
  --hold-at H      default arrival barrier of sessions: pre-restore (no tree
                   restores anything until every tree's criu has started) or
                   none (default); 'open --hold-at' chooses per session
  --max-sessions N sessions held at most, open or ended and still remembered
                   (default 10000); beyond, new sessions are refused (E_LIMIT)
  --verify-pages   verify also compares the sampled pages of each BO with the
                   checkpoint's copy (shared anonymous memory, memfd, SysV shm;
                   files are not in a checkpoint): costs reading those pages
  --max-connections N  connections held at once (hooks, clients, subscribers;
                   default: half the open-file limit less 256); at the bound,
                   IPC sockets are hidden until some close, and new hooks
                   retry until their timeout
  --state-dir D    journal every session change there (fsync'd); a daemon
                   restarted with the same directory resumes open sessions,
                   and waiting hooks re-send their events to it
  --insecure-tcp   allow TCP endpoints without CURVE (anyone who can connect can
                   steer restores: only on a network you trust completely)`,
  options: {
    listen: { type: 'string', multiple: true },
    events: { type: 'string', multiple: true },
    deadline: { type: 'string' },
    timeout: { type: 'string' },
    'log-level': { type: 'string' },
    activator: { type: 'string' },
    'curve-secret': { type: 'string' },
    allow: { type: 'string' },
    'insecure-tcp': { type: 'boolean' },
    'state-dir': { type: 'string' },
    'hold-at': { type: 'string' },
    'allow-activator': { type: 'string', multiple: true },
    'max-sessions': { type: 'string' },
    'max-connections': { type: 'string' },
    'verify-pages': { type: 'boolean' },
  },
  async run(a) {
    const listen = list(a, 'listen') ?? [defaultHookEndpoint()];
    const events = list(a, 'events') ?? [defaultEventsEndpoint()];
    const secretFile = flag(a, 'curve-secret');
    const allowFile = flag(a, 'allow');
    if (!!secretFile !== !!allowFile) throw new UsageError('serve: --curve-secret and --allow go together');
    const { readAllowList } = await import('../../transport/allow-list');
    const { readSecretKey } = await import('../../transport/keys');
    const curve = secretFile && allowFile ? { secretKey: readSecretKey(secretFile), allow: readAllowList(allowFile) } : null;
    const tcp = [...listen, ...events].filter((ep) => ep.startsWith('tcp://'));
    if (tcp.length && !curve && !bool(a, 'insecure-tcp')) {
      throw new UsageError(
        `serve: refusing plain TCP endpoint ${tcp[0]}: give --curve-secret and --allow (see stagegate keygen), or --insecure-tcp`,
      );
    }
    if (flag(a, 'deadline') !== undefined && flag(a, 'timeout') !== undefined)
      throw new UsageError('serve: give --deadline (or its old name --timeout), not both');
    const deadline = flag(a, 'deadline') !== undefined ? 'deadline' : 'timeout';
    const maxConnections = flag(a, 'max-connections');
    const { createLogger } = await import('../../log');
    const { Coordinator } = await import('../../coordinator');
    const logger = createLogger(flag(a, 'log-level', 'STAGEGATE_LOG_LEVEL'));
    const c = await Coordinator.start({
      listen,
      events,
      curve,
      stateDir: flag(a, 'state-dir'),
      deadlineMs: seconds('serve', deadline, flag(a, deadline), 60) * 1000,
      activator: activatorOf('serve', flag(a, 'activator')) || 'verify',
      holdAt: holdAtOf('serve', flag(a, 'hold-at')) || 'none',
      maxSessions: int('serve', 'max-sessions', flag(a, 'max-sessions'), 10_000, 1, 1_000_000),
      verifyPages: bool(a, 'verify-pages'),
      ...(maxConnections !== undefined ? { maxConnections: int('serve', 'max-connections', maxConnections, 0, 1, 1_000_000) } : {}),
      allowedActivators: (list(a, 'allow-activator') ?? []).map((x) => activatorOf('serve', x) as Activator),
      logger,
    });
    const stop = (sig: string) => {
      logger.info('shutting down', { signal: sig });
      void c.shutdown();
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
    await c.whenClosed();
    return c.failed ? 1 : 0;
  },
};
