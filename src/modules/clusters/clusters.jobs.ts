import type { Db } from '../../db/client.js';
import type { Ledger } from '../../jobs/ledger.js';
import { RetryLater } from '../../queue/worker.js';
import type { Queues } from '../../queue/queues.js';
import type { RepoService } from '../../repo/service.js';
import { snapshotKey } from '../../repo/layout.js';
import { recordBackupEvent, recordClusterDeleted, withArtifacts } from '../events/resources.js';

/** How long a deletion waits before looking again at running work it must outlive. */
export const DELETION_WAIT_MS = 5_000;

/**
 * Deletes a `deleting` cluster: its queued work, and queued restores reading its backups into
 * other clusters, are cancelled (their targets freed); running work is waited for (the job comes
 * back after a delay, never giving up); then its snapshot records go, then the rows (cascade), and
 * GC of the tenant's repository is asked for. The transaction that deletes the rows records
 * `backup.deleted` for each backup that goes with the cluster, then `cluster.deleted` (the cluster
 * as it was last shown: `deleting`).
 * Each step is idempotent, so a crash midway is resumed by running the job again.
 */
export function createClusterDeleter(deps: { db: Db; ledger: Ledger; repo: RepoService; queues?: Pick<Queues, 'add'>; now: () => Date }) {
  return async function deleteCluster(payload: { tenant_id: string; cluster_id: string }): Promise<void> {
    const { db, ledger } = deps;
    const c = await db.cluster.findFirst({ where: { id: payload.cluster_id, tenantId: payload.tenant_id } });
    if (!c || c.status !== 'deleting') return;
    const now = deps.now();
    const why = 'cancelled: the cluster is being deleted';
    await ledger.cancelQueued('backup', { clusterId: c.id }, now, why);
    await ledger.cancelQueued('restore', { clusterId: c.id }, now, why);
    await ledger.cancelQueued('restore', { sourceClusterId: c.id }, now, 'cancelled: the cluster of the backup is being deleted');
    const running =
      (await db.backup.count({ where: { clusterId: c.id, status: 'running' } })) +
      (await db.restore.count({ where: { OR: [{ clusterId: c.id }, { sourceClusterId: c.id }], status: 'running' } }));
    if (running > 0) throw new RetryLater(DELETION_WAIT_MS, `cluster ${c.id} still has ${running} running job(s)`);
    // Its snapshot records go, then the rows (their chunk references with them); the data its
    // backups alone relied on is then unreferenced, and GC takes it.
    const backups = await db.backup.findMany({ where: { clusterId: c.id }, select: { id: true } });
    for (const s of [deps.repo.primary, deps.repo.secondary]) if (s) for (const b of backups) await s.delete(snapshotKey(c.tenantId, b.id));
    await db.$transaction(async (tx) => {
      // Locked first: nothing changes the cluster or adds to its backups between the read and the delete.
      const locked = await tx.$queryRaw<{ id: string }[]>`SELECT id::text FROM clusters WHERE id = ${c.id}::uuid AND status = 'deleting' FOR UPDATE`;
      if (locked.length === 0) return; // another run deleted it (and recorded its events)
      const last = await tx.cluster.findUniqueOrThrow({ where: { id: c.id } });
      const going = await tx.backup.findMany({ where: { clusterId: c.id }, include: withArtifacts, orderBy: [{ createdAt: 'asc' }, { id: 'asc' }] });
      await tx.cluster.deleteMany({ where: { id: c.id, status: 'deleting' } });
      const at = deps.now();
      for (const b of going) await recordBackupEvent(tx, 'backup.deleted', b, at);
      await recordClusterDeleted(tx, last, at);
    });
    await deps.repo.repositories.requestGc(c.tenantId);
    await deps.queues?.add('maintenance', 'gc', { tenant_id: c.tenantId }, c.tenantId).catch(() => {});
  };
}
