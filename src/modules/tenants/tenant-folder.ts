import type { Db } from '../../db/client.js';
import { tenantRoot } from '../../components/paths.js';
import { NotFound } from '../../errors.js';
import { createTenantRepo } from './tenants.repo.js';

/**
 * The absolute real path of a tenant's folder, DATA_ROOT/<data_dir> from the tenant's row, made
 * when missing; PathEscapeError when it is not a real directory right below DATA_ROOT. Every
 * `directory` component of the tenant resolves inside it: the API validates paths against it and
 * the worker passes it to the drivers as `ctx.dataRoot`.
 */
export type TenantRootOf = (tenantId: string) => Promise<string>;

export function tenantRootOf(db: Db, dataRoot: string): TenantRootOf {
  const repo = createTenantRepo(db);
  return async (tenantId) => {
    const dataDir = await repo.dataDir(db, tenantId);
    if (dataDir === null) throw new NotFound('tenant');
    return tenantRoot(dataRoot, dataDir);
  };
}
