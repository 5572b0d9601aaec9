import { randomUUID } from 'node:crypto';
import type { Db, Tx } from '../../db/client.js';
import { afterCursor, newestFirst } from '../../lib/cursor.js';
import type { Role } from '../../http/auth.js';

const TOUCH_EVERY_MS = 60_000;

export function createApiKeyRepo(db: Db) {
  // Keys this process recorded a use of lately: skips the UPDATE round trip on hot paths.
  const touched = new Map<string, number>();
  return {
    /** Every authenticated request runs this: straight to the driver, on the client's own pool. */
    async findActiveByHash(hash: string, now: Date): Promise<{ id: string; tenantId: string; role: Role } | null> {
      const { rows } = await db.$pool.query<{ id: string; tenantId: string; role: Role }>(
        `SELECT id::text, tenant_id::text AS "tenantId", role::text AS role FROM api_keys
         WHERE token_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)`,
        [hash, now],
      );
      return rows[0] ?? null;
    },
    /** Records use at most once a minute per key, so reads do not turn into a write each. */
    async touch(id: string, now: Date) {
      const last = touched.get(id);
      if (last !== undefined && now.getTime() - last < TOUCH_EVERY_MS) return;
      if (touched.size > 10_000) touched.clear();
      touched.set(id, now.getTime());
      await db.apiKey.updateMany({
        where: { id, OR: [{ lastUsedAt: null }, { lastUsedAt: { lt: new Date(now.getTime() - TOUCH_EVERY_MS) } }] },
        data: { lastUsedAt: now },
      });
    },
    async create(tx: Tx | Db, tenantId: string, input: { name: string; role: Role; expiresAt: Date | null; prefix: string; tokenHash: string; now: Date }) {
      return tx.apiKey.create({
        data: {
          id: randomUUID(),
          tenantId,
          name: input.name,
          role: input.role,
          prefix: input.prefix,
          tokenHash: input.tokenHash,
          expiresAt: input.expiresAt,
          createdAt: input.now,
        },
      });
    },
    async list(tenantId: string, q: { limit: number; cursor?: string | undefined }) {
      return db.apiKey.findMany({
        where: { tenantId, revokedAt: null, ...afterCursor(q.cursor) },
        orderBy: newestFirst,
        take: q.limit + 1,
      });
    },
    async findActive(tx: Tx | Db, tenantId: string, id: string) {
      return tx.apiKey.findFirst({ where: { id, tenantId, revokedAt: null } });
    },
    /** Serializes the tenant's key revocations: the lock lasts until the transaction ends. */
    async lockTenant(tx: Tx, tenantId: string) {
      await tx.$queryRaw`SELECT 1 FROM tenants WHERE id = ${tenantId}::uuid FOR UPDATE`;
    },
    async countActiveAdmins(tx: Tx | Db, tenantId: string, now: Date) {
      return tx.apiKey.count({
        where: { tenantId, role: 'admin', revokedAt: null, OR: [{ expiresAt: null }, { expiresAt: { gt: now } }] },
      });
    },
    async revoke(tx: Tx | Db, tenantId: string, id: string, now: Date) {
      const r = await tx.apiKey.updateMany({ where: { id, tenantId, revokedAt: null }, data: { revokedAt: now } });
      return r.count > 0;
    },
  };
}
export type ApiKeyRepo = ReturnType<typeof createApiKeyRepo>;
