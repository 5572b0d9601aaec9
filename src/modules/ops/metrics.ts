import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Db } from '../../db/client.js';
import type { Queues } from '../../queue/queues.js';

/** How long the counts of finished backups (the bulk of the table) are reused between scrapes. */
export const FINISHED_COUNTS_TTL_MS = 60_000;

type Count = { status: string; trigger: string; n: number };

/**
 * Backups by status and trigger, read from the source of truth so every API instance reports
 * the same numbers. A scrape counts only the small active set (queued, running, deleting: each
 * has a partial index) and reuses the finished counts, which need a pass over the whole table,
 * for FINISHED_COUNTS_TTL_MS. Concurrent scrapes share one query.
 */
export function createBackupCounts(db: Db, opts: { ttlMs?: number; now?: () => number } = {}) {
  const ttlMs = opts.ttlMs ?? FINISHED_COUNTS_TTL_MS;
  const now = opts.now ?? Date.now;
  let finished: { at: number; rows: Promise<Count[]> } | null = null;
  // Literal statuses (not parameters), one arm per partial index predicate, so the planner can
  // answer each arm from its index (backups_one_active_per_cluster, backups_deleting_idx).
  const active = () =>
    db.$queryRaw<Count[]>`SELECT status::text AS status, "trigger"::text AS "trigger", count(*)::int AS n
      FROM backups WHERE status IN ('queued', 'running') GROUP BY 1, 2
      UNION ALL
      SELECT status::text, "trigger"::text, count(*)::int FROM backups WHERE status = 'deleting' GROUP BY 1, 2`;
  const done = () =>
    db.$queryRaw<Count[]>`SELECT status::text AS status, "trigger"::text AS "trigger", count(*)::int AS n
      FROM backups WHERE status IN ('completed', 'failed') GROUP BY 1, 2`;
  return {
    async read(): Promise<Count[]> {
      if (!finished || now() - finished.at >= ttlMs) {
        const rows = done();
        finished = { at: now(), rows };
        rows.catch(() => (finished = null)); // a failed read is retried at the next scrape
      }
      const [a, f] = await Promise.all([active(), finished.rows]);
      return [...a, ...f];
    },
  };
}

/** How long the per-tenant stored bytes (a pass over the live packs) are reused between scrapes. */
export const STORED_BYTES_TTL_MS = 60_000;

type Stored = { tenant_id: string; bytes: number };

/**
 * Bytes of each tenant's live packs (what its repository holds in the primary store), re-read
 * at most once per ttl; concurrent scrapes share one query, and a failed read is retried at the
 * next scrape.
 */
export function createStoredBytes(db: Db, opts: { ttlMs?: number; now?: () => number } = {}) {
  const ttlMs = opts.ttlMs ?? STORED_BYTES_TTL_MS;
  const now = opts.now ?? Date.now;
  let cached: { at: number; rows: Promise<Stored[]> } | null = null;
  const query = () =>
    db.$queryRaw<Stored[]>`SELECT tenant_id::text AS tenant_id, sum(bytes)::float8 AS bytes FROM packs WHERE status = 'live' GROUP BY tenant_id`;
  return {
    read(): Promise<Stored[]> {
      if (!cached || now() - cached.at >= ttlMs) {
        const rows = query();
        cached = { at: now(), rows };
        rows.catch(() => (cached = null));
      }
      return cached.rows;
    },
  };
}

type Outcome = { outcome: string; n: number };

/**
 * Webhook deliveries by outcome, read from PostgreSQL (every API instance reports the same
 * numbers, whichever worker made the attempts): delivered and failed deliveries, and retried
 * attempts (failed ones that another attempt followed or will follow). Re-read at most once per
 * ttl; concurrent scrapes share one query.
 */
export function createDeliveryCounts(db: Db, opts: { ttlMs?: number; now?: () => number } = {}) {
  const ttlMs = opts.ttlMs ?? FINISHED_COUNTS_TTL_MS;
  const now = opts.now ?? Date.now;
  let cached: { at: number; rows: Promise<Outcome[]> } | null = null;
  const query = () =>
    db.$queryRaw<Outcome[]>`
      SELECT status AS outcome, count(*)::int AS n FROM webhook_deliveries WHERE status IN ('delivered', 'failed') GROUP BY status
      UNION ALL
      SELECT 'retried', count(*)::int FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id
      WHERE a.outcome = 'failed' AND (d.status = 'pending' OR a.attempt < d.attempts)`;
  return {
    read(): Promise<Outcome[]> {
      if (!cached || now() - cached.at >= ttlMs) {
        const rows = query();
        cached = { at: now(), rows };
        rows.catch(() => (cached = null));
      }
      return cached.rows;
    },
  };
}

/** One registry per process. `token`: the bearer token /metrics requires (unset: not served). */
export function createMetrics(deps: { db: Db; queues: Queues; token?: string | undefined; finishedTtlMs?: number; storedTtlMs?: number }) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const httpDuration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request duration by route and status',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const counts = createBackupCounts(deps.db, deps.finishedTtlMs === undefined ? {} : { ttlMs: deps.finishedTtlMs });
  new Gauge({
    name: 'backups',
    help: 'Backups by status and trigger (the completed and failed counts are refreshed at most once a minute)',
    labelNames: ['status', 'trigger'] as const,
    registers: [registry],
    async collect() {
      const rows = await counts.read();
      this.reset();
      for (const r of rows) this.set({ status: r.status, trigger: r.trigger }, r.n);
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
  new Gauge({
    name: 'backup_replication_unfinished',
    help: 'Completed dual-region backups whose secondary copy is not (yet) made: pending, or degraded after a failed copy (retried with backoff)',
    labelNames: ['state'] as const,
    registers: [registry],
    async collect() {
      // A small set behind a partial index (backups_replication_due_idx).
      const rows = await deps.db.$queryRaw<{ state: string; n: number }[]>`
        SELECT replication_status AS state, count(*)::int AS n FROM backups
        WHERE replication_status IN ('pending', 'degraded') AND replication_next_at IS NOT NULL AND status = 'completed'
        GROUP BY replication_status`;
      this.reset();
      for (const state of ['pending', 'degraded']) this.set({ state }, rows.find((r) => r.state === state)?.n ?? 0);
    },
  });
  const stored = createStoredBytes(deps.db, deps.storedTtlMs === undefined ? {} : { ttlMs: deps.storedTtlMs });
  new Gauge({
    name: 'backup_repository_stored_bytes',
    help: "Bytes of each tenant's live packs in the primary store, after deduplication and compression (refreshed at most once a minute)",
    labelNames: ['tenant_id'] as const,
    registers: [registry],
    async collect() {
      const rows = await stored.read();
      this.reset();
      for (const r of rows) this.set({ tenant_id: r.tenant_id }, r.bytes);
    },
  });
  const deliveries = createDeliveryCounts(deps.db, deps.finishedTtlMs === undefined ? {} : { ttlMs: deps.finishedTtlMs });
  new Counter({
    name: 'webhook_deliveries_total',
    help: 'Webhook deliveries by outcome: delivered, failed (given up after the retry window, or the webhook was disabled), retried (failed attempts followed by another); read from PostgreSQL, refreshed at most once a minute',
    labelNames: ['outcome'] as const,
    registers: [registry],
    async collect() {
      const rows = await deliveries.read();
      this.reset();
      for (const outcome of ['delivered', 'failed', 'retried']) this.inc({ outcome }, rows.find((r) => r.outcome === outcome)?.n ?? 0);
    },
  });
  new Gauge({
    name: 'webhook_oldest_undelivered_event_age_seconds',
    help: 'Age of the oldest event not yet delivered: not dispatched to its webhooks, or with a delivery still pending (0 when none)',
    registers: [registry],
    async collect() {
      // Both sets are small and indexed (events_undispatched_idx, webhook_deliveries_pending_idx).
      const [row] = await deps.db.$queryRaw<{ age: number | null }[]>`
        SELECT extract(epoch FROM now() - least(
          (SELECT occurred_at FROM events WHERE dispatched_at IS NULL ORDER BY seq LIMIT 1),
          (SELECT min(e.occurred_at) FROM webhook_deliveries d JOIN events e ON e.id = d.event_id WHERE d.status = 'pending')
        ))::float8 AS age`;
      this.set(Math.max(0, row?.age ?? 0));
    },
  });
  // Continuous archiving (SPEC section 13): one small row per stream, read at each scrape.
  const streams = () =>
    deps.db.$queryRaw<{ id: string; tenant_id: string; component: string; state: string; lag_bytes: number | null; behind_s: number | null }[]>`
      SELECT id::text, tenant_id::text, component, state, lag_bytes::float8 AS lag_bytes,
        extract(epoch FROM now() - latest_restorable_time)::float8 AS behind_s
      FROM wal_streams WHERE status = 'active'`;
  new Gauge({
    name: 'archiver_lag_bytes',
    help: "Bytes of a continuous component's WAL its server wrote that are not stored yet, per stream (as last reported by its archiver)",
    labelNames: ['stream_id', 'tenant_id', 'component'] as const,
    registers: [registry],
    async collect() {
      const rows = await streams();
      this.reset();
      for (const r of rows) if (r.lag_bytes !== null) this.set({ stream_id: r.id, tenant_id: r.tenant_id, component: r.component }, r.lag_bytes);
    },
  });
  new Gauge({
    name: 'archiver_seconds_behind',
    help: "Seconds between now and a continuous component's latest restorable time, per stream (absent until some WAL is stored)",
    labelNames: ['stream_id', 'tenant_id', 'component'] as const,
    registers: [registry],
    async collect() {
      const rows = await streams();
      this.reset();
      for (const r of rows) if (r.behind_s !== null) this.set({ stream_id: r.id, tenant_id: r.tenant_id, component: r.component }, Math.max(0, r.behind_s));
    },
  });
  new Gauge({
    name: 'archiver_streams',
    help: 'Continuous components being archived, by state: streaming, behind, stopped',
    labelNames: ['state'] as const,
    registers: [registry],
    async collect() {
      const rows = await deps.db.$queryRaw<{ state: string; n: number }[]>`SELECT state, count(*)::int AS n FROM wal_streams WHERE status = 'active' GROUP BY state`;
      this.reset();
      for (const state of ['streaming', 'behind', 'stopped']) this.set({ state }, rows.find((r) => r.state === state)?.n ?? 0);
    },
  });
  const schedulerSkipped = new Counter({
    name: 'scheduler_slots_skipped_total',
    help: 'Scheduled slots skipped because the cluster was busy',
    registers: [registry],
  });
  return { registry, httpDuration, schedulerSkipped, token: deps.token };
}
export type Metrics = ReturnType<typeof createMetrics>;
