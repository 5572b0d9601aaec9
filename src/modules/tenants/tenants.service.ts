import { randomUUID } from 'node:crypto';
import type { Db } from '../../db/client.js';
import { isUniqueViolation } from '../../db/errors.js';
import { Conflict, Invalid } from '../../errors.js';
import { iso } from '../../http/schemas.js';
import { page } from '../../lib/cursor.js';
import { tenantRoot, tenantRootProblem } from '../../components/paths.js';
import type { ApiKeyService } from '../api-keys/api-keys.service.js';
import type { PolicyService } from '../policies/policies.service.js';
import type { TenantRepo } from './tenants.repo.js';

const present = (t: { id: string; name: string; dataDir: string; createdAt: Date }) => ({ id: t.id, name: t.name, data_dir: t.dataDir, created_at: iso(t.createdAt) });

export interface TenantServiceDeps {
  db: Db;
  repo: TenantRepo;
  apiKeys: ApiKeyService;
  policies: PolicyService;
  /** DATA_ROOT: each tenant's folder is made right below it. */
  dataRoot: string;
  now: () => Date;
  log: { warn(obj: object, msg: string): void };
}

export function createTenantService(deps: TenantServiceDeps) {
  const { db, repo } = deps;
  return {
    /**
     * A tenant comes with its default policy and first admin key, all or nothing, and its folder
     * DATA_ROOT/<data_dir> (the id unless the operator names one), made after the commit.
     */
    async create(input: { name: string; data_dir?: string | undefined }) {
      const id = randomUUID();
      const dataDir = input.data_dir ?? id;
      const problem = await tenantRootProblem(deps.dataRoot, dataDir);
      if (problem) throw new Invalid('invalid tenant', [{ path: 'body.data_dir', message: problem }]);
      let created;
      try {
        created = await db.$transaction(async (tx) => {
          const tenant = await repo.create(tx, { id, name: input.name, dataDir }, deps.now());
          await deps.policies.createDefaults(tx, tenant.id);
          const apiKey = await deps.apiKeys.create(tenant.id, { name: 'initial admin key', role: 'admin' }, tx);
          return { tenant: present(tenant), api_key: apiKey };
        });
      } catch (err) {
        if (!isUniqueViolation(err)) throw err;
        if (input.data_dir !== undefined && (await repo.dataDirTaken(db, dataDir))) throw new Conflict(`another tenant already has the folder "${dataDir}"`);
        throw new Conflict(`a tenant named "${input.name}" already exists`);
      }
      // Not inside the transaction (no side effects there); should it fail, the folder is made on first use.
      await tenantRoot(deps.dataRoot, dataDir).catch((err: unknown) => deps.log.warn({ err, tenant_id: id }, "could not make the tenant's folder; it is made on first use"));
      return created;
    },
    async list(q: { limit: number; cursor?: string | undefined }) {
      const { items, nextCursor } = page(await repo.list(q), q.limit);
      return { items: items.map(present), next_cursor: nextCursor };
    },
  };
}
export type TenantService = ReturnType<typeof createTenantService>;
