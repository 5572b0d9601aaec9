import { Queue, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import { jobId, jobRegistry, QUEUE_NAMES, type JobName, type JobPayload, type QueueName } from './jobs.js';

// No automatic retry for backups and restores (rule 4); maintenance work is idempotent and retried.
const DEFAULTS: Record<QueueName, JobsOptions> = {
  backups: { attempts: 1, removeOnComplete: true, removeOnFail: { age: 24 * 3600, count: 1000 } },
  restores: { attempts: 1, removeOnComplete: true, removeOnFail: { age: 24 * 3600, count: 1000 } },
  maintenance: { attempts: 8, backoff: { type: 'exponential', delay: 2000 }, removeOnComplete: true, removeOnFail: { age: 7 * 24 * 3600 } },
  // One job per attempt: the delivery row in PostgreSQL schedules the next one (and the reconciler
  // re-enqueues what Redis lost), so BullMQ itself never retries.
  webhooks: { attempts: 1, removeOnComplete: true, removeOnFail: { age: 24 * 3600, count: 1000 } },
};

export interface Queues {
  readonly all: Record<QueueName, Queue>;
  add<Q extends QueueName, J extends JobName<Q>>(queue: Q, name: J, payload: JobPayload<Q, J>, rowId: string, opts?: JobsOptions): Promise<void>;
  close(): Promise<void>;
}

export function createQueues(connection: Redis, prefix: string): Queues {
  const all = Object.fromEntries(QUEUE_NAMES.map((q) => [q, new Queue(q, { connection, prefix, defaultJobOptions: DEFAULTS[q] })])) as Record<QueueName, Queue>;
  return {
    all,
    async add(queue, name, payload, rowId, opts) {
      (jobRegistry[queue] as Record<string, { parse(v: unknown): unknown }>)[name]!.parse(payload);
      await all[queue].add(name, payload, { jobId: jobId(name, rowId), ...opts });
    },
    async close() {
      await Promise.all(Object.values(all).map((q) => q.close()));
    },
  };
}
