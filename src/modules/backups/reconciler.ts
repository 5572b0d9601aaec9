import type { Runtime } from '../../runtime.js';
import { jobId } from '../../queue/jobs.js';
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

    const queued = await db.backup.findMany({ where: { status: 'queued', createdAt: { lt: staleBefore } }, select: { id: true, tenantId: true }, take: BATCH });
    for (const b of queued) {
      if (!(await queues.all.backups.getJob(jobId('run-backup', b.id)))) {
        await queues.add('backups', 'run-backup', { tenant_id: b.tenantId, backup_id: b.id }, b.id);
        requeued++;
      }
    }
    const deleting = await db.backup.findMany({ where: { status: 'deleting' }, select: { id: true, tenantId: true }, take: BATCH });
    for (const b of deleting) {
      if (!(await queues.all.maintenance.getJob(jobId('delete-backup', b.id)))) {
        await queues.add('maintenance', 'delete-backup', { tenant_id: b.tenantId, backup_id: b.id }, b.id);
        requeued++;
      }
    }
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
    const queuedRestores = await db.restore.findMany({ where: { status: 'queued', createdAt: { lt: staleBefore } }, select: { id: true, tenantId: true }, take: BATCH });
    for (const r of queuedRestores) {
      if (!(await queues.all.restores.getJob(jobId('run-restore', r.id)))) {
        await queues.add('restores', 'run-restore', { tenant_id: r.tenantId, restore_id: r.id }, r.id);
        requeued++;
      }
    }
    // Dual-region copies still pending, and verifications whose job is gone.
    const pending = await db.$queryRaw<{ id: string; tenant_id: string }[]>`
      SELECT DISTINCT b.id::text, b.tenant_id::text FROM backups b JOIN backup_artifacts a ON a.backup_id = b.id
      WHERE b.status = 'completed' AND b.completed_at < ${staleBefore} AND a.locations @> '[{"store":"secondary","status":"pending"}]'::jsonb
      LIMIT ${BATCH}`;
    for (const b of pending) {
      if (!(await queues.all.maintenance.getJob(jobId('replicate-backup', b.id)))) {
        await queues.add('maintenance', 'replicate-backup', { tenant_id: b.tenant_id, backup_id: b.id }, b.id);
        requeued++;
      }
    }
    const verifying = await db.backup.findMany({ where: { status: 'completed', verifyStatus: { in: ['queued', 'running'] } }, select: { id: true, tenantId: true }, take: BATCH });
    for (const b of verifying) {
      if (!(await queues.all.maintenance.getJob(jobId('verify-backup', b.id)))) {
        await db.backup.updateMany({ where: { id: b.id, verifyStatus: 'running' }, data: { verifyStatus: 'queued' } });
        await queues.add('maintenance', 'verify-backup', { tenant_id: b.tenantId, backup_id: b.id }, b.id);
        requeued++;
      }
    }
    const clusters = await db.cluster.findMany({ where: { status: 'deleting' }, select: { id: true, tenantId: true }, take: BATCH });
    for (const c of clusters) {
      if (!(await queues.all.maintenance.getJob(jobId('delete-cluster', c.id)))) {
        await queues.add('maintenance', 'delete-cluster', { tenant_id: c.tenantId, cluster_id: c.id }, c.id);
        requeued++;
      }
    }
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
