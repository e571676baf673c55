/** `stagegate status` and `stagegate watch`: what the daemon's sessions wait for. */
import { defaultEventsEndpoint, defaultHookEndpoint } from '../../transport/endpoints';
import { type Command, bool, flag, untilSignalled } from '../command';

export const status: Command = {
  name: 'status',
  summary: "one-shot snapshot of the daemon's sessions (who waits for whom, since when)",
  help: `usage: stagegate status [--json] [--session S] [--endpoint EP]

Asks the running daemon for its sessions: each tree's last stage, the gate it
waits at and since when, its BOs, and what each session still waits for.

  --endpoint EP  coordinator hook endpoint (STAGEGATE_ENDPOINT; default ${defaultHookEndpoint()})`,
  options: { json: { type: 'boolean' }, session: { type: 'string' }, endpoint: { type: 'string' } },
  async run(a) {
    const { status: run } = await import('../status');
    return run(flag(a, 'endpoint', 'STAGEGATE_ENDPOINT') ?? defaultHookEndpoint(), flag(a, 'session') ?? '', bool(a, 'json'));
  },
};

export const watch: Command = {
  name: 'watch',
  summary: 'follow events and decisions live',
  help: `usage: stagegate watch [--session S] [--events EP] [--endpoint EP]

Follows the daemon's events and decisions. On a terminal: a live view (status
every 250 ms above the latest events); otherwise one line per message, and a
line for every gap in a session's sequence numbers (missed messages).

  --events EP    the daemon's events endpoint (default ${defaultEventsEndpoint()})
  --endpoint EP  coordinator hook endpoint, for the status part (STAGEGATE_ENDPOINT)`,
  options: { session: { type: 'string' }, events: { type: 'string' }, endpoint: { type: 'string' } },
  async run(a) {
    const { watch: run } = await import('../status');
    return untilSignalled((signal) =>
      run(
        flag(a, 'events') ?? defaultEventsEndpoint(),
        flag(a, 'endpoint', 'STAGEGATE_ENDPOINT') ?? defaultHookEndpoint(),
        flag(a, 'session') ?? '',
        signal,
      ),
    );
  },
};
