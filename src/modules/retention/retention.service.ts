import type { Db, Tx } from '../../db/client.js';
import type { Ledger } from '../../jobs/ledger.js';
import { Invalid, NotFound } from '../../errors.js';
import { iso } from '../../http/schemas.js';
import { planRetention } from '../../retention/index.js';
import { policyValues } from '../policies/policies.service.js';
import { applyPolicyPatch, validatePolicy, type PolicyValues } from '../policies/policies.schemas.js';

type Decision = { id: string; keep: boolean; reasons: string[] };

/**
 * Feeds the pure planner with the cluster's finished backups and the backups restores are reading.
 * `policyFor` replaces the cluster's saved policy (the preview's draft); it may throw, before any
 * backup is read.
 */
async function plan(tx: Tx | Db, tenantId: string, clusterId: string, policyFor?: (saved: PolicyValues) => PolicyValues) {
  const cluster = await tx.cluster.findFirst({ where: { id: clusterId, tenantId }, include: { policy: true } });
  if (!cluster?.policy) return null;
  const saved = { ...policyValues(cluster.policy), timezone: cluster.policy.timezone };
  const policy = policyFor ? policyFor(saved) : saved;
  const backups = await tx.backup.findMany({
    where: { clusterId },
    select: { id: true, trigger: true, status: true, createdAt: true },
    orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
  });
  const reading = new Set(
    (await tx.restore.findMany({ where: { backupId: { in: backups.map((b) => b.id) }, status: { in: ['queued', 'running'] } }, select: { backupId: true } })).map(
      (r) => r.backupId,
    ),
  );
  const finished = backups.filter((b) => b.status === 'completed' || b.status === 'failed');
  const decisions = planRetention(
    finished.map((b) => ({ id: b.id, trigger: b.trigger, status: b.status as 'completed' | 'failed', created_at: b.createdAt, in_use: reading.has(b.id) })),
    policy,
  );
  return { cluster, backups, decisions: new Map<string, Decision>(decisions.map((d) => [d.id, d])) };
}

/** A policy as a preview is given it: any field left out keeps the cluster's saved value. */
export type PolicyDraft = { [K in keyof PolicyValues]?: PolicyValues[K] | undefined } & { name?: string | undefined };

/**
 * The saved values overlaid with the draft's, checked by the same rules (and messages) as
 * POST /v1/policies; the paths are those of the preview's body (`body.policy.<field>`).
 */
function draftPolicy(saved: PolicyValues, draft: PolicyDraft): PolicyValues {
  const { name: _name, ...fields } = draft;
  const merged = applyPolicyPatch(saved, fields);
  const errors = validatePolicy(merged).map((e) => ({ path: e.path.replace(/^body\./, 'body.policy.'), message: e.message }));
  if (errors.length) throw new Invalid('invalid policy', errors);
  return merged;
}

export function createRetentionService(deps: { db: Db; ledger?: Ledger }) {
  const { db } = deps;
  /** The plan as GET .../retention answers it; with a draft, the plan that policy would make. */
  async function explain(tenantId: string, clusterId: string, draft?: PolicyDraft) {
    const p = await plan(db, tenantId, clusterId, draft && ((saved) => draftPolicy(saved, draft)));
    if (!p) throw new NotFound('cluster');
    return {
      cluster_id: clusterId,
      policy_id: p.cluster.policyId!,
      items: p.backups.map((b) => {
        const d = p.decisions.get(b.id);
        const inProgress = b.status === 'queued' || b.status === 'running';
        return {
          backup_id: b.id,
          trigger: b.trigger,
          status: b.status,
          created_at: iso(b.createdAt),
          keep: d ? d.keep : inProgress,
          reasons: d ? d.reasons : inProgress ? ['in progress'] : ['being deleted'],
        };
      }),
    };
  }
  return {
    /** What retention keeps, and why, for every backup of the cluster. */
    explain: (tenantId: string, clusterId: string) => explain(tenantId, clusterId),
    /**
     * What retention would keep, and why, if the cluster's policy were changed by `draft`: the
     * same answer as explain, nothing saved, nothing pruned (a pure reading of the planner).
     */
    preview: (tenantId: string, clusterId: string, draft: PolicyDraft) => explain(tenantId, clusterId, draft),
    /**
     * Applies the plan: backups it drops move to `deleting` under the cluster lock (so a restore
     * cannot start reading one meanwhile); returns their ids for the caller to enqueue deletion.
     *
     * Clears the cluster's `retention_dirty` marker in the same transaction, after taking the lock
     * and before reading any backup. Whoever dirties the cluster again (a backup ending) takes the
     * same lock first, so its change is either already visible to the reads below or sets the
     * marker again after this commits: a change is never lost. If the prune fails, the rollback
     * keeps the marker and the periodic sweep tries again.
     */
    async prune(tenantId: string, clusterId: string): Promise<string[]> {
      return db.$transaction(async (tx) => {
        const locked = await tx.$queryRaw<{ id: string }[]>`SELECT id FROM clusters WHERE id = ${clusterId}::uuid AND tenant_id = ${tenantId}::uuid FOR UPDATE`;
        if (locked.length === 0) return [];
        await tx.$executeRaw`UPDATE clusters SET retention_dirty = false WHERE id = ${clusterId}::uuid AND retention_dirty`;
        const p = await plan(tx, tenantId, clusterId);
        if (!p) return [];
        const drop = [...p.decisions.values()].filter((d) => !d.keep).map((d) => d.id);
        if (drop.length === 0) return [];
        if (!deps.ledger) throw new Error('pruning needs the job ledger');
        const moved: string[] = [];
        for (const id of drop) if (await deps.ledger.markDeleting(tx, clusterId, id)) moved.push(id);
        return moved;
      });
    },
  };
}
export type RetentionService = ReturnType<typeof createRetentionService>;
