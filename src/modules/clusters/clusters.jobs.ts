import type { Db } from '../../db/client.js';
import type { Ledger } from '../../jobs/ledger.js';
import { RetryLater } from '../../queue/worker.js';
import type { ArtifactStore } from '../../storage/types.js';

/** How long a deletion waits before looking again at running work it must outlive. */
export const DELETION_WAIT_MS = 5_000;

/**
 * Deletes a `deleting` cluster: its queued work, and queued restores reading its backups into
 * other clusters, are cancelled (their targets freed); running work is waited for (the job comes
 * back after a delay, never giving up); then every artifact goes, then the rows (cascade).
 * Each step is idempotent, so a crash midway is resumed by running the job again.
 */
export function createClusterDeleter(deps: { db: Db; ledger: Ledger; stores: ArtifactStore[]; now: () => Date }) {
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
    for (const s of deps.stores) await s.deletePrefix(`${c.tenantId}/${c.id}/`);
    await db.cluster.deleteMany({ where: { id: c.id, status: 'deleting' } });
  };
}
