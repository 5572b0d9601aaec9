import type { Queues } from '../../queue/queues.js';
import type { RetentionService } from './retention.service.js';

export function createPruneJob(deps: { service: RetentionService; queues: Pick<Queues, 'add'> }) {
  return async function prune(payload: { tenant_id: string; cluster_id: string }): Promise<void> {
    const dropped = await deps.service.prune(payload.tenant_id, payload.cluster_id);
    for (const id of dropped) await deps.queues.add('maintenance', 'delete-backup', { tenant_id: payload.tenant_id, backup_id: id }, id);
    // WAL older than the oldest base backup still kept can no longer be replayed. pruneWal marks
    // the repository for GC in its transaction, so a lost enqueue is the reconciler's to mend.
    const wal = await deps.service.pruneWal(payload.tenant_id, payload.cluster_id);
    if (wal.deletedSegments > 0) await deps.queues.add('maintenance', 'gc', { tenant_id: payload.tenant_id }, payload.tenant_id).catch(() => {});
  };
}
