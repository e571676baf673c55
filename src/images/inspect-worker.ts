/**
 * The worker thread that reads checkpoints for the daemon (images/inspector.ts):
 * a corrupt or hostile checkpoint then costs this thread, never the daemon's
 * event loop, and its heap is capped.
 */
import { parentPort } from 'node:worker_threads';
import { inspectTree } from './inspect';
import { ImageError } from '../errors';

parentPort?.on('message', (job: { id: number; tree: string; imageDir: string; pages: boolean }) => {
  try {
    parentPort!.postMessage({ id: job.id, mappings: inspectTree(job.tree, job.imageDir, { pages: job.pages }) });
  } catch (err) {
    // the error crosses the thread as plain data; the inspector makes it an ImageError again
    const where =
      err instanceof ImageError
        ? { file: err.file, offset: err.offset, error: err.detail }
        : { file: job.imageDir, offset: 0, error: String((err as Error)?.message ?? err) };
    parentPort!.postMessage({ id: job.id, ...where });
  }
});
