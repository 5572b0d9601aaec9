import type { Db, Tx } from '../../db/client.js';
import { onUniqueViolation } from '../../db/errors.js';
import { Conflict, Invalid, NotFound, type FieldProblem } from '../../errors.js';
import { iso } from '../../http/schemas.js';
import { page } from '../../lib/cursor.js';
import type { PolicyRepo, PolicyRow } from './policies.repo.js';
import { applyPolicyPatch, ENVIRONMENT_DEFAULTS, ENVIRONMENTS, validatePolicy, type DataRetentionPatch, type EnvironmentName, type PolicyValues } from './policies.schemas.js';

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
    scheduled_live: p.scheduledLive,
    recovery_window: p.recoveryWindow,
  };
}

export function presentPolicy(p: PolicyRow) {
  return { id: p.id, name: p.name, is_default: p.isDefault, environment: p.defaultFor, ...policyValues(p), created_at: iso(p.createdAt), updated_at: iso(p.updatedAt) };
}

/** The three defaults in Upsun's data_retention shape. */
export function presentDataRetention(rows: PolicyRow[]) {
  const of = (env: EnvironmentName) => {
    const p = rows.find((r) => r.defaultFor === env);
    const v = p ? policyValues(p) : ENVIRONMENT_DEFAULTS[env];
    return { max_backups: v.max_backups, default_config: { schedule: v.schedule, manual_count: v.manual_count } };
  };
  return { production: of('production'), staging: of('staging'), development: of('development') };
}

/** Hooks other domains register to react to a policy change (recompute schedules, prune). */
export interface PolicyHooks {
  afterChange?(tenantId: string, policyId: string): Promise<void>;
}

export function createPolicyService(deps: { db: Db; repo: PolicyRepo; now: () => Date; hooks?: PolicyHooks }) {
  const { db, repo, now } = deps;

  const uniqueName = <T>(fn: () => Promise<T>) => onUniqueViolation(fn, () => new Conflict('a policy with this name already exists'));

  return {
    /** A new tenant's three default policies, one per environment type (SPEC section 11). */
    async createDefaults(tx: Tx, tenantId: string) {
      for (const env of ENVIRONMENTS) await repo.create(tx, tenantId, { name: `${env} default`, defaultFor: env, ...structuredClone(ENVIRONMENT_DEFAULTS[env]), now: now() });
    },
    /** GET /v1/data-retention: the three defaults in Upsun's shape. */
    async dataRetention(tenantId: string) {
      return presentDataRetention(await repo.listDefaults(db, tenantId));
    },
    /**
     * PATCH /v1/data-retention: changes the defaults named, in one transaction (every problem of
     * every environment in one 422), then moves the schedules of the clusters that use them.
     */
    async patchDataRetention(tenantId: string, patch: DataRetentionPatch) {
      const changed: string[] = [];
      const rows = await db.$transaction(async (tx) => {
        const current = await repo.listDefaults(tx, tenantId);
        const errors: FieldProblem[] = [];
        for (const env of ENVIRONMENTS) {
          const p = patch[env];
          const row = current.find((r) => r.defaultFor === env);
          if (!p || !row) continue;
          const merged: PolicyValues = {
            ...policyValues(row),
            ...(p.max_backups !== undefined && { max_backups: p.max_backups }),
            ...(p.default_config?.schedule !== undefined && { schedule: p.default_config.schedule }),
            ...(p.default_config?.manual_count !== undefined && { manual_count: p.default_config.manual_count }),
          };
          for (const e of validatePolicy(merged)) errors.push({ path: e.path.replace(/^body\./, `body.${env}.`).replace(/\.(schedule|manual_count)\b/, '.default_config.$1'), message: e.message });
          if (errors.length === 0) {
            await repo.update(tx, tenantId, row.id, merged);
            changed.push(row.id);
          }
        }
        if (errors.length) throw new Invalid('invalid data retention', errors);
        return repo.listDefaults(tx, tenantId);
      });
      for (const id of changed) await deps.hooks?.afterChange?.(tenantId, id);
      return presentDataRetention(rows);
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
          const { name: _name, ...fields } = patch;
          const merged = applyPolicyPatch(policyValues(current), fields);
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
        if (current.isDefault) throw new Conflict(`this is the ${current.defaultFor} environment's default policy, which cannot be deleted (it can be changed)`);
        const used = await repo.countClusters(tx, tenantId, id);
        if (used > 0) throw new Conflict(`the policy is used by ${used} cluster(s); assign them another policy first`);
        await repo.delete(tx, tenantId, id);
      });
    },
  };
}
export type PolicyService = ReturnType<typeof createPolicyService>;
