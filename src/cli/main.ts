/**
 * The `stagegate` command line. Each subcommand parses its own options
 * (node:util parseArgs, strict) and has --help.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
// Heavy modules (zeromq, rxjs, winston, protobufjs) are imported by the
// commands that need them: `stagegate restore` sits on the restore path.
import { criuPath, hookPath } from '../paths';
import { defaultEventsEndpoint, defaultHookEndpoint } from '../transport/endpoints';
import { StagegateError, UsageError } from '../errors';
import { validateName } from '../core/validate';
import { parseActivator, parseHoldAt } from '../core/validate';
import type { Activator } from '../core/model';
import type { HoldAt } from '../core/actions';

const HELP: Record<string, string> = {
  main: `usage: stagegate <command> [options]

Coordinates CRIU restores of several process trees: no tree resumes before
every tree has reached its final memory layout and the coordinator says go.

commands:
  serve         run the coordinator daemon
  restore       run 'criu restore' through the gate for one tree
  open          open a session explicitly (tree count, deadline)
  images        explain checkpoint directories: tasks, VMAs, shared buffer objects
  verify        check a restored tree's shared mappings against its images now
  status        one-shot snapshot of the daemon's sessions (who waits for whom, since when)
  watch         follow events and decisions live
  trace         record events and decisions to .jsonl, .json (Perfetto) or .html
  hook-path     print the absolute path of the action-script hook
  criu-path     print the absolute path of the criu used
  keygen        make a CURVE key pair (for TCP endpoints)
  help          this text

'stagegate <command> --help' describes each command.`,
  serve: `usage: stagegate serve [--listen EP]... [--events EP]... [--timeout SECONDS] [--hold-at H] [--log-level LEVEL]

  --listen EP      ZeroMQ endpoint for hooks (default ${defaultHookEndpoint()});
                   ipc://PATH (its directory is made 0700) or tcp://HOST:PORT
  --events EP      PUB endpoint republishing every event and decision
                   (default ${defaultEventsEndpoint()})
  --timeout S      session deadline in seconds, from the session's first event (default 60)
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
  keygen: `usage: stagegate keygen --out PREFIX

Writes a CURVE key pair: PREFIX.secret (mode 0600) and PREFIX.public, and
prints the public key. The daemon uses its secret (serve --curve-secret) and
lists the clients' public keys (serve --allow); hooks and CLI clients on TCP
use STAGEGATE_CURVE_SERVER_PUBLIC=daemon.public and STAGEGATE_CURVE_CLIENT=PREFIX.`,
  restore: `usage: stagegate restore --session S --tree T --trees N [--endpoint EP] [--attempt A]
                         [--timeout SECONDS] -- <criu restore arguments>

Runs 'criu restore <arguments> --action-script <hook>' with STAGEGATE_* set,
and exits with criu's exit code. If criu fails, the session is aborted at once.
Each run is one restore of the tree: the coordinator refuses a second run for
a tree of the same session and attempt, and any new run once the session has
ended (completed or aborted); restore the job again with --attempt A+1 (or a
new session name).

  --session S    restore session (all trees of one job); [A-Za-z0-9._:-]{1,128}
  --tree T       this tree's name, unique within the session
                 (default under a launcher: rank$PMI_RANK or rank$SLURM_PROCID)
  --trees N      number of trees in the session (default: $PMI_SIZE or $SLURM_NTASKS)
  --endpoint EP  coordinator hook endpoint (default STAGEGATE_ENDPOINT or ${defaultHookEndpoint()})
  --attempt A    restore attempt, from 1; bump it to retry after an abort (default 1)
  --timeout S    how long a gated hook waits for a verdict before aborting (default 60)`,
  open: `usage: stagegate open --session S --trees N [--attempt A] [--deadline SECONDS]
                      [--activator verify|none|kfd|exec:CMD] [--manifest FILE]
                      [--hold-at pre-restore|none] [--endpoint EP]

Opens a session before any tree starts; otherwise the first event opens it.

  --hold-at H      pre-restore: an arrival barrier; no tree restores anything
                   until every tree's criu has started, so a tree that never
                   comes aborts the session with nothing restored (one more
                   round trip per tree); none: no barrier (default: the daemon's)

  --manifest FILE  JSON declaring BOs the images do not show (e.g. device memory):
                   {"bos": [{"id": "gpu0", "mappers": [{"tree": "rank0", "pid": 1,
                     "start": "0x7f0000000000", "size": 2097152, "prot": "rw-"}, ...]}]}
                   pid is the task's pid in the checkpoint.`,
  images: `usage: stagegate images [--json] [--all-vmas] DIR...

Reads CRIU checkpoint directories (one per tree; the tree is named after its
directory) and prints each task with its shared mappings, and every shared
buffer object (BO) mapped by two or more tasks with each mapper's address.

  --json       machine-readable output
  --all-vmas   list every VMA, not only the shared ones`,
  verify: `usage: stagegate verify --images DIR --init-pid PID [--pages]

Checks, now, that every shared buffer object of the tree restored from DIR
(rooted at host pid PID) is mapped in its restored tasks exactly as in the
images, backed by one object, with the same bytes. Exits 1 on any mismatch.

  --pages      also compare the sampled pages with the checkpoint's copy
               (shared anonymous memory, memfd, SysV shm)`,
  status: `usage: stagegate status [--json] [--session S] [--endpoint EP]

Asks the running daemon for its sessions: each tree's last stage, the gate it
waits at and since when, its BOs, and what each session still waits for.`,
  watch: `usage: stagegate watch [--session S] [--events EP] [--endpoint EP]

Follows the daemon's events and decisions. On a terminal: a live view (status
every 250 ms above the latest events); otherwise one line per message, and a
line for every gap in a session's sequence numbers (missed messages).`,
  trace: `usage: stagegate trace --out FILE [--session S] [--duration SECONDS] [--events EP]
       stagegate trace --from FILE.jsonl --out FILE

Records the daemon's events and decisions until interrupted, until SECONDS
passed, or, with --session, until that session completes or aborts; or converts
an earlier .jsonl recording. The format follows the extension of FILE:
  .jsonl  one message per line, lossless (convert it later with --from)
  .json   Chrome trace-event format: open it in https://ui.perfetto.dev or chrome://tracing
  .html   one self-contained page: timeline, per-tree table, BO map`,
  'hook-path': 'usage: stagegate hook-path\n\nPrints the absolute path of the hook to pass to criu --action-script.',
  'criu-path': 'usage: stagegate criu-path\n\nPrints the absolute path of the criu stagegate runs (STAGEGATE_CRIU overrides).',
};

type Options = NonNullable<ParseArgsConfig['options']>;

type Values = Record<string, string | boolean | string[] | undefined>;

function parse(cmd: string, argv: string[], options: Options): { values: Values } {
  try {
    return parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: false });
  } catch (err) {
    throw new UsageError(`${cmd}: ${(err as Error).message}`);
  }
}

function int(cmd: string, name: string, v: string | undefined, dflt: number, min: number, max: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new UsageError(`${cmd}: --${name} must be an integer in ${min}..${max}, got '${v}'`);
  return n;
}

/** The most a hook waits for a verdict (STAGEGATE_TIMEOUT, hooks/stagegate-hook.c). */
const HOOK_MAX_TIMEOUT_S = 86400;

function seconds(cmd: string, name: string, v: string | undefined, dflt: number, max = 7 * 86400): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || n > max) throw new UsageError(`${cmd}: --${name} must be seconds in (0, ${max}], got '${v}'`);
  return n;
}

function name(cmd: string, what: string, v: string | undefined): string {
  if (v === undefined) throw new UsageError(`${cmd}: --${what} is required`);
  const bad = validateName(what, v);
  if (bad) throw new UsageError(`${cmd}: ${bad}`);
  return v;
}

async function serve(argv: string[]): Promise<number> {
  const { values } = parse('serve', argv, {
    listen: { type: 'string', multiple: true },
    events: { type: 'string', multiple: true },
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
  });
  if (values.help) return help('serve');
  const listen = (values.listen as string[] | undefined) ?? [defaultHookEndpoint()];
  const events = (values.events as string[] | undefined) ?? [defaultEventsEndpoint()];
  const { readAllowList } = await import('../transport/allow-list');
  const { readSecretKey } = await import('../transport/keys');
  const secretFile = values['curve-secret'] as string | undefined;
  const allowFile = values.allow as string | undefined;
  if (!!secretFile !== !!allowFile) throw new UsageError('serve: --curve-secret and --allow go together');
  const curve = secretFile && allowFile ? { secretKey: readSecretKey(secretFile), allow: readAllowList(allowFile) } : null;
  const tcp = [...listen, ...events].filter((ep) => ep.startsWith('tcp://'));
  if (tcp.length && !curve && !values['insecure-tcp']) {
    throw new UsageError(
      `serve: refusing plain TCP endpoint ${tcp[0]}: give --curve-secret and --allow (see stagegate keygen), or --insecure-tcp`,
    );
  }
  const activator = activatorOf('serve', values.activator as string | undefined) || 'verify';
  const { createLogger } = await import('../log');
  const { Coordinator } = await import('../coordinator');
  const logger = createLogger(values['log-level'] as string | undefined);
  const c = await Coordinator.start({
    listen,
    events,
    curve,
    stateDir: values['state-dir'] as string | undefined,
    deadlineMs: seconds('serve', 'timeout', values.timeout as string | undefined, 60) * 1000,
    activator,
    holdAt: holdAtOf('serve', values['hold-at'] as string | undefined) || 'none',
    maxSessions: int('serve', 'max-sessions', values['max-sessions'] as string | undefined, 10_000, 1, 1_000_000),
    verifyPages: !!values['verify-pages'],
    ...(values['max-connections'] !== undefined
      ? { maxConnections: int('serve', 'max-connections', values['max-connections'] as string, 0, 1, 1_000_000) }
      : {}),
    allowedActivators: ((values['allow-activator'] as string[] | undefined) ?? []).map((a) => activatorOf('serve', a) as Activator),
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
}

async function restoreCmd(argv: string[]): Promise<number> {
  const dash = argv.indexOf('--');
  const own = dash < 0 ? argv : argv.slice(0, dash);
  const criuArgs = dash < 0 ? [] : argv.slice(dash + 1);
  const { values } = parse('restore', own, {
    session: { type: 'string' },
    tree: { type: 'string' },
    trees: { type: 'string' },
    endpoint: { type: 'string' },
    attempt: { type: 'string' },
    timeout: { type: 'string' },
  });
  if (values.help) return help('restore');
  const v = values as Record<string, string | undefined>;
  // Under a launcher, one restore per rank: tree and tree count from its environment.
  const env = process.env;
  const rank = env.PMI_RANK ?? env.SLURM_PROCID;
  v.tree ??= rank === undefined ? undefined : `rank${rank}`;
  v.trees ??= env.PMI_SIZE ?? env.SLURM_NTASKS;
  if (v.trees === undefined) throw new UsageError('restore: --trees is required (or PMI_SIZE / SLURM_NTASKS from a launcher)');
  const { restore } = await import('../criu/restore');
  return restore({
    session: name('restore', 'session', v.session),
    tree: name('restore', 'tree', v.tree),
    trees: int('restore', 'trees', v.trees, 1, 1, 65536),
    attempt: int('restore', 'attempt', v.attempt, 1, 1, 1_000_000),
    timeoutS: seconds('restore', 'timeout', v.timeout, 60, HOOK_MAX_TIMEOUT_S),
    endpoint: v.endpoint ?? process.env.STAGEGATE_ENDPOINT ?? defaultHookEndpoint(),
    criuArgs,
  });
}

async function openCmd(argv: string[]): Promise<number> {
  const { values } = parse('open', argv, {
    session: { type: 'string' },
    trees: { type: 'string' },
    attempt: { type: 'string' },
    deadline: { type: 'string' },
    endpoint: { type: 'string' },
    activator: { type: 'string' },
    manifest: { type: 'string' },
    'hold-at': { type: 'string' },
  });
  if (values.help) return help('open');
  const v = values as Record<string, string | undefined>;
  if (v.trees === undefined) throw new UsageError('open: --trees is required');
  const { openSession } = await import('../transport/client');
  const verdict = await openSession(v.endpoint ?? process.env.STAGEGATE_ENDPOINT ?? defaultHookEndpoint(), {
    session: name('open', 'session', v.session),
    expectedTrees: int('open', 'trees', v.trees, 1, 1, 65536),
    attempt: int('open', 'attempt', v.attempt, 1, 1, 1_000_000),
    deadlineMs: v.deadline === undefined ? 0 : Math.round(seconds('open', 'deadline', v.deadline, 60) * 1000),
    activator: activatorOf('open', v.activator) || undefined,
    holdAt: holdAtOf('open', v['hold-at']) || undefined,
    manifest: v.manifest === undefined ? [] : (await import('./manifest')).readManifest(v.manifest),
  });
  if (!verdict.proceed) {
    process.stderr.write(`stagegate open: refused [${verdict.code}] ${verdict.reason}\n`);
    return 1;
  }
  return 0;
}

async function statusCmd(argv: string[]): Promise<number> {
  const { values } = parse('status', argv, { json: { type: 'boolean' }, session: { type: 'string' }, endpoint: { type: 'string' } });
  if (values.help) return help('status');
  const { status } = await import('./status');
  return status(
    (values.endpoint as string | undefined) ?? process.env.STAGEGATE_ENDPOINT ?? defaultHookEndpoint(),
    (values.session as string | undefined) ?? '',
    !!values.json,
  );
}

async function watchCmd(argv: string[]): Promise<number> {
  const { values } = parse('watch', argv, { session: { type: 'string' }, events: { type: 'string' }, endpoint: { type: 'string' } });
  if (values.help) return help('watch');
  const { watch } = await import('./status');
  const stop = new AbortController();
  process.once('SIGINT', () => stop.abort());
  process.once('SIGTERM', () => stop.abort());
  return watch(
    (values.events as string | undefined) ?? defaultEventsEndpoint(),
    (values.endpoint as string | undefined) ?? process.env.STAGEGATE_ENDPOINT ?? defaultHookEndpoint(),
    (values.session as string | undefined) ?? '',
    stop.signal,
  );
}

async function traceCmd(argv: string[]): Promise<number> {
  const { values } = parse('trace', argv, {
    out: { type: 'string' },
    from: { type: 'string' },
    session: { type: 'string' },
    duration: { type: 'string' },
    events: { type: 'string' },
  });
  if (values.help) return help('trace');
  const v = values as Record<string, string | undefined>;
  if (!v.out) throw new UsageError('trace: --out FILE is required');
  const { trace } = await import('./trace');
  const stop = new AbortController();
  process.once('SIGINT', () => stop.abort());
  process.once('SIGTERM', () => stop.abort());
  return trace({
    out: v.out,
    from: v.from,
    events: v.events ?? defaultEventsEndpoint(),
    session: v.session ?? '',
    durationS: v.duration === undefined ? undefined : seconds('trace', 'duration', v.duration, 0),
    signal: stop.signal,
  });
}

async function keygenCmd(argv: string[]): Promise<number> {
  const { values } = parse('keygen', argv, { out: { type: 'string' } });
  if (values.help) return help('keygen');
  if (!values.out) throw new UsageError('keygen: --out PREFIX is required');
  const { keygen } = await import('../transport/keys');
  process.stdout.write(keygen(values.out as string) + '\n');
  return 0;
}

async function verifyCmd(argv: string[]): Promise<number> {
  const { values } = parse('verify', argv, { images: { type: 'string' }, 'init-pid': { type: 'string' }, pages: { type: 'boolean' } });
  if (values.help) return help('verify');
  const v = values as Record<string, string | undefined>;
  if (!v.images) throw new UsageError('verify: --images is required');
  const pid = int('verify', 'init-pid', v['init-pid'], 0, 1, 4_194_304);
  if (!pid) throw new UsageError('verify: --init-pid is required');
  const { verifyTree } = await import('./verify');
  const r = await verifyTree(v.images, pid, 'tree', !!values.pages);
  process.stdout.write(r.lines.join('\n') + (r.lines.length ? '\n' : 'no shared buffer objects\n'));
  return r.ok ? 0 : 1;
}

async function imagesCmd(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: { json: { type: 'boolean' }, 'all-vmas': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: true,
    });
  } catch (err) {
    throw new UsageError(`images: ${(err as Error).message}`);
  }
  if (parsed.values.help) return help('images');
  if (parsed.positionals.length === 0) throw new UsageError('images: give at least one checkpoint directory');
  const { describeImages, imagesJson, imagesTable } = await import('./images');
  const d = describeImages(parsed.positionals);
  process.stdout.write((parsed.values.json ? imagesJson(d) : imagesTable(d, !!parsed.values['all-vmas'])) + '\n');
  return 0;
}

function activatorOf(cmd: string, v: string | undefined): Activator | '' {
  if (v === undefined) return '';
  const a = parseActivator(v);
  if (!a) throw new UsageError(`${cmd}: --activator must be verify, none, kfd or exec:<command>, got '${v}'`);
  return a;
}

function holdAtOf(cmd: string, v: string | undefined): HoldAt | '' {
  if (v === undefined) return '';
  const h = parseHoldAt(v);
  if (!h) throw new UsageError(`${cmd}: --hold-at must be pre-restore or none, got '${v}'`);
  return h;
}

function help(cmd: string): number {
  process.stdout.write(HELP[cmd] + '\n');
  return 0;
}

function printPath(cmd: string, argv: string[], get: () => string): number {
  const { values } = parse(cmd, argv, {});
  if (values.help) return help(cmd);
  process.stdout.write(get() + '\n');
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'serve':
      return serve(rest);
    case 'restore':
      return restoreCmd(rest);
    case 'open':
      return openCmd(rest);
    case 'images':
      return imagesCmd(rest);
    case 'verify':
      return verifyCmd(rest);
    case 'status':
      return statusCmd(rest);
    case 'watch':
      return watchCmd(rest);
    case 'trace':
      return traceCmd(rest);
    case 'keygen':
      return keygenCmd(rest);
    case 'hook-path':
      return printPath(cmd, rest, hookPath);
    case 'criu-path':
      return printPath(cmd, rest, criuPath);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      return help('main');
    default:
      throw new UsageError(`unknown command '${cmd}' (try 'stagegate --help')`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof StagegateError) {
      process.stderr.write(`stagegate: [${err.code}] ${err.message}\n`);
      process.exitCode = err instanceof UsageError ? 64 : 1;
    } else {
      process.stderr.write(`stagegate: unexpected error: ${(err as Error)?.stack ?? err}\n`);
      process.exitCode = 70;
    }
  },
);
