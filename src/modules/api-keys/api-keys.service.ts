import type { Db } from '../../db/client.js';
import { Conflict, Invalid, NotFound } from '../../errors.js';
import { generateToken } from '../../crypto/tokens.js';
import { iso } from '../../http/schemas.js';
import { page } from '../../lib/cursor.js';
import type { Role } from '../../http/auth.js';
import type { ApiKeyRepo } from './api-keys.repo.js';

type KeyRow = Awaited<ReturnType<ApiKeyRepo['create']>>;

export function presentApiKey(k: KeyRow) {
  return {
    id: k.id,
    name: k.name,
    role: k.role,
    prefix: k.prefix,
    created_at: iso(k.createdAt),
    expires_at: iso(k.expiresAt),
    last_used_at: iso(k.lastUsedAt),
  };
}

export function createApiKeyService(deps: { db: Db; repo: ApiKeyRepo; now: () => Date }) {
  const { db, repo, now } = deps;
  return {
    /** Creates a key inside an existing transaction (tenant creation) or on its own. */
    async create(tenantId: string, input: { name: string; role: Role; expires_at?: string | null | undefined }, tx: Parameters<ApiKeyRepo['create']>[0] = db) {
      const t = now();
      const expiresAt = input.expires_at ? new Date(input.expires_at) : null;
      if (expiresAt && expiresAt <= t) throw new Invalid('invalid body', [{ path: 'body.expires_at', message: 'must be in the future' }]);
      const { token, prefix, hash } = generateToken();
      const row = await repo.create(tx, tenantId, { name: input.name, role: input.role, expiresAt, prefix, tokenHash: hash, now: t });
      return { ...presentApiKey(row), token };
    },
    async list(tenantId: string, q: { limit: number; cursor?: string | undefined }) {
      const { items, nextCursor } = page(await repo.list(tenantId, q), q.limit);
      return { items: items.map(presentApiKey), next_cursor: nextCursor };
    },
    /**
     * Revokes a key; the tenant's last working admin key cannot be revoked (it would lock the
     * tenant out). Revocations of one tenant's keys take turns on the tenant row: two admins
     * revoking each other's key at once would otherwise both count two and both succeed.
     */
    async revoke(tenantId: string, id: string) {
      await db.$transaction(async (tx) => {
        await repo.lockTenant(tx, tenantId);
        const key = await repo.findActive(tx, tenantId, id);
        if (!key) throw new NotFound('api key');
        if (key.role === 'admin' && (await repo.countActiveAdmins(tx, tenantId, now())) <= 1)
          throw new Conflict('cannot revoke the last admin key of the tenant; create another admin key first');
        await repo.revoke(tx, tenantId, id, now());
      });
    },
  };
}
export type ApiKeyService = ReturnType<typeof createApiKeyService>;
