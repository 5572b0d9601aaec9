import path from 'node:path';
import { fdatasyncFile } from '../lib/fsync.js';

/**
 * Starts the disk writes of an extraction while it is still running: each file is flushed
 * (fdatasync) once `lagBytes` of later file data went by, by which time tar has written and
 * closed it. The final fsync of the tree, which makes the restore durable, then finds little
 * left to write, so durability costs almost no time over a plain `tar -x` that leaves
 * everything in the page cache. Only an accelerator: a file it misses is flushed by that pass.
 */
export function writeBehind(dir: string, opts: { lagBytes?: number; concurrency?: number; flush?: (file: string) => Promise<unknown> } = {}) {
  const lag = opts.lagBytes ?? 32 * 1024 * 1024;
  const concurrency = opts.concurrency ?? 2;
  const flush = opts.flush ?? fdatasyncFile;
  const pending: { file: string; end: number }[] = [];
  let position = 0;
  let running = 0;
  let stopped = false;
  let idle: (() => void) | undefined;

  const pump = () => {
    while (!stopped && running < concurrency && pending.length > 0 && (pending[0] as { end: number }).end <= position - lag) {
      const { file } = pending.shift() as { file: string };
      running++;
      void flush(file).catch(() => {}).finally(() => {
        running--;
        if (running === 0) idle?.();
        pump();
      });
    }
  };

  return {
    file(rel: string, size: number) {
      position += size;
      pending.push({ file: path.join(dir, rel), end: position });
      pump();
    },
    /** Stops starting flushes and waits for those under way. */
    async stop(): Promise<void> {
      stopped = true;
      pending.length = 0;
      if (running > 0) await new Promise<void>((resolve) => (idle = resolve));
    },
  };
}
