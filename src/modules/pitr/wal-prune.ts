import type { Db } from '../../db/client.js';
import { parseLsn } from '../../components/pitr/lsn.js';

/*
 * WAL retention (SPEC section 13). A point-in-time restore replays a kept base backup and the WAL
 * from that base backup's start on, so stored WAL that ends before the oldest kept base backup's
 * start can never be replayed again: it is deleted, and the repository's GC takes the chunks only
 * it held (wal_chunks rows cascade with their segment; GC reads chunk_refs).
 *
 * The recovery window itself needs nothing here: retention (src/retention/plan.ts) keeps the base
 * backup a restore to the window's start replays, and the WAL from it on is kept by this rule.
 *
 * Everything uncertain keeps WAL: a stream with no kept base backup of its own (nothing to prune
 * against), a base backup of the stream's component that does not say which stream it was taken
 * beside (it could need this stream's WAL), a start that is not an LSN. 'writing' rows belong to
 * an archiver at work, and timeline history files are tiny and needed by any restore that
 * crosses their timeline switch: both stay.
 */

interface BaseBackupRow {
  component: string;
  base_backup: unknown;
}

/** The LSN from which on the stream's WAL is needed, or null to keep all of it. */
function neededFrom(stream: { id: string; component: string }, rows: readonly BaseBackupRow[]): bigint | null {
  let oldest: bigint | null = null;
  for (const row of rows) {
    const bb = (row.base_backup ?? {}) as { stream_id?: unknown; start_lsn?: unknown };
    if (typeof bb.stream_id !== 'string') {
      if (row.component === stream.component) return null;
      continue;
    }
    if (bb.stream_id !== stream.id) continue;
    let start: bigint;
    try {
      start = parseLsn(String(bb.start_lsn));
    } catch {
      return null;
    }
    if (oldest === null || start < oldest) oldest = start;
  }
  return oldest;
}

/**
 * Deletes the cluster's stored WAL segments that end at or before the start of the oldest kept
 * (completed) base backup of their stream, and marks the tenant's repository for GC in the same
 * transaction when it deleted any (the caller enqueues the GC after commit; the reconciler
 * enqueues it for a marked repository if that is lost). Run it after retention moved the backups
 * it drops to `deleting`.
 */
export async function pruneWal(db: Db, o: { tenantId: string; clusterId: string; now: Date }): Promise<{ deletedSegments: number }> {
  const streams = await db.walStream.findMany({ where: { tenantId: o.tenantId, clusterId: o.clusterId }, select: { id: true, component: true } });
  if (streams.length === 0) return { deletedSegments: 0 };
  return db.$transaction(async (tx) => {
    // Backups moved to `deleting` are no longer restorable and hold nothing back; a backup still
    // running will start at or after every completed one, so it needs no WAL they do not.
    const rows = await tx.$queryRaw<BaseBackupRow[]>`
      SELECT a.component, a.base_backup FROM backup_artifacts a JOIN backups b ON b.id = a.backup_id
      WHERE b.tenant_id = ${o.tenantId}::uuid AND b.cluster_id = ${o.clusterId}::uuid AND b.status = 'completed' AND a.base_backup IS NOT NULL`;
    let deleted = 0;
    for (const s of streams) {
      const from = neededFrom(s, rows);
      if (from === null) continue;
      deleted += await tx.$executeRaw`
        DELETE FROM wal_segments
        WHERE stream_id = ${s.id}::uuid AND tenant_id = ${o.tenantId}::uuid AND status = 'stored'
          AND end_lsn <= ${from} AND name NOT LIKE '%.history'`;
    }
    if (deleted > 0) await tx.repository.updateMany({ where: { tenantId: o.tenantId }, data: { gcRequestedAt: o.now } });
    return { deletedSegments: deleted };
  });
}
