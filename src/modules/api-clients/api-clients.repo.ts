import { randomUUID } from 'node:crypto';
import type { Db } from '../../db/client.js';
import { afterCursor, newestFirst } from '../../lib/cursor.js';
import type { Role } from '../../http/auth.js';

export function createApiClientRepo(db: Db) {
  return {
    async create(tenantId: string, input: { name: string; role: Role; secretHash: string; now: Date }) {
      return db.apiClient.create({
        data: { id: randomUUID(), tenantId, name: input.name, role: input.role, secretHash: input.secretHash, createdAt: input.now },
      });
    },
    async list(tenantId: string, q: { limit: number; cursor?: string | undefined }) {
      return db.apiClient.findMany({ where: { tenantId, deletedAt: null, ...afterCursor(q.cursor) }, orderBy: newestFirst, take: q.limit + 1 });
    },
    async find(tenantId: string, id: string) {
      return db.apiClient.findFirst({ where: { id, tenantId, deletedAt: null } });
    },
    async delete(tenantId: string, id: string, now: Date) {
      const r = await db.apiClient.updateMany({ where: { id, tenantId, deletedAt: null }, data: { deletedAt: now } });
      return r.count > 0;
    },
    /** The token endpoint's lookup: a client is named by its id alone (before we know its tenant). */
    async findForAuthentication(id: string): Promise<{ id: string; tenantId: string; role: Role; secretHash: string } | null> {
      const { rows } = await db.$pool.query<{ id: string; tenantId: string; role: Role; secretHash: string }>(
        `SELECT id::text, tenant_id::text AS "tenantId", role::text AS role, secret_hash AS "secretHash"
         FROM api_clients WHERE id = $1::uuid AND deleted_at IS NULL`,
        [id],
      );
      return rows[0] ?? null;
    },
    /**
     * Every request carrying an access token runs this (straight to the driver, like API keys):
     * the client's current role, or null once it is deleted. Never cached, so a deletion
     * rejects the client's live tokens on the very next request.
     */
    async activeRole(tenantId: string, id: string): Promise<Role | null> {
      const { rows } = await db.$pool.query<{ role: Role }>(
        `SELECT role::text AS role FROM api_clients WHERE id = $1::uuid AND tenant_id = $2::uuid AND deleted_at IS NULL`,
        [id, tenantId],
      );
      return rows[0]?.role ?? null;
    },
    async touch(id: string, now: Date) {
      await db.$pool.query(`UPDATE api_clients SET last_used_at = $2 WHERE id = $1::uuid`, [id, now]);
    },
  };
}
export type ApiClientRepo = ReturnType<typeof createApiClientRepo>;
