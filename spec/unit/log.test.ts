import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import winston from 'winston';
import { dropDisabledLevels } from '../../src/log';

/** A logger whose format counts the entries it is given, writing JSON lines to `lines`. */
function counting(level: string) {
  const lines: Record<string, unknown>[] = [];
  let formatted = 0;
  const count = winston.format((info) => {
    formatted++;
    return info;
  });
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  const logger = dropDisabledLevels(
    winston.createLogger({
      level,
      format: winston.format.combine(count(), winston.format.json()),
      transports: [new winston.transports.Stream({ stream })],
    }),
  );
  return { logger, lines, formatted: () => formatted };
}

test('entries below the level are dropped before they are formatted, in every calling form', () => {
  const { logger, lines, formatted } = counting('info');
  logger.debug('event', { session: 's' });
  logger.log('debug', 'verdict proceed', { tree: 't' });
  logger.log({ level: 'debug', message: 'entry' });
  assert.equal(formatted(), 0);
  assert.equal(lines.length, 0);
});

test('entries at or above the level are still formatted and written, with their fields', () => {
  const { logger, lines, formatted } = counting('info');
  logger.info('gate-opened', { session: 's', trees: ['a', 'b'] });
  logger.log('warn', 'verdict abort', { tree: 't' });
  logger.log({ level: 'error', message: 'entry' });
  logger.log('info', 'plain');
  assert.equal(formatted(), 4);
  assert.deepEqual(
    lines.map((l) => [l.level, l.message]),
    [
      ['info', 'gate-opened'],
      ['warn', 'verdict abort'],
      ['error', 'entry'],
      ['info', 'plain'],
    ],
  );
  assert.deepEqual(lines[0]!.trees, ['a', 'b']);
});

test('a level raised or lowered later is honoured', () => {
  const { logger, lines } = counting('info');
  logger.level = 'debug';
  logger.debug('now shown');
  logger.level = 'warn';
  logger.info('now hidden');
  assert.deepEqual(
    lines.map((l) => l.message),
    ['now shown'],
  );
});
