/**
 * Structured logging: JSON lines on stderr (winston). Every line of the
 * coordinator carries `session` and `tree` (empty when not about one).
 * STAGEGATE_LOG_LEVEL or --log-level sets the level.
 */
import winston from 'winston';

export type Logger = winston.Logger;

export function createLogger(level = process.env.STAGEGATE_LOG_LEVEL ?? 'info'): Logger {
  return winston.createLogger({
    level,
    defaultMeta: { session: '', tree: '' },
    format: winston.format.combine(winston.format.timestamp(), winston.format.json()),
    transports: [new winston.transports.Console({ stderrLevels: Object.keys(winston.config.npm.levels) })],
  });
}
