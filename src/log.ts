/**
 * Structured logging: JSON lines on stderr (winston). Every line of the
 * coordinator carries `session`, `tree`, `action` and `pid` (empty or 0 when
 * not about one).
 * STAGEGATE_LOG_LEVEL or --log-level sets the level.
 */
import winston from 'winston';
import { UsageError } from './errors';

export type Logger = winston.Logger;

export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;

/** JSON lines, or on a terminal one readable line per entry. An unknown level is refused (winston would silently log nothing). */
export function createLogger(level = process.env.STAGEGATE_LOG_LEVEL ?? 'info', human = !!process.stderr.isTTY): Logger {
  if (!(LOG_LEVELS as readonly string[]).includes(level))
    throw new UsageError(`log level '${level.slice(0, 40)}' is not one of ${LOG_LEVELS.join(', ')}`);
  const readable = winston.format.printf(({ timestamp, level: lvl, message, session, tree, action, pid, ...rest }) => {
    const where = session
      ? ` [${session}${tree ? `/${tree}` : ''}${action && action !== 'unknown' ? ` ${action}` : ''}${pid ? ` pid ${pid}` : ''}]`
      : '';
    const more = Object.entries(rest)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
    return `${timestamp} ${lvl.padEnd(5)}${where} ${message}${more.length ? ` ${more.join(' ')}` : ''}`;
  });
  return dropDisabledLevels(
    winston.createLogger({
      level,
      defaultMeta: { session: '', tree: '', action: '', pid: 0 },
      format: winston.format.combine(winston.format.timestamp(), human ? readable : winston.format.json()),
      transports: [new winston.transports.Console({ stderrLevels: Object.keys(winston.config.npm.levels) })],
    }),
  );
}

/**
 * Makes entries below the logger's level cost nothing. winston stamps and
 * serialises every entry before its transports drop those below their level:
 * the daemon's debug lines (a few per stage of every tree) cost it more CPU
 * than its info lines (issue #11).
 */
export function dropDisabledLevels(logger: Logger): Logger {
  const log = logger.log;
  // every level method (logger.debug …) calls this.log, so this one check covers them all
  logger.log = function (this: Logger, ...args: unknown[]) {
    const [first] = args;
    const level = typeof first === 'string' ? first : (first as { level?: unknown } | null)?.level;
    if (typeof level === 'string' && !this.isLevelEnabled(level)) return this;
    return (log as (...a: unknown[]) => Logger).apply(this, args);
  } as Logger['log'];
  return logger;
}
