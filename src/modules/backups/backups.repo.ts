import type { Db, Tx } from '../../db/client.js';
import type { BackupArtifact, Prisma } from '../../generated/prisma/client.js';
import { decodeCursor } from '../../lib/cursor.js';
import type { BackupRecord } from './backups.present.js';

const withArtifacts = { artifacts: { orderBy: { component: 'asc' as const } } } as const;

export function createBackupRepo(db: Db) {
  return {
    /** A new backup has no artifacts yet. */
    async create(tx: Tx | Db, data: Prisma.BackupUncheckedCreateInput) {
      return { ...(await tx.backup.create({ data })), artifacts: [] as BackupArtifact[] };
    },
    async find(tx: Tx | Db, tenantId: string, clusterId: string, id: string) {
      return tx.backup.findFirst({ where: { id, tenantId, clusterId }, include: withArtifacts });
    },
    async findById(tx: Tx | Db, tenantId: string, id: string) {
      return tx.backup.findFirst({ where: { id, tenantId }, include: withArtifacts });
    },
    /**
     * A page of backups with their artifacts in one statement (the hottest read of the API):
     * keyset pagination on (created_at, id), artifacts aggregated per row.
     */
    async list(tenantId: string, clusterId: string, q: { status?: string | undefined; trigger?: string | undefined; limit: number; cursor?: string | undefined }): Promise<BackupRecord[]> {
      const c = q.cursor ? decodeCursor(q.cursor) : null;
      return db.$queryRaw<BackupRecord[]>`
        SELECT b.id::text, b.tenant_id::text AS "tenantId", b.cluster_id::text AS "clusterId", b.trigger::text, b.status::text, b.live,
               b.created_at AS "createdAt", b.started_at AS "startedAt", b.completed_at AS "completedAt",
               b.size_bytes AS "sizeBytes", b.stored_bytes AS "storedBytes", b.bytes_done AS "bytesDone", b.progress, b.components,
               b.error_component AS "errorComponent", b.error_message AS "errorMessage",
               b.verify_status AS "verifyStatus", b.verified_at AS "verifiedAt", b.verify_message AS "verifyMessage",
               b.replication_status AS "replicationStatus", b.replication_attempts AS "replicationAttempts",
               b.replication_next_at AS "replicationNextAt", b.replication_error AS "replicationError",
               COALESCE((SELECT json_agg(json_build_object('component', a.component, 'type', a.type, 'bytes', a.bytes, 'stored_bytes', a.stored_bytes, 'sha256', a.sha256, 'locations', a.locations) ORDER BY a.component)
                         FROM backup_artifacts a WHERE a.backup_id = b.id), '[]'::json) AS artifacts
        FROM backups b
        WHERE b.tenant_id = ${tenantId}::uuid AND b.cluster_id = ${clusterId}::uuid
          AND (${q.status ?? null}::text IS NULL OR b.status::text = ${q.status ?? null}::text)
          AND (${q.trigger ?? null}::text IS NULL OR b.trigger::text = ${q.trigger ?? null}::text)
          AND (${c?.createdAt ?? null}::timestamptz IS NULL OR (b.created_at, b.id) < (${c?.createdAt ?? null}::timestamptz, ${c?.id ?? null}::uuid))
        ORDER BY b.created_at DESC, b.id DESC
        LIMIT ${q.limit + 1}`;
    },
    /** The newest manual backup that still counts for the rate limit (a deleted or deleting one frees the slot). */
    async latestManualSince(tx: Tx, clusterId: string, since: Date) {
      return tx.backup.findFirst({
        where: { clusterId, trigger: 'manual', status: { not: 'deleting' }, createdAt: { gt: since } },
        orderBy: { createdAt: 'desc' },
        select: { createdAt: true },
      });
    },
  };
}
export type BackupRepo = ReturnType<typeof createBackupRepo>;
export type BackupRow = Awaited<ReturnType<BackupRepo['create']>>;
