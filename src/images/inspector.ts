/**
 * Reads trees' checkpoints off the event loop: one worker thread with a capped
 * heap takes the jobs one at a time, each with a time limit. A job that runs
 * too long or kills the worker (a checkpoint built to exhaust memory) fails
 * alone: the worker is replaced and the next job goes on.
 */
import { Worker } from 'node:worker_threads';
import { extname, join } from 'node:path';
import { projectRoot } from '../paths';
import type { MappingRef } from '../core/model';
import { ImageError } from '../errors';

export interface InspectorLimits {
  /** per checkpoint */
  timeoutMs: number;
  /** the worker's old-generation heap */
  heapMb: number;
}

/** An image of the largest tree (65,536 tasks, mm images up to 64 MiB) decodes well within 256 MiB. */
export const DEFAULT_INSPECTOR_LIMITS: InspectorLimits = { timeoutMs: 30_000, heapMb: 256 };
/** A small young generation: the reader's garbage is collected often instead of growing the daemon's RSS. */
const YOUNG_GENERATION_MB = 4;
/** An idle reader is stopped after this long; the next checkpoint starts a new one (~50 ms). */
const IDLE_MS = 10_000;

interface Job {
  id: number;
  tree: string;
  imageDir: string;
  pages: boolean;
  resolve: (m: MappingRef[]) => void;
  reject: (e: Error) => void;
}

export class ImageInspector {
  private worker: Worker | null = null;
  private readonly queue: Job[] = [];
  private current: { job: Job; timer: NodeJS.Timeout } | null = null;
  private nextId = 1;
  private closed = false;

  constructor(private readonly limits: InspectorLimits = DEFAULT_INSPECTOR_LIMITS) {}

  /**
   * The shared mappings of `tree` from its checkpoint directory (with `pages`, each
   * with the checkpoint's copy of its sampled pages); rejects with the reason it could not be read.
   */
  inspect(tree: string, imageDir: string, pages = false): Promise<MappingRef[]> {
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(new ImageError(imageDir, 0, 'the image inspector is closed'));
      this.queue.push({ id: this.nextId++, tree, imageDir, pages, resolve, reject });
      this.pump();
    });
  }

  /** Starts the worker now, so that the first restore does not wait for it. */
  warm(): void {
    if (!this.closed) this.worker ??= this.spawn();
  }

  close(): void {
    this.closed = true;
    if (this.idle) clearTimeout(this.idle);
    for (const j of this.queue.splice(0)) j.reject(new ImageError(j.imageDir, 0, 'the image inspector is closed'));
    this.fail('the image inspector is closed');
  }

  private spawn(): Worker {
    // the compiled worker beside this file (.js); from the TypeScript sources (tests), the
    // worker loads them through tsx's require hook (loader hooks do not reach worker threads)
    const ext = extname(__filename);
    const file = join(__dirname, `inspect-worker${ext}`);
    const resourceLimits = { maxOldGenerationSizeMb: this.limits.heapMb, maxYoungGenerationSizeMb: YOUNG_GENERATION_MB };
    const w =
      ext === '.ts'
        ? new Worker(
            `require(${JSON.stringify(join(projectRoot, 'node_modules/tsx/dist/cjs/index.cjs'))}); require(${JSON.stringify(file)});`,
            { eval: true, execArgv: [], resourceLimits },
          )
        : new Worker(file, { execArgv: [], resourceLimits });
    w.unref();
    w.on('message', (m: { id: number; mappings?: MappingRef[]; error?: string; file?: string; offset?: number }) => {
      const c = this.current;
      if (!c || c.job.id !== m.id) return;
      clearTimeout(c.timer);
      this.current = null;
      if (m.error !== undefined) c.job.reject(new ImageError(m.file ?? c.job.imageDir, m.offset ?? 0, m.error));
      else c.job.resolve(m.mappings ?? []);
      this.pump();
    });
    w.on('error', (err) => this.fail(`reading it exhausted the reader: ${err.message}`));
    w.on('exit', (code) => this.fail(`the image reader exited (${code})`));
    return w;
  }

  /** The current job failed with the worker (crash, time limit): the worker goes, the queue goes on. */
  private fail(why: string): void {
    const w = this.worker;
    this.worker = null;
    if (w) {
      w.removeAllListeners();
      void w.terminate();
    }
    const c = this.current;
    this.current = null;
    if (c) {
      clearTimeout(c.timer);
      c.job.reject(new ImageError(c.job.imageDir, 0, why));
    }
    if (!this.closed) this.pump();
  }

  private idle: NodeJS.Timeout | null = null;

  private pump(): void {
    if (this.current || this.closed) return;
    if (this.idle) clearTimeout(this.idle);
    this.idle = null;
    const job = this.queue.shift();
    if (!job) {
      // nothing to read: free the reader's memory after a while
      if (this.worker) this.idle = setTimeout(() => this.fail('idle'), IDLE_MS).unref();
      return;
    }
    this.worker ??= this.spawn();
    const timer = setTimeout(() => this.fail(`reading it took longer than ${this.limits.timeoutMs} ms`), this.limits.timeoutMs);
    this.current = { job, timer };
    this.worker.postMessage({ id: job.id, tree: job.tree, imageDir: job.imageDir, pages: job.pages });
  }
}
