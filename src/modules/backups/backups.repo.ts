import type { Db, Tx } from '../../db/client.js';
import type { Prisma } from '../../generated/prisma/client.js';
import { afterCursor, newestFirst } from '../../lib/cursor.js';

const withArtifacts = { artifacts: { orderBy: { component: 'asc' as const } } } as const;

export function createBackupRepo(db: Db) {
  return {
    async create(tx: Tx | Db, data: Prisma.BackupUncheckedCreateInput) {
      return tx.backup.create({ data, include: withArtifacts });
    },
    async find(tx: Tx | Db, tenantId: string, clusterId: string, id: string) {
      return tx.backup.findFirst({ where: { id, tenantId, clusterId }, include: withArtifacts });
    },
    async findById(tx: Tx | Db, tenantId: string, id: string) {
      return tx.backup.findFirst({ where: { id, tenantId }, include: withArtifacts });
    },
    async list(tenantId: string, clusterId: string, q: { status?: string | undefined; trigger?: string | undefined; limit: number; cursor?: string | undefined }) {
      return db.backup.findMany({
        where: {
          tenantId,
          clusterId,
          ...(q.status && { status: q.status as never }),
          ...(q.trigger && { trigger: q.trigger as never }),
          ...afterCursor(q.cursor),
        },
        orderBy: newestFirst,
        take: q.limit + 1,
        include: withArtifacts,
      });
    },
    /** The newest manual backup that still counts for the rate limit (a deleted or deleting one frees the slot). */
    async latestManualSince(tx: Tx, clusterId: string, since: Date) {
      return tx.backup.findFirst({
        where: { clusterId, trigger: 'manual', status: { not: 'deleting' }, createdAt: { gt: since } },
        orderBy: { createdAt: 'desc' },
        select: { createdAt: true },
      });
    },
    /** Moves a finished backup to `deleting`; a running one cannot be deleted. */
    async markDeleting(tx: Tx | Db, tenantId: string, id: string) {
      const r = await tx.backup.updateMany({ where: { id, tenantId, status: { in: ['queued', 'completed', 'failed'] } }, data: { status: 'deleting' } });
      return r.count > 0;
    },
  };
}
export type BackupRepo = ReturnType<typeof createBackupRepo>;
export type BackupRow = Awaited<ReturnType<BackupRepo['create']>>;
