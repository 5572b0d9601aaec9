import type { Db, Tx } from '../../db/client.js';
import { afterCursor, newestFirst } from '../../lib/cursor.js';

export function createTenantRepo(db: Db) {
  return {
    async create(tx: Tx, data: { id: string; name: string; dataDir: string }, now: Date) {
      return tx.tenant.create({ data: { ...data, createdAt: now } });
    },
    async list(q: { limit: number; cursor?: string | undefined }) {
      return db.tenant.findMany({ where: afterCursor(q.cursor), orderBy: newestFirst, take: q.limit + 1 });
    },
    /** The tenant's folder name under DATA_ROOT, or null for an unknown tenant. */
    async dataDir(tx: Tx | Db, tenantId: string): Promise<string | null> {
      const t = await tx.tenant.findUnique({ where: { id: tenantId }, select: { dataDir: true } });
      return t?.dataDir ?? null;
    },
    async dataDirTaken(tx: Tx | Db, dataDir: string): Promise<boolean> {
      return (await tx.tenant.count({ where: { dataDir } })) > 0;
    },
  };
}
export type TenantRepo = ReturnType<typeof createTenantRepo>;
