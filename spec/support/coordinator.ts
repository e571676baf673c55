/** An in-process coordinator on private IPC endpoints, with a subscriber recording what it publishes. */
import { mkdtempSync, rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import winston from 'winston';
import { Subscriber } from 'zeromq';
import { Coordinator } from '../../src/coordinator';
import { decodePublished, type PublishedMessage } from '../../src/protocol/codec';

export interface TestCoordinator {
  coordinator: Coordinator;
  endpoint: string;
  events: string;
  messages: PublishedMessage[];
  dir: string;
  close(): Promise<void>;
}

export async function startCoordinator(deadlineMs = 5000, activator: 'verify' | 'none' = 'none'): Promise<TestCoordinator> {
  const dir = mkdtempSync('/tmp/sg-test-');
  const endpoint = `ipc://${dir}/hooks.sock`;
  const events = `ipc://${dir}/events.sock`;
  const logger = winston.createLogger({ silent: true });
  const coordinator = await Coordinator.start({ listen: [endpoint], events: [events], deadlineMs, activator, logger });
  const sub = new Subscriber();
  sub.connect(events);
  sub.subscribe();
  const messages: PublishedMessage[] = [];
  void (async () => {
    for await (const [, frame] of sub) messages.push(decodePublished(frame!));
  })().catch(() => {});
  await sleep(50);
  return {
    coordinator,
    endpoint,
    events,
    messages,
    dir,
    async close() {
      sub.close();
      coordinator.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Polls `cond` every 10 ms until true or `timeoutMs` passes. */
export async function until(cond: () => boolean, timeoutMs = 3000): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) return false;
    await sleep(10);
  }
  return true;
}
