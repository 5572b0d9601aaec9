import { randomUUID } from 'node:crypto';
import type { Db, Tx } from '../db/client.js';
import type { BackupStatus, Prisma, RestoreStatus } from '../generated/prisma/client.js';
import type { EventType } from '../modules/events/outbox.js';
import { announceBackup, announceRestore, recordBackupEvent, withArtifacts } from '../modules/events/resources.js';

/**
 * The one writer of the status of a cluster's jobs (backups, restores) and of the cluster's job
 * slot. Routes, handlers, the scheduler and the reconciler all come here; nothing else writes
 * `backups.status`, `restores.status`, `clusters.active_job_id` or a cluster's `restoring`.
 *
 * Invariants (SPEC rule 2), checked again by the database (migration 20261202000000_job_ledger):
 * - a backup or restore is queued or running only while it holds its cluster's slot
 *   (`clusters.active_job_id`), which is set and cleared under the cluster's row lock;
 * - at most one queued/running backup and one queued/running restore per cluster (unique
 *   partial indexes), and never one of each (a deferred trigger checks the slot at commit).
 * Lock order is always cluster row first, then the job row, so transitions never deadlock.
 *
 * Why a job failed (cancelled, worker lost, interrupted) is its error, not a status.
 *
 * Outbox (SPEC section 10): every transition that is an event writes it in its own transaction,
 * with the job as the API shows it after the change (see `eventOf`); a backup's row leaving
 * (`removeDeleted`) writes `backup.deleted`. Queueing and handing back are no events.
 */
export const backupTransitions = {
  queued: ['running', 'failed', 'deleting'],
  running: ['completed', 'failed', 'queued' /* handed back at shutdown */],
  completed: ['deleting'],
  failed: ['deleting'],
  deleting: [],
} as const satisfies Record<BackupStatus, readonly BackupStatus[]>;

export const restoreTransitions = {
  queued: ['running', 'failed'],
  running: ['completed', 'failed', 'queued' /* handed back at shutdown */],
  completed: [],
  failed: [],
} as const satisfies Record<RestoreStatus, readonly RestoreStatus[]>;

export type JobKind = 'backup' | 'restore';
const ACTIVE = new Set<string>(['queued', 'running']);

export class StaleTransition extends Error {
  constructor(kind: JobKind, id: string, from: readonly string[], to: string) {
    super(`${kind} ${id} is no longer ${from.join(' or ')}; not moved to ${to}`);
  }
}

/** The event a job's arrival in a status is; none for queued and deleting. */
export const eventOf: Record<JobKind, Partial<Record<string, EventType>>> = {
  backup: { running: 'backup.started', completed: 'backup.completed', failed: 'backup.failed' },
  restore: { running: 'restore.started', completed: 'restore.completed', failed: 'restore.failed' },
};

/** Records the event of `kind` `id` having moved to `to` (if that is an event), inside the move's transaction. */
async function announce(tx: Tx, kind: JobKind, id: string, to: string): Promise<void> {
  const type = eventOf[kind][to];
  if (!type) return;
  if (kind === 'backup') await announceBackup(tx, type, id);
  else await announceRestore(tx, type, id);
}

function allowed(kind: JobKind, from: string, to: string): boolean {
  const table = (kind === 'backup' ? backupTransitions : restoreTransitions) as Record<string, readonly string[]>;
  return table[from]?.includes(to) ?? false;
}

export interface JobError {
  component: string | null;
  message: string;
}

/** Why a manual backup could not be queued; `ok` carries the new row's id. */
export type ManualVerdict =
  | { verdict: 'ok'; id: string; components: { name: string; status: string }[]; live: boolean }
  | { verdict: 'not_found' }
  | { verdict: 'not_active'; status: string }
  | { verdict: 'manual_disabled' }
  | { verdict: 'rate_limited'; lastManualAt: Date }
  | { verdict: 'busy' }
  /** live: false asked of a cluster with no pre_backup hook: there is nothing to pause. */
  | { verdict: 'nothing_to_pause' }
  | { verdict: 'stale_policy'; rate: string | null; timezone: string };

export interface ManualRequest {
  /** The new backup's id. */
  id: string;
  tenantId: string;
  clusterId: string;
  now: Date;
  /** The policy the caller computed `since` from; the statement refuses if it has changed. */
  policy: { rate: string | null; timezone: string };
  /** A manual backup created after this instant still counts for the rate limit. */
  since: Date | null;
  /** Idempotency-Key: the answer to store with the backup (its components are filled in here). */
  idempotency: { key: string; hash: string; body: unknown; location: string } | null;
  /** live asked for; null: consistent (false) when the cluster has a pre_backup hook, else live (SPEC section 11). */
  live?: boolean | null;
}

interface ManualRow {
  verdict: string;
  status: string | null;
  rate: string | null;
  timezone: string | null;
  last_manual_at: Date | null;
  components: { name: string; status: string }[] | null;
  live: boolean | null;
}

/**
 * The whole decision for a manual backup, one statement: lock the cluster, judge the locked row's
 * newest version (state, policy, rate limit, slot), insert, take the slot, store the
 * Idempotency-Key answer. Exported so bench/api.ts can run the very same SQL as its baseline.
 */
export const QUEUE_MANUAL_BACKUP_SQL = `
  WITH c AS (
    SELECT c.id, c.tenant_id, c.status::text AS status, c.active_job_id, c.last_manual_at, c.components,
           COALESCE($12::boolean, NOT (c.hooks ? 'pre_backup')) AS live, c.hooks ? 'pre_backup' AS pausable,
           p.manual_count, p.manual_rate_limit, p.timezone
    FROM clusters c JOIN policies p ON p.id = c.policy_id
    WHERE c.id = $1::uuid AND c.tenant_id = $2::uuid
    FOR UPDATE OF c
  ), d AS (
    SELECT c.*, CASE
      WHEN c.status <> 'active' THEN 'not_active'
      WHEN c.manual_count = 0 THEN 'manual_disabled'
      WHEN NOT c.live AND NOT c.pausable THEN 'nothing_to_pause'
      WHEN c.manual_rate_limit IS DISTINCT FROM $3::text OR c.timezone <> $4::text THEN 'stale_policy'
      WHEN c.manual_rate_limit IS NOT NULL AND c.last_manual_at > $5::timestamptz THEN 'rate_limited'
      WHEN c.active_job_id IS NOT NULL THEN 'busy'
      ELSE 'ok' END AS verdict
    FROM c
  ), ins AS (
    INSERT INTO backups (id, tenant_id, cluster_id, trigger, status, created_at, live, components)
    SELECT $6::uuid, d.tenant_id, d.id, 'manual', 'queued', $7::timestamptz, d.live,
           COALESCE((SELECT jsonb_agg(jsonb_build_object('name', e->>'name', 'status', 'queued')) FROM jsonb_array_elements(d.components) e), '[]'::jsonb)
    FROM d WHERE d.verdict = 'ok'
    RETURNING cluster_id, components, live
  ), slot AS (
    UPDATE clusters SET active_job_id = $6::uuid, active_job_kind = 'backup', last_manual_at = $7::timestamptz
    WHERE id = (SELECT cluster_id FROM ins)
  ), idem AS (
    INSERT INTO idempotency_records (tenant_id, key, request_hash, response_status, response_body, location, created_at)
    SELECT $2::uuid, $8::text, $9::text, 202, jsonb_set(jsonb_set($10::jsonb, '{components}', ins.components), '{live}', to_jsonb(ins.live)), $11::text, $7::timestamptz
    FROM ins WHERE $8::text IS NOT NULL
  )
  SELECT d.verdict, d.status, d.manual_rate_limit AS rate, d.timezone, d.last_manual_at, (SELECT components FROM ins) AS components, (SELECT live FROM ins) AS live FROM d`;

export function queueManualParams(req: ManualRequest): unknown[] {
  const idem = req.idempotency;
  return [
    req.clusterId,
    req.tenantId,
    req.policy.rate,
    req.policy.timezone,
    req.since,
    req.id,
    req.now,
    idem?.key ?? null,
    idem?.hash ?? null,
    JSON.stringify(idem?.body ?? {}),
    idem?.location ?? null,
    req.live ?? null,
  ];
}

export function createLedger(db: Db) {
  /** Row lock on the cluster of a job (lock order: cluster, then job). Returns the cluster id. */
  async function lockClusterOf(tx: Tx, kind: JobKind, id: string): Promise<string | null> {
    const rows =
      kind === 'backup'
        ? await tx.$queryRaw<{ id: string }[]>`SELECT c.id::text FROM clusters c WHERE c.id = (SELECT cluster_id FROM backups WHERE id = ${id}::uuid) FOR UPDATE OF c`
        : await tx.$queryRaw<{ id: string }[]>`SELECT c.id::text FROM clusters c WHERE c.id = (SELECT cluster_id FROM restores WHERE id = ${id}::uuid) FOR UPDATE OF c`;
    return rows[0]?.id ?? null;
  }

  /** Frees the slot a job held (and ends `restoring` for a restore); marks retention to be evaluated again. */
  async function releaseSlot(tx: Tx | Db, kind: JobKind, clusterId: string, id: string) {
    await tx.$executeRaw`
      UPDATE clusters SET active_job_id = NULL, active_job_kind = NULL, retention_dirty = true,
             status = CASE WHEN ${kind} = 'restore' AND status = 'restoring' THEN 'active'::"ClusterStatus" ELSE status END
      WHERE id = ${clusterId}::uuid AND active_job_id = ${id}::uuid`;
  }

  /** Recomputes the rate-limit anchor after manual backups left it (deleting frees the slot at once). */
  async function refreshLastManual(tx: Tx, clusterId: string) {
    await tx.$executeRaw`
      UPDATE clusters SET last_manual_at = (SELECT max(created_at) FROM backups
        WHERE cluster_id = ${clusterId}::uuid AND trigger = 'manual' AND status <> 'deleting')
      WHERE id = ${clusterId}::uuid`;
  }

  /**
   * Moves one job `from` -> `to` with `data`, inside `tx` whose caller already holds the cluster's
   * lock (see `transition`). Returns false when the job was no longer in `from` (someone else won).
   */
  async function move(
    tx: Tx,
    kind: JobKind,
    clusterId: string,
    id: string,
    from: readonly string[],
    to: string,
    data: Record<string, unknown> = {},
    where: Record<string, unknown> = {},
  ): Promise<boolean> {
    for (const f of from) if (!allowed(kind, f, to)) throw new Error(`${kind} transition ${f} -> ${to} is not allowed`);
    const filter = { id, clusterId, status: { in: [...from] }, ...where };
    const r =
      kind === 'backup'
        ? await tx.backup.updateMany({ where: filter as Prisma.BackupWhereInput, data: { ...data, status: to } as Prisma.BackupUpdateManyMutationInput })
        : await tx.restore.updateMany({ where: filter as Prisma.RestoreWhereInput, data: { ...data, status: to } as Prisma.RestoreUpdateManyMutationInput });
    if (r.count === 0) return false;
    if (!ACTIVE.has(to)) {
      await releaseSlot(tx, kind, clusterId, id);
      // The backup a restore read is no longer held: its cluster's retention may drop it now.
      if (kind === 'restore') await tx.$executeRaw`UPDATE clusters SET retention_dirty = true WHERE id = (SELECT source_cluster_id FROM restores WHERE id = ${id}::uuid) AND NOT retention_dirty`;
    }
    return true;
  }

  /**
   * A transition in a transaction of its own: lock the cluster, move the job, free the slot when
   * the job leaves queued/running. `inside` runs in the same transaction after a successful move
   * (e.g. recording a backup's artifacts with `completed`); then the event of the move is
   * recorded, so it shows what `inside` wrote. Anything failing rolls back move and event alike.
   */
  async function transition(
    kind: JobKind,
    id: string,
    from: readonly string[],
    to: string,
    data: Record<string, unknown> = {},
    opts: { where?: Record<string, unknown>; inside?: (tx: Tx, clusterId: string) => Promise<void> } = {},
  ): Promise<boolean> {
    return db.$transaction(async (tx) => {
      const clusterId = await lockClusterOf(tx, kind, id);
      if (!clusterId) return false;
      const moved = await move(tx, kind, clusterId, id, from, to, data, opts.where);
      if (!moved) return false;
      if (opts.inside) await opts.inside(tx, clusterId);
      await announce(tx, kind, id, to);
      return true;
    });
  }

  const lease = (workerId: string, now: Date, leaseMs: number) => ({ workerId, leaseExpiresAt: new Date(now.getTime() + leaseMs) });

  return {
    transition,

    /**
     * Queues a manual backup in one statement: lock the cluster, decide (state, policy, rate
     * limit, slot) on the locked row's newest version, insert, take the slot. A concurrent
     * transaction that queued a job first has updated the row, so the lock re-reads it and sees it.
     */
    async queueManualBackup(req: ManualRequest): Promise<ManualVerdict> {
      const { id } = req;
      // The API's hottest write: straight to the driver (same pool as the client).
      const { rows: [row] } = await db.$pool.query<ManualRow>(QUEUE_MANUAL_BACKUP_SQL, queueManualParams(req));
      if (!row) return { verdict: 'not_found' };
      switch (row.verdict) {
        case 'ok':
          return { verdict: 'ok', id, components: row.components ?? [], live: row.live ?? true };
        case 'not_active':
          return { verdict: 'not_active', status: row.status ?? '' };
        case 'rate_limited':
          return { verdict: 'rate_limited', lastManualAt: row.last_manual_at! };
        case 'stale_policy':
          return { verdict: 'stale_policy', rate: row.rate, timezone: row.timezone ?? 'UTC' };
        default:
          return { verdict: row.verdict as 'busy' | 'manual_disabled' | 'nothing_to_pause' };
      }
    },

    /**
     * Applies a scheduler claim in one statement, for clusters the caller has locked in `tx`:
     * each free one gets a queued scheduled backup that takes its slot; every one gets its next
     * slot time, and a busy one records the skip. Returns the new backups.
     */
    async queueScheduledBackups(
      tx: Tx,
      claimed: { clusterId: string; next: string; busy: boolean }[],
      now: Date,
    ): Promise<{ id: string; tenantId: string; clusterId: string }[]> {
      if (claimed.length === 0) return [];
      const ids = claimed.map((c) => (c.busy ? null : randomUUID()));
      const rows = await tx.$queryRaw<{ id: string; tenant_id: string; cluster_id: string }[]>`
        WITH v AS (
          SELECT * FROM unnest(${claimed.map((c) => c.clusterId)}::uuid[], ${ids}::uuid[], ${claimed.map((c) => c.next)}::text[], ${claimed.map((c) => c.busy)}::boolean[])
            AS v(cluster_id, backup_id, next, busy)
        ), ins AS (
          INSERT INTO backups (id, tenant_id, cluster_id, trigger, status, created_at, live, components)
          SELECT v.backup_id, c.tenant_id, c.id, 'scheduled', 'queued', ${now},
                 -- live unless the policy says scheduled_live: false (and the cluster has something to pause)
                 COALESCE((SELECT p.scheduled_live FROM policies p WHERE p.id = c.policy_id), true) OR NOT (c.hooks ? 'pre_backup'),
                 COALESCE((SELECT jsonb_agg(jsonb_build_object('name', e->>'name', 'status', 'queued')) FROM jsonb_array_elements(c.components) e), '[]'::jsonb)
          FROM v JOIN clusters c ON c.id = v.cluster_id AND c.active_job_id IS NULL AND c.status = 'active'
          WHERE v.backup_id IS NOT NULL
          RETURNING id, tenant_id, cluster_id
        ), upd AS (
          UPDATE clusters c
          SET next_backup_at = NULLIF(v.next, '')::timestamptz,
              last_skipped_at = CASE WHEN ins.id IS NULL THEN ${now} ELSE c.last_skipped_at END,
              active_job_id = COALESCE(ins.id, c.active_job_id),
              active_job_kind = CASE WHEN ins.id IS NULL THEN c.active_job_kind ELSE 'backup' END
          FROM v LEFT JOIN ins ON ins.cluster_id = v.cluster_id
          WHERE c.id = v.cluster_id
        )
        SELECT id::text, tenant_id::text, cluster_id::text FROM ins`;
      return rows.map((r) => ({ id: r.id, tenantId: r.tenant_id, clusterId: r.cluster_id }));
    },

    /**
     * Queues a restore into `targetId`, whose row the caller has locked in `tx` and found active
     * and free: the restore takes the slot and the cluster turns `restoring`.
     */
    async queueRestore(tx: Tx, data: { id: string; tenantId: string; backupId: string; sourceClusterId: string; clusterId: string; components: string[]; now: Date }) {
      const row = await tx.restore.create({
        data: { id: data.id, tenantId: data.tenantId, backupId: data.backupId, sourceClusterId: data.sourceClusterId, clusterId: data.clusterId, components: data.components, status: 'queued', createdAt: data.now },
      });
      const r = await tx.cluster.updateMany({
        where: { id: data.clusterId, tenantId: data.tenantId, activeJobId: null, status: 'active' },
        data: { activeJobId: data.id, activeJobKind: 'restore', status: 'restoring' },
      });
      if (r.count === 0) throw new StaleTransition('restore', data.id, ['free target'], 'queued');
      return row;
    },

    /** queued -> running for this worker, with a fresh lease. False: deleted, done, or taken by another worker. */
    async start(kind: JobKind, tenantId: string, id: string, o: { workerId: string; now: Date; leaseMs: number }): Promise<boolean> {
      const data = { startedAt: o.now, ...lease(o.workerId, o.now, o.leaseMs) };
      const where = { id, tenantId, status: 'queued' as const };
      // Starting neither takes nor frees the slot, so it needs no cluster lock; its event needs a transaction.
      return db.$transaction(async (tx) => {
        const r = kind === 'backup' ? await tx.backup.updateMany({ where, data: { ...data, status: 'running' } }) : await tx.restore.updateMany({ where, data: { ...data, status: 'running' } });
        if (r.count === 0) return false;
        await announce(tx, kind, id, 'running');
        return true;
      });
    },

    /** Renews the lease of a job this worker runs. */
    async renew(kind: JobKind, id: string, o: { workerId: string; now: Date; leaseMs: number }) {
      const where = { id, status: 'running' as const, workerId: o.workerId };
      const data = { leaseExpiresAt: new Date(o.now.getTime() + o.leaseMs) };
      return kind === 'backup' ? db.backup.updateMany({ where, data }) : db.restore.updateMany({ where, data });
    },

    /** running -> completed, with `inside` recording what the job produced in the same transaction. */
    async complete(kind: JobKind, id: string, data: Record<string, unknown>, inside?: (tx: Tx, clusterId: string) => Promise<void>) {
      return transition(kind, id, ['running'], 'completed', { ...data, leaseExpiresAt: null }, inside ? { inside } : {});
    },

    /** running -> failed (or queued -> failed) with the cause kept for root-causing. */
    async fail(kind: JobKind, id: string, error: JobError, o: { now: Date; from?: readonly ('queued' | 'running')[]; data?: Record<string, unknown> }) {
      return transition(kind, id, o.from ?? ['running'], 'failed', {
        ...o.data,
        completedAt: o.now,
        errorComponent: error.component,
        errorMessage: error.message,
        leaseExpiresAt: null,
      });
    },

    /**
     * running -> queued: work interrupted by a shutdown goes back, keeps its slot, loses its
     * worker and lease; another worker starts it afresh.
     */
    async handBack(kind: JobKind, id: string, workerId: string) {
      return transition(kind, id, ['running'], 'queued', { workerId: null, leaseExpiresAt: null, startedAt: null, ...(kind === 'backup' && { bytesDone: 0n }) }, { where: { workerId } });
    },

    /** Running jobs whose lease expired before `now`: each becomes failed ("worker lost"). Returns them. */
    async reapLost(kind: JobKind, now: Date, limit: number) {
      const rows =
        kind === 'backup'
          ? await db.backup.findMany({ where: { status: 'running', leaseExpiresAt: { lt: now } }, select: { id: true, tenantId: true, clusterId: true }, take: limit })
          : await db.restore.findMany({ where: { status: 'running', leaseExpiresAt: { lt: now } }, select: { id: true, tenantId: true, clusterId: true }, take: limit });
      const lost = [];
      for (const r of rows) {
        const moved = await transition(
          kind,
          r.id,
          ['running'],
          'failed',
          { completedAt: now, errorComponent: null, errorMessage: `worker lost: its lease expired while the ${kind} was running`, leaseExpiresAt: null },
          { where: { leaseExpiresAt: { lt: now } } },
        );
        if (moved) lost.push(r);
      }
      return lost;
    },

    /** Queued jobs of a cluster being deleted fail as cancelled; returns how many. */
    async cancelQueued(kind: JobKind, where: { clusterId?: string; sourceClusterId?: string }, now: Date, message: string) {
      const rows =
        kind === 'backup'
          ? await db.backup.findMany({ where: { ...where, status: 'queued' }, select: { id: true } })
          : await db.restore.findMany({ where: { ...where, status: 'queued' }, select: { id: true } });
      let n = 0;
      for (const r of rows)
        if (await transition(kind, r.id, ['queued'], 'failed', { completedAt: now, errorComponent: null, errorMessage: message, leaseExpiresAt: null })) n++;
      return n;
    },

    /**
     * Moves a finished (or still queued) backup to `deleting` inside `tx`, whose caller holds the
     * cluster's lock. A deleted manual backup frees the rate-limit slot at once (rule 3).
     */
    async markDeleting(tx: Tx, clusterId: string, id: string): Promise<boolean> {
      const moved = await move(tx, 'backup', clusterId, id, ['queued', 'completed', 'failed'], 'deleting');
      if (moved) await refreshLastManual(tx, clusterId);
      return moved;
    },

    /**
     * The end of `deleting`: the row goes once its data is gone, with `backup.deleted` (the backup
     * as it was last shown: `deleting`) in the same transaction. Returns how many rows went (0 or 1).
     */
    async removeDeleted(id: string, now: Date = new Date()): Promise<{ count: number }> {
      return db.$transaction(async (tx) => {
        const b = await tx.backup.findFirst({ where: { id, status: 'deleting' }, include: withArtifacts });
        if (!b) return { count: 0 };
        // Conditional: of two deleters racing, only the one whose DELETE removed the row records the event.
        const r = await tx.backup.deleteMany({ where: { id, status: 'deleting' } });
        if (r.count > 0) await recordBackupEvent(tx, 'backup.deleted', b, now);
        return { count: r.count };
      });
    },

    /**
     * Mends slots that point at no active job (a crash between statements of an older version, a
     * job row cascaded away with its source cluster) and `restoring` clusters with no restore.
     * Returns how many were freed.
     */
    async repairSlots(limit: number): Promise<number> {
      // One statement. A slot is cleared only if it still names the job seen finished (or still
      // names none, for `restoring`): the row lock re-reads the slot, so one a concurrent request
      // took meanwhile is left alone, and a finished job never becomes active again.
      return db.$executeRaw`
        UPDATE clusters c SET active_job_id = NULL, active_job_kind = NULL, retention_dirty = true,
               status = CASE WHEN c.status = 'restoring' THEN 'active'::"ClusterStatus" ELSE c.status END
        FROM (
          SELECT x.id, x.active_job_id AS seen FROM clusters x
          WHERE (x.active_job_id IS NOT NULL
                 AND NOT EXISTS (SELECT 1 FROM backups b WHERE b.id = x.active_job_id AND b.status IN ('queued', 'running'))
                 AND NOT EXISTS (SELECT 1 FROM restores r WHERE r.id = x.active_job_id AND r.status IN ('queued', 'running')))
             OR (x.status = 'restoring' AND x.active_job_id IS NULL)
          LIMIT ${limit}
        ) stale
        WHERE c.id = stale.id AND c.active_job_id IS NOT DISTINCT FROM stale.seen`;
    },
  };
}
export type Ledger = ReturnType<typeof createLedger>;
