/**
 * The floor of any Node.js coordinator on zeromq.js, for section 2 of the
 * benchmark: a ROUTER on the hooks' endpoint that decodes every request and
 * answers each gated one with PROCEED at once. No sessions, barriers,
 * verification, logs or events: what is left is what receiving, decoding and
 * answering a restore's messages costs in Node.js on these cores, the part of
 * the daemon's CPU that no change to stagegate's pipeline can remove.
 *
 *   node --import tsx bench/floor-daemon.ts ipc:///path/hooks.sock
 */
import { Router } from 'zeromq';
import { isGate } from '../src/core/actions';
import { decodeRequest, encodeVerdict } from '../src/protocol/codec';

async function main() {
  const endpoint = process.argv[2];
  if (!endpoint?.startsWith('ipc://')) throw new Error('usage: floor-daemon.ts ipc://PATH');
  const router = new Router({ linger: 0 });
  await router.bind(endpoint);
  process.on('SIGTERM', () => router.close());
  console.error('floor daemon listening');
  for await (const [id, frame] of router) {
    if (!id || !frame) continue;
    let req: ReturnType<typeof decodeRequest>;
    try {
      req = decodeRequest(frame);
    } catch {
      continue; // an undecodable or oversized frame: nothing to answer, and no reason to stop
    }
    if (req.type !== 'event' || !isGate(req.event.action)) continue;
    const { session, tree, action, attempt } = req.event;
    await router.send([id, encodeVerdict({ session, tree, action, attempt, proceed: true, code: '', reason: '' })]);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
