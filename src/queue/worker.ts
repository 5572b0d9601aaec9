import { DelayedError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { parsePayload, type JobName, type JobPayload, type QueueName } from './jobs.js';

/**
 * Thrown by a handler whose job must run again later, by any worker, without counting as a
 * failed attempt: a backup handed back at shutdown, a deletion waiting for running work.
 */
export class RetryLater extends Error {
  override name = 'RetryLater';
  constructor(
    readonly delayMs: number,
    message: string,
  ) {
    super(message);
  }
}

export type Handlers = {
  [Q in QueueName]: { [J in JobName<Q>]: (payload: JobPayload<Q, J>, job: Job) => Promise<void> };
};

export interface Workers {
  close(): Promise<void>;
  workers: Worker[];
}

/** One BullMQ worker per queue; payloads are validated against the registry before a handler sees them. */
export function startWorkers(opts: { connection: Redis; prefix: string; concurrency: number; handlers: Handlers; log: Logger }): Workers {
  const workers = (Object.keys(opts.handlers) as QueueName[]).map((queue) => {
    const byName = opts.handlers[queue] as Record<string, (payload: unknown, job: Job) => Promise<void>>;
    const w = new Worker(
      queue,
      async (job, token) => {
        const handler = byName[job.name];
        if (!handler) throw new Error(`no handler for ${queue}/${job.name}`);
        const payload = parsePayload(queue, job.name as never, job.data);
        try {
          await handler(payload, job);
        } catch (err) {
          if (!(err instanceof RetryLater)) throw err;
          opts.log.info({ queue, job_id: job.id, job_name: job.name, delay_ms: err.delayMs, reason: err.message }, 'job will run again later');
          await job.moveToDelayed(Date.now() + err.delayMs, token);
          throw new DelayedError();
        }
      },
      { connection: opts.connection, prefix: opts.prefix, concurrency: queue === 'maintenance' ? Math.max(2, opts.concurrency) : queue === 'webhooks' ? Math.max(16, opts.concurrency * 8) : opts.concurrency },
    );
    w.on('failed', (job, err) => opts.log.warn({ queue, job_id: job?.id, job_name: job?.name, err: err.message }, 'job failed'));
    w.on('error', (err) => opts.log.error({ queue, err: err.message }, 'worker error'));
    return w;
  });
  return {
    workers,
    async close() {
      await Promise.all(workers.map((w) => w.close()));
    },
  };
}
