import type { Db } from '../../db/client.js';
import type { ArtifactStore } from '../../storage/types.js';

export class ClusterBusy extends Error {}

/**
 * Deletes a `deleting` cluster: queued work is cancelled, running work is waited for (the job
 * throws and BullMQ retries with backoff), then every artifact goes, then the rows (cascade).
 * Each step is idempotent, so a crash midway is resumed by running the job again.
 */
export function createClusterDeleter(deps: { db: Db; stores: ArtifactStore[]; now: () => Date }) {
  return async function deleteCluster(payload: { tenant_id: string; cluster_id: string }): Promise<void> {
    const { db } = deps;
    const c = await db.cluster.findFirst({ where: { id: payload.cluster_id, tenantId: payload.tenant_id } });
    if (!c || c.status !== 'deleting') return;
    const cancelled = { status: 'failed' as const, completedAt: deps.now(), errorMessage: 'cancelled: the cluster is being deleted' };
    await db.backup.updateMany({ where: { clusterId: c.id, status: 'queued' }, data: cancelled });
    await db.restore.updateMany({ where: { clusterId: c.id, status: 'queued' }, data: cancelled });
    const running = (await db.backup.count({ where: { clusterId: c.id, status: 'running' } })) + (await db.restore.count({ where: { clusterId: c.id, status: 'running' } }));
    if (running > 0) throw new ClusterBusy(`cluster ${c.id} still has ${running} running job(s); retrying`);
    for (const s of deps.stores) await s.deletePrefix(`${c.tenantId}/${c.id}/`);
    await db.cluster.deleteMany({ where: { id: c.id, status: 'deleting' } });
  };
}
