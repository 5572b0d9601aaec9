import type { Runtime } from '../../runtime.js';
import { jobId } from '../../queue/jobs.js';

const BATCH = 1000;

/**
 * The periodic retention sweep: a prune job for every cluster marked `retention_dirty`.
 *
 * Retention is a pure function of a cluster's finished backups, its policy and the restores
 * reading them (time passing alone never deletes a backup), and every change to those sets the
 * marker in the transaction that makes it (src/jobs/ledger.ts when a backup or restore ends, the
 * policy-change hooks). A prune follows each of those at once; the sweep only catches the prunes
 * that were lost (Redis flushed, a crash between commit and enqueue, a prune that kept failing),
 * so it visits the dirty clusters and nothing else: a keyset pass over the partial index
 * `clusters_retention_dirty_idx`, linear in the number of dirty clusters and independent of the
 * number of clean ones. The prune clears the marker (retention.service.ts).
 *
 * Job ids carry the sweep's time slot, so schedulers sweeping at once enqueue each cluster once.
 */
export async function sweepRetention(rt: Pick<Runtime, 'db' | 'queues' | 'now' | 'config'>, opts: { stopped?: () => boolean } = {}): Promise<number> {
  const slot = Math.floor(rt.now().getTime() / rt.config.retentionSweepMs);
  let after = '00000000-0000-0000-0000-000000000000';
  let enqueued = 0;
  for (;;) {
    // ORDER BY the column, not the text alias of the select list: only the uuid order is an index's.
    const rows = await rt.db.$queryRaw<{ id: string; tenant_id: string }[]>`
      SELECT id::text, tenant_id::text FROM clusters
      WHERE retention_dirty AND id > ${after}::uuid AND status <> 'deleting'
      ORDER BY clusters.id LIMIT ${BATCH}`;
    if (rows.length === 0) return enqueued;
    await rt.queues.all.maintenance.addBulk(
      rows.map((r) => ({ name: 'prune', data: { tenant_id: r.tenant_id, cluster_id: r.id }, opts: { jobId: jobId('prune', `${r.id}-sweep-${slot}`) } })),
    );
    enqueued += rows.length;
    // A stopping scheduler leaves the rest to the next sweep: the markers stay until a prune runs.
    if (rows.length < BATCH || opts.stopped?.()) return enqueued;
    after = rows[rows.length - 1]!.id;
  }
}
