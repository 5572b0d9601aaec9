import type { Db, Tx } from '../../db/client.js';
import { afterCursor, newestFirst } from '../../lib/cursor.js';
import type { Prisma } from '../../generated/prisma/client.js';

export function createClusterRepo(db: Db) {
  return {
    async create(tx: Tx | Db, data: Prisma.ClusterUncheckedCreateInput) {
      return tx.cluster.create({ data });
    },
    async find(tx: Tx | Db, tenantId: string, id: string) {
      return tx.cluster.findFirst({ where: { id, tenantId } });
    },
    async findWithPolicy(tx: Tx | Db, tenantId: string, id: string) {
      return tx.cluster.findFirst({ where: { id, tenantId }, include: { policy: true } });
    },
    /** Row lock serialising every decision about one cluster (one job at a time, rate limit). */
    async lock(tx: Tx, tenantId: string, id: string): Promise<boolean> {
      const rows = await tx.$queryRaw<{ id: string }[]>`SELECT id FROM clusters WHERE id = ${id}::uuid AND tenant_id = ${tenantId}::uuid FOR UPDATE`;
      return rows.length > 0;
    },
    async list(tenantId: string, q: { limit: number; cursor?: string | undefined }) {
      return db.cluster.findMany({ where: { tenantId, ...afterCursor(q.cursor) }, orderBy: newestFirst, take: q.limit + 1 });
    },
    async update(tx: Tx | Db, tenantId: string, id: string, data: Prisma.ClusterUncheckedUpdateManyInput) {
      await tx.cluster.updateMany({ where: { id, tenantId }, data });
      return tx.cluster.findFirstOrThrow({ where: { id, tenantId } });
    },
  };
}
export type ClusterRepo = ReturnType<typeof createClusterRepo>;
export type ClusterRow = Awaited<ReturnType<ClusterRepo['create']>>;
