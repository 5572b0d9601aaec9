import type { Db, Tx } from '../../db/client.js';
import { onUniqueViolation } from '../../db/errors.js';
import { Conflict, Invalid, NotFound } from '../../errors.js';
import { iso } from '../../http/schemas.js';
import { page } from '../../lib/cursor.js';
import type { PolicyRepo, PolicyRow } from './policies.repo.js';
import { DEFAULT_POLICY, validatePolicy, type PolicyValues } from './policies.schemas.js';

export interface PolicyView extends PolicyValues {
  id: string;
  name: string;
  is_default: boolean;
}

export function policyValues(p: PolicyRow): PolicyValues {
  return {
    timezone: p.timezone,
    schedule: p.schedule as PolicyValues['schedule'],
    max_backups: p.maxBackups,
    manual_count: p.manualCount,
    manual_rate_limit: p.manualRateLimit,
    failed_count: p.failedCount,
  };
}

export function presentPolicy(p: PolicyRow) {
  return { id: p.id, name: p.name, is_default: p.isDefault, ...policyValues(p), created_at: iso(p.createdAt), updated_at: iso(p.updatedAt) };
}

/** Hooks other domains register to react to a policy change (recompute schedules, prune). */
export interface PolicyHooks {
  afterChange?(tenantId: string, policyId: string): Promise<void>;
}

export function createPolicyService(deps: { db: Db; repo: PolicyRepo; now: () => Date; hooks?: PolicyHooks }) {
  const { db, repo, now } = deps;

  const uniqueName = <T>(fn: () => Promise<T>) => onUniqueViolation(fn, () => new Conflict('a policy with this name already exists'));

  return {
    async createDefault(tx: Tx, tenantId: string) {
      return repo.create(tx, tenantId, { name: 'default', isDefault: true, ...structuredClone(DEFAULT_POLICY), now: now() });
    },
    async create(tenantId: string, input: PolicyValues & { name: string }) {
      const errors = validatePolicy(input);
      if (errors.length) throw new Invalid('invalid policy', errors);
      return presentPolicy(await uniqueName(() => repo.create(db, tenantId, { ...input, now: now() })));
    },
    async get(tenantId: string, id: string) {
      const p = await repo.find(db, tenantId, id);
      if (!p) throw new NotFound('policy');
      return presentPolicy(p);
    },
    async list(tenantId: string, q: { limit: number; cursor?: string | undefined }) {
      const { items, nextCursor } = page(await repo.list(tenantId, q), q.limit);
      return { items: items.map(presentPolicy), next_cursor: nextCursor };
    },
    async update(tenantId: string, id: string, patch: Partial<PolicyValues> & { name?: string | undefined }) {
      const updated = await uniqueName(() =>
        db.$transaction(async (tx) => {
          const current = await repo.find(tx, tenantId, id);
          if (!current) throw new NotFound('policy');
          if (current.isDefault) throw new Conflict('the default policy cannot be changed; create a policy and assign it to clusters');
          const merged = { ...policyValues(current), ...Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)) } as PolicyValues;
          const errors = validatePolicy(merged);
          if (errors.length) throw new Invalid('invalid policy', errors);
          return repo.update(tx, tenantId, id, { ...merged, name: patch.name });
        }),
      );
      await deps.hooks?.afterChange?.(tenantId, id);
      return presentPolicy(updated);
    },
    async delete(tenantId: string, id: string) {
      await db.$transaction(async (tx) => {
        const current = await repo.find(tx, tenantId, id);
        if (!current) throw new NotFound('policy');
        if (current.isDefault) throw new Conflict('the default policy cannot be deleted');
        const used = await repo.countClusters(tx, tenantId, id);
        if (used > 0) throw new Conflict(`the policy is used by ${used} cluster(s); assign them another policy first`);
        await repo.delete(tx, tenantId, id);
      });
    },
  };
}
export type PolicyService = ReturnType<typeof createPolicyService>;
