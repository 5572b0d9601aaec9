import type { Runtime } from '../../runtime.js';
import { jobId, type JobName, type JobPayload, type QueueName } from '../../queue/jobs.js';
import { backupPrefix } from './backups.jobs.js';

// Safe to run on every scheduler instance at once: each transition is a conditional update
// and job ids are derived from rows, so concurrent runs only repeat a little work.
const BATCH = 500;

/**
 * PostgreSQL is the record; Redis only carries jobs. This re-creates any job Redis lost
 * (FLUSHALL, a restart without persistence, an enqueue that failed after commit), fails
 * backups whose worker stopped renewing its lease, and resumes interrupted deletions.
 */
export async function reconcile(rt: Runtime): Promise<{ requeued: number; lost: number }> {
  const { db, queues, now } = rt;
  let requeued = 0;
  let lost = 0;
  {
    const t = now();
    // Rows younger than this may still be getting their job enqueued right after commit. Requeueing
    // early is harmless anyway (job ids dedupe, runners skip rows that are no longer queued).
    const staleBefore = new Date(t.getTime() - Math.min(30_000, rt.config.reconcileIntervalMs));

    const expired = await db.backup.findMany({ where: { status: 'running', leaseExpiresAt: { lt: t } }, take: BATCH });
    for (const b of expired) {
      const r = await db.backup.updateMany({
        where: { id: b.id, status: 'running', leaseExpiresAt: { lt: t } },
        data: { status: 'failed', completedAt: t, errorComponent: null, errorMessage: 'worker lost: its lease expired while the backup was running', leaseExpiresAt: null },
      });
      if (r.count) {
        lost++;
        for (const s of [rt.store, ...(rt.secondaryStore ? [rt.secondaryStore] : [])]) await s.deletePrefix(backupPrefix(b)).catch(() => {});
        await queues.add('maintenance', 'prune', { tenant_id: b.tenantId, cluster_id: b.clusterId }, `${b.clusterId}-${b.id}`).catch(() => {});
      }
    }

    /** Enqueues the job of each row whose job is missing from Redis; returns how many. */
    const requeueMissing = async <Q extends QueueName, J extends JobName<Q>>(queue: Q, name: J, rows: { id: string; payload: JobPayload<Q, J> }[], before?: (id: string) => Promise<unknown>) => {
      for (const r of rows) {
        if (await queues.all[queue].getJob(jobId(name, r.id))) continue;
        await before?.(r.id);
        await queues.add(queue, name, r.payload, r.id);
        requeued++;
      }
    };
    const ids = { select: { id: true, tenantId: true }, take: BATCH } as const;
    const backupJob = (b: { id: string; tenantId: string }) => ({ id: b.id, payload: { tenant_id: b.tenantId, backup_id: b.id } });

    await requeueMissing('backups', 'run-backup', (await db.backup.findMany({ where: { status: 'queued', createdAt: { lt: staleBefore } }, ...ids })).map(backupJob));
    await requeueMissing('maintenance', 'delete-backup', (await db.backup.findMany({ where: { status: 'deleting' }, ...ids })).map(backupJob));

    const lostRestores = await db.restore.findMany({ where: { status: 'running', leaseExpiresAt: { lt: t } }, take: BATCH });
    for (const r of lostRestores) {
      const [done] = await db.$transaction([
        db.restore.updateMany({
          where: { id: r.id, status: 'running', leaseExpiresAt: { lt: t } },
          data: { status: 'failed', completedAt: t, errorMessage: 'worker lost: its lease expired while the restore was running', leaseExpiresAt: null },
        }),
        db.cluster.updateMany({ where: { id: r.clusterId, status: 'restoring' }, data: { status: 'active' } }),
      ]);
      if (done.count) lost++;
    }
    await requeueMissing(
      'restores',
      'run-restore',
      (await db.restore.findMany({ where: { status: 'queued', createdAt: { lt: staleBefore } }, ...ids })).map((r) => ({ id: r.id, payload: { tenant_id: r.tenantId, restore_id: r.id } })),
    );
    // Dual-region copies still pending, and verifications whose job is gone.
    const pending = await db.$queryRaw<{ id: string; tenantId: string }[]>`
      SELECT DISTINCT b.id::text, b.tenant_id::text AS "tenantId" FROM backups b JOIN backup_artifacts a ON a.backup_id = b.id
      WHERE b.status = 'completed' AND b.completed_at < ${staleBefore} AND a.locations @> '[{"store":"secondary","status":"pending"}]'::jsonb
      LIMIT ${BATCH}`;
    await requeueMissing('maintenance', 'replicate-backup', pending.map(backupJob));
    await requeueMissing(
      'maintenance',
      'verify-backup',
      (await db.backup.findMany({ where: { status: 'completed', verifyStatus: { in: ['queued', 'running'] } }, ...ids })).map(backupJob),
      (id) => db.backup.updateMany({ where: { id, verifyStatus: 'running' }, data: { verifyStatus: 'queued' } }),
    );
    await requeueMissing(
      'maintenance',
      'delete-cluster',
      (await db.cluster.findMany({ where: { status: 'deleting' }, ...ids })).map((c) => ({ id: c.id, payload: { tenant_id: c.tenantId, cluster_id: c.id } })),
    );
    await db.idempotencyRecord.deleteMany({ where: { createdAt: { lt: new Date(t.getTime() - 24 * 3600 * 1000) } } });
  }
  return { requeued, lost };
}

/**
 * The periodic retention sweep: a prune job for every cluster with more than one finished
 * backup. Job ids carry the sweep's time slot, so schedulers running the sweep at once enqueue
 * each cluster once.
 */
export async function sweepRetention(rt: Runtime): Promise<number> {
  const slot = Math.floor(rt.now().getTime() / rt.config.retentionSweepMs);
  let after = '00000000-0000-0000-0000-000000000000';
  let enqueued = 0;
  for (;;) {
    const rows = await rt.db.$queryRaw<{ cluster_id: string; tenant_id: string }[]>`
      SELECT cluster_id::text, min(tenant_id::text) AS tenant_id FROM backups
      WHERE status IN ('completed', 'failed') AND cluster_id > ${after}::uuid
      GROUP BY cluster_id HAVING count(*) > 1 ORDER BY cluster_id LIMIT 1000`;
    if (rows.length === 0) return enqueued;
    await rt.queues.all.maintenance.addBulk(
      rows.map((r) => ({ name: 'prune', data: { tenant_id: r.tenant_id, cluster_id: r.cluster_id }, opts: { jobId: jobId('prune', `${r.cluster_id}-sweep-${slot}`) } })),
    );
    enqueued += rows.length;
    after = rows[rows.length - 1]!.cluster_id;
  }
}
