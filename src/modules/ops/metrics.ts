import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Db } from '../../db/client.js';
import type { Queues } from '../../queue/queues.js';

/**
 * One registry per process. Backup counts and queue depths are read at scrape time from the
 * source of truth, so every API instance reports the same numbers whichever worker did the work.
 */
export function createMetrics(deps: { db: Db; queues: Queues }) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const httpDuration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request duration by route and status',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  new Gauge({
    name: 'backups',
    help: 'Backups by status and trigger',
    labelNames: ['status', 'trigger'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      const rows = await deps.db.backup.groupBy({ by: ['status', 'trigger'], _count: { _all: true } });
      for (const r of rows) this.set({ status: r.status, trigger: r.trigger }, r._count._all);
    },
  });
  new Gauge({
    name: 'queue_jobs',
    help: 'Jobs in the BullMQ queues by state',
    labelNames: ['queue', 'state'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const [name, q] of Object.entries(deps.queues.all)) {
        const counts = await q.getJobCounts('waiting', 'active', 'delayed', 'failed', 'prioritized');
        for (const [state, n] of Object.entries(counts)) this.set({ queue: name, state }, n);
      }
    },
  });
  const schedulerSkipped = new Counter({
    name: 'scheduler_slots_skipped_total',
    help: 'Scheduled slots skipped because the cluster was busy',
    registers: [registry],
  });
  return { registry, httpDuration, schedulerSkipped };
}
export type Metrics = ReturnType<typeof createMetrics>;
