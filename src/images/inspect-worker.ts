/**
 * The worker thread that reads checkpoints for the daemon (images/inspector.ts):
 * a corrupt or hostile checkpoint then costs this thread, never the daemon's
 * event loop, and its heap is capped.
 */
import { parentPort } from 'node:worker_threads';
import { inspectTree } from './inspect';

parentPort?.on('message', (job: { id: number; tree: string; imageDir: string; pages: boolean }) => {
  try {
    parentPort!.postMessage({ id: job.id, mappings: inspectTree(job.tree, job.imageDir, { pages: job.pages }) });
  } catch (err) {
    parentPort!.postMessage({ id: job.id, error: (err as Error).message ?? String(err) });
  }
});
