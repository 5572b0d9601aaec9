import type { Db } from '../../db/client.js';
import { isUniqueViolation } from '../../db/errors.js';
import { Conflict } from '../../errors.js';
import { iso } from '../../http/schemas.js';
import { page } from '../../lib/cursor.js';
import type { ApiKeyService } from '../api-keys/api-keys.service.js';
import type { PolicyService } from '../policies/policies.service.js';
import type { TenantRepo } from './tenants.repo.js';

const present = (t: { id: string; name: string; createdAt: Date }) => ({ id: t.id, name: t.name, created_at: iso(t.createdAt) });

export function createTenantService(deps: { db: Db; repo: TenantRepo; apiKeys: ApiKeyService; policies: PolicyService; now: () => Date }) {
  const { db, repo } = deps;
  return {
    /** A tenant comes with its default policy and first admin key, all or nothing. */
    async create(name: string) {
      try {
        return await db.$transaction(async (tx) => {
          const tenant = await repo.create(tx, name, deps.now());
          await deps.policies.createDefault(tx, tenant.id);
          const apiKey = await deps.apiKeys.create(tenant.id, { name: 'initial admin key', role: 'admin' }, tx);
          return { tenant: present(tenant), api_key: apiKey };
        });
      } catch (err) {
        if (isUniqueViolation(err)) throw new Conflict(`a tenant named "${name}" already exists`);
        throw err;
      }
    },
    async list(q: { limit: number; cursor?: string | undefined }) {
      const { items, nextCursor } = page(await repo.list(q), q.limit);
      return { items: items.map(present), next_cursor: nextCursor };
    },
  };
}
export type TenantService = ReturnType<typeof createTenantService>;
