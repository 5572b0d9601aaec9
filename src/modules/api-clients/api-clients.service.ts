import { NotFound } from '../../errors.js';
import { generateSecret } from './client-secrets.js';
import { iso } from '../../http/schemas.js';
import { page } from '../../lib/cursor.js';
import type { Role } from '../../http/auth.js';
import type { ApiClientRepo } from './api-clients.repo.js';

type ClientRow = Awaited<ReturnType<ApiClientRepo['create']>>;

export function presentApiClient(c: ClientRow) {
  return { id: c.id, client_id: c.id, name: c.name, role: c.role, created_at: iso(c.createdAt), last_used_at: iso(c.lastUsedAt) };
}

export function createApiClientService(deps: { repo: ApiClientRepo; now: () => Date }) {
  const { repo, now } = deps;
  return {
    async create(tenantId: string, input: { name: string; role: Role }) {
      const { secret, hash } = generateSecret();
      const row = await repo.create(tenantId, { name: input.name, role: input.role, secretHash: hash, now: now() });
      return { ...presentApiClient(row), client_secret: secret };
    },
    async list(tenantId: string, q: { limit: number; cursor?: string | undefined }) {
      const { items, nextCursor } = page(await repo.list(tenantId, q), q.limit);
      return { items: items.map(presentApiClient), next_cursor: nextCursor };
    },
    async get(tenantId: string, id: string) {
      const row = await repo.find(tenantId, id);
      if (!row) throw new NotFound('api client');
      return presentApiClient(row);
    },
    /** Its access tokens are refused from the next request on (the token check reads the row). */
    async delete(tenantId: string, id: string) {
      if (!(await repo.delete(tenantId, id, now()))) throw new NotFound('api client');
    },
  };
}
export type ApiClientService = ReturnType<typeof createApiClientService>;
