import { randomUUID } from 'node:crypto';
import type { Db, Tx } from '../../db/client.js';
import { afterCursor, newestFirst } from '../../lib/cursor.js';
import type { EnvironmentName, PolicyValues } from './policies.schemas.js';

function toData(v: Partial<PolicyValues>) {
  return {
    ...(v.timezone !== undefined && { timezone: v.timezone }),
    ...(v.schedule !== undefined && { schedule: v.schedule }),
    ...(v.max_backups !== undefined && { maxBackups: v.max_backups }),
    ...(v.manual_count !== undefined && { manualCount: v.manual_count }),
    ...(v.manual_rate_limit !== undefined && { manualRateLimit: v.manual_rate_limit }),
    ...(v.failed_count !== undefined && { failedCount: v.failed_count }),
    ...(v.scheduled_live !== undefined && { scheduledLive: v.scheduled_live }),
    ...(v.recovery_window !== undefined && { recoveryWindow: v.recovery_window }),
  };
}

export function createPolicyRepo(db: Db) {
  return {
    async create(tx: Tx | Db, tenantId: string, input: PolicyValues & { name: string; defaultFor?: EnvironmentName; now: Date }) {
      return tx.policy.create({
        data: {
          id: randomUUID(),
          tenantId,
          name: input.name,
          isDefault: input.defaultFor !== undefined,
          defaultFor: input.defaultFor ?? null,
          timezone: input.timezone,
          schedule: input.schedule,
          maxBackups: input.max_backups,
          manualCount: input.manual_count,
          manualRateLimit: input.manual_rate_limit,
          failedCount: input.failed_count,
          scheduledLive: input.scheduled_live,
          recoveryWindow: input.recovery_window,
          createdAt: input.now,
          updatedAt: input.now,
        },
      });
    },
    async find(tx: Tx | Db, tenantId: string, id: string) {
      return tx.policy.findFirst({ where: { id, tenantId } });
    },
    /** The default policy of an environment type. */
    async findDefault(tx: Tx | Db, tenantId: string, environment: EnvironmentName) {
      return tx.policy.findFirst({ where: { tenantId, defaultFor: environment } });
    },
    async listDefaults(tx: Tx | Db, tenantId: string) {
      return tx.policy.findMany({ where: { tenantId, defaultFor: { not: null } } });
    },
    async list(tenantId: string, q: { limit: number; cursor?: string | undefined }) {
      return db.policy.findMany({ where: { tenantId, ...afterCursor(q.cursor) }, orderBy: newestFirst, take: q.limit + 1 });
    },
    async update(tx: Tx | Db, tenantId: string, id: string, v: Partial<PolicyValues> & { name?: string | undefined }) {
      await tx.policy.updateMany({ where: { id, tenantId }, data: { ...toData(v), ...(v.name !== undefined && { name: v.name }) } });
      return tx.policy.findFirstOrThrow({ where: { id, tenantId } });
    },
    async countClusters(tx: Tx | Db, tenantId: string, id: string) {
      return tx.cluster.count({ where: { tenantId, policyId: id } });
    },
    async delete(tx: Tx | Db, tenantId: string, id: string) {
      return (await tx.policy.deleteMany({ where: { id, tenantId } })).count > 0;
    },
  };
}
export type PolicyRepo = ReturnType<typeof createPolicyRepo>;
export type PolicyRow = Awaited<ReturnType<PolicyRepo['create']>>;
