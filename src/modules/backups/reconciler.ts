import type { Runtime } from '../../runtime.js';
import { jobId, type JobName, type JobPayload, type QueueName } from '../../queue/jobs.js';
import { snapshotKey } from '../../repo/layout.js';
import { dispatchPending } from '../webhooks/dispatcher.js';
import { duePending, failDisabledPending } from '../webhooks/deliveries.repo.js';
import { createHookCaller } from '../hooks/hooks.js';
import { resumeOrphans } from '../hooks/pause.js';

// Safe to run on every scheduler instance at once: each transition is a conditional update
// and job ids are derived from rows, so concurrent runs only repeat a little work.
const BATCH = 500;

/** BullMQ states in which a job will still run: anything else (missing, failed, completed) is gone. */
const WILL_RUN = new Set(['waiting', 'active', 'delayed', 'prioritized', 'waiting-children']);

/**
 * PostgreSQL is the record (the ledger); BullMQ only runs jobs. This compares the two and mends
 * the ledger through its transitions: it re-creates any job BullMQ lost or gave up on (FLUSHALL,
 * a restart without persistence, an enqueue that failed after commit, a job that failed or
 * completed without moving its row), fails jobs whose worker stopped renewing its lease, frees
 * job slots no active job holds, resumes interrupted deletions and retries dual-region copies.
 */
export async function reconcile(rt: Runtime): Promise<{ requeued: number; lost: number; freed: number }> {
  const { db, queues, now, ledger } = rt;
  let requeued = 0;
  let lost = 0;
  const t = now();
  // Rows younger than this may still be getting their job enqueued right after commit. Requeueing
  // early is harmless anyway (job ids dedupe, runners skip rows that are no longer queued).
  const staleBefore = new Date(t.getTime() - Math.min(30_000, rt.config.reconcileIntervalMs));

  for (const b of await ledger.reapLost('backup', t, BATCH)) {
    lost++;
    // What it stored is garbage once its references go (GC's); a snapshot record, if it got that far, too.
    await db.backupChunk.deleteMany({ where: { backupId: b.id } }).catch(() => {});
    for (const s of [rt.store, ...(rt.secondaryStore ? [rt.secondaryStore] : [])]) await s.delete(snapshotKey(b.tenantId, b.id)).catch(() => {});
    await rt.repo.repositories.requestGc(b.tenantId, t).catch(() => {});
    await queues.add('maintenance', 'prune', { tenant_id: b.tenantId, cluster_id: b.clusterId }, `${b.clusterId}-${b.id}`).catch(() => {});
  }
  lost += (await ledger.reapLost('restore', t, BATCH)).length;
  // A job whose worker was lost in its pause still owes its post hook (hooks/pause.ts): claimed
  // here, called in the background (a hook may take its whole timeout; the pass goes on).
  await resumeOrphans({ db, hooks: createHookCaller({ urlGuard: rt.webhookUrls, box: rt.box, now }), now, log: rt.log }).catch((err: unknown) =>
    rt.log.warn({ err }, 'could not claim the post hooks of jobs lost in their pause'),
  );

  /** Enqueues the job of each row whose job will not run (missing, failed or completed in BullMQ); returns how many. */
  const requeueMissing = async <Q extends QueueName, J extends JobName<Q>>(queue: Q, name: J, rows: { id: string; payload: JobPayload<Q, J> }[], before?: (id: string) => Promise<unknown>) => {
    for (const r of rows) {
      const job = await queues.all[queue].getJob(jobId(name, r.id));
      if (job) {
        const state = await job.getState();
        if (WILL_RUN.has(state)) continue;
        // A finished job keeps its id in BullMQ: remove it so the same id can run again.
        await job.remove().catch(() => {});
      }
      await before?.(r.id);
      await queues.add(queue, name, r.payload, r.id);
      requeued++;
    }
  };
  const ids = { select: { id: true, tenantId: true }, take: BATCH } as const;
  const backupJob = (b: { id: string; tenantId: string }) => ({ id: b.id, payload: { tenant_id: b.tenantId, backup_id: b.id } });

  await requeueMissing('backups', 'run-backup', (await db.backup.findMany({ where: { status: 'queued', createdAt: { lt: staleBefore } }, ...ids })).map(backupJob));
  await requeueMissing('maintenance', 'delete-backup', (await db.backup.findMany({ where: { status: 'deleting' }, ...ids })).map(backupJob));
  await requeueMissing(
    'restores',
    'run-restore',
    (await db.restore.findMany({ where: { status: 'queued', createdAt: { lt: staleBefore } }, ...ids })).map((r) => ({ id: r.id, payload: { tenant_id: r.tenantId, restore_id: r.id } })),
  );
  // Dual-region copies that are pending or degraded and due (backoff), and verifications whose job is gone.
  await requeueMissing(
    'maintenance',
    'replicate-backup',
    (await db.backup.findMany({ where: { status: 'completed', replicationStatus: { in: ['pending', 'degraded'] }, replicationNextAt: { lte: t } }, ...ids })).map(backupJob),
  );
  await requeueMissing(
    'maintenance',
    'verify-backup',
    (await db.backup.findMany({ where: { status: 'completed', verifyStatus: { in: ['queued', 'running'] } }, ...ids })).map(backupJob),
    (id) => db.backup.updateMany({ where: { id, verifyStatus: 'running' }, data: { verifyStatus: 'queued' } }),
  );
  await requeueMissing(
    'maintenance',
    'delete-cluster',
    // A literal status, so the partial clusters_busy_status_idx serves it (Prisma's enum cast would not).
    (await db.$queryRaw<{ id: string; tenantId: string }[]>`SELECT id::text, tenant_id::text AS "tenantId" FROM clusters WHERE status = 'deleting' LIMIT ${BATCH}`).map((c) => ({
      id: c.id,
      payload: { tenant_id: c.tenantId, cluster_id: c.id },
    })),
  );
  // Repositories due for GC: asked for (a deletion, a failed backup), doomed packs past the
  // grace period waiting to go, or none for GC_SWEEP_MS; and for the sampled check.
  const graceCutoff = new Date(t.getTime() - rt.config.gcGraceMs);
  const gcDue = await db.$queryRaw<{ tenant_id: string }[]>`
    SELECT r.tenant_id::text FROM repositories r
    WHERE r.gc_requested_at IS NOT NULL
       OR r.gc_ran_at IS NULL OR r.gc_ran_at < ${new Date(t.getTime() - rt.config.gcSweepMs)}
       OR EXISTS (SELECT 1 FROM packs p WHERE p.tenant_id = r.tenant_id AND p.status = 'doomed' AND p.doomed_at < ${graceCutoff})
    LIMIT ${BATCH}`;
  await requeueMissing('maintenance', 'gc', gcDue.map((r) => ({ id: r.tenant_id, payload: { tenant_id: r.tenant_id } })));
  const verifyDue = await db.repository.findMany({
    where: { OR: [{ verifiedAt: null }, { verifiedAt: { lt: new Date(t.getTime() - rt.config.verifySweepMs) } }] },
    select: { tenantId: true },
    take: BATCH,
  });
  if (rt.config.verifySamplePercent > 0) await requeueMissing('maintenance', 'verify-sample', verifyDue.map((r) => ({ id: r.tenantId, payload: { tenant_id: r.tenantId } })));
  // Webhooks: events the dispatchers have not fanned out (a worker killed between commit and
  // fan-out, none running) are dispatched; pending deliveries that are due (or whose attempt's
  // lease has passed: its worker died mid-attempt) and whose attempt's job will not run are
  // enqueued again (FLUSHALL, an enqueue lost after commit); deliveries of disabled webhooks end.
  await failDisabledPending(db);
  await dispatchPending({ db, queues, now, log: rt.log });
  await requeueMissing(
    'webhooks',
    'deliver',
    (await duePending(db, staleBefore, BATCH)).map((d) => ({ id: `${d.id}-${d.attempts + 1}`, payload: { tenant_id: d.tenantId, delivery_id: d.id } })),
  );
  const freed = await ledger.repairSlots(BATCH);
  await db.idempotencyRecord.deleteMany({ where: { createdAt: { lt: new Date(t.getTime() - 24 * 3600 * 1000) } } });
  return { requeued, lost, freed };
}
