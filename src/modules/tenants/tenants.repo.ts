import { randomUUID } from 'node:crypto';
import type { Db, Tx } from '../../db/client.js';
import { afterCursor, newestFirst } from '../../lib/cursor.js';

export function createTenantRepo(db: Db) {
  return {
    async create(tx: Tx, name: string, now: Date) {
      return tx.tenant.create({ data: { id: randomUUID(), name, createdAt: now } });
    },
    async list(q: { limit: number; cursor?: string | undefined }) {
      return db.tenant.findMany({ where: afterCursor(q.cursor), orderBy: newestFirst, take: q.limit + 1 });
    },
  };
}
export type TenantRepo = ReturnType<typeof createTenantRepo>;
