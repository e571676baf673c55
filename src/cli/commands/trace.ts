/** `stagegate trace`: records events and decisions. */
import { UsageError } from '../../errors';
import { defaultEventsEndpoint } from '../../transport/endpoints';
import { type Command, flag, seconds, untilSignalled } from '../command';

export const trace: Command = {
  name: 'trace',
  summary: 'record events and decisions to .jsonl, .json (Perfetto) or .html',
  help: `usage: stagegate trace --out FILE [--session S] [--duration SECONDS] [--events EP]
       stagegate trace --from FILE.jsonl --out FILE

Records the daemon's events and decisions until interrupted, until SECONDS
passed, or, with --session, until that session completes or aborts; or converts
an earlier .jsonl recording. The format follows the extension of FILE:
  .jsonl  one message per line, lossless (convert it later with --from)
  .json   Chrome trace-event format: open it in https://ui.perfetto.dev or chrome://tracing
  .html   one self-contained page: timeline, per-tree table, BO map`,
  options: {
    out: { type: 'string' },
    from: { type: 'string' },
    session: { type: 'string' },
    duration: { type: 'string' },
    events: { type: 'string' },
  },
  async run(a) {
    const out = flag(a, 'out');
    if (!out) throw new UsageError('trace: --out FILE is required');
    const duration = flag(a, 'duration');
    const { trace: run } = await import('../trace');
    return untilSignalled((signal) =>
      run({
        out,
        from: flag(a, 'from'),
        events: flag(a, 'events') ?? defaultEventsEndpoint(),
        session: flag(a, 'session') ?? '',
        durationS: duration === undefined ? undefined : seconds('trace', 'duration', duration, 0),
        signal,
      }),
    );
  },
};
