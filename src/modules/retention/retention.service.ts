import type { Db, Tx } from '../../db/client.js';
import type { Ledger } from '../../jobs/ledger.js';
import { Invalid, NotFound } from '../../errors.js';
import { iso } from '../../http/schemas.js';
import { planRetention } from '../../retention/index.js';
import { recoveryWindowStart } from '../../retention/plan.js';
import { pruneWal } from '../pitr/wal-prune.js';
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
    select: { id: true, trigger: true, status: true, createdAt: true, artifacts: { select: { baseBackup: true } } },
    orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
  });
  const reading = new Set(
    (await tx.restore.findMany({ where: { backupId: { in: backups.map((b) => b.id) }, status: { in: ['queued', 'running'] } }, select: { backupId: true } })).map(
      (r) => r.backupId,
    ),
  );
  const finished = backups
    .filter((b) => b.status === 'completed' || b.status === 'failed')
    .map((b) => ({
      id: b.id,
      trigger: b.trigger,
      status: b.status as 'completed' | 'failed',
      created_at: b.createdAt,
      in_use: reading.has(b.id),
      base_backup_stop: b.status === 'completed' ? baseBackupStop(b.artifacts) : null,
    }));
  const decisions = planRetention(finished, policy);
  const stops = new Map(finished.map((b) => [b.id, b.base_backup_stop]));
  return { cluster, backups, policy, stops, window: recoveryWindowStart(finished, policy), decisions: new Map<string, Decision>(decisions.map((d) => [d.id, d])) };
}

/**
 * When a backup's base backups (one per continuous postgres component, in its artifacts'
 * base_backup) all stopped: a point-in-time restore of the cluster can start from it at the latest
 * stop. Null when it holds none; a stop_time that is not a time counts as none.
 */
export function baseBackupStop(artifacts: readonly { baseBackup: unknown }[]): Date | null {
  let latest: number | null = null;
  for (const a of artifacts) {
    const stop = (a.baseBackup as { stop_time?: unknown } | null)?.stop_time;
    const ms = typeof stop === 'string' ? Date.parse(stop) : Number.NaN;
    if (Number.isFinite(ms) && (latest === null || ms > latest)) latest = ms;
  }
  return latest === null ? null : new Date(latest);
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

export function createRetentionService(deps: { db: Db; ledger?: Ledger; now?: () => Date }) {
  const { db } = deps;
  /** The plan as GET .../retention answers it; with a draft, the plan that policy would make. */
  async function explain(tenantId: string, clusterId: string, draft?: PolicyDraft) {
    const p = await plan(db, tenantId, clusterId, draft && ((saved) => draftPolicy(saved, draft)));
    if (!p) throw new NotFound('cluster');
    return {
      cluster_id: clusterId,
      policy_id: p.cluster.policyId!,
      recovery_window: p.window && {
        interval: p.policy.recovery_window!,
        start: iso(p.window.start),
        replayed_backup_id: p.window.replayed_backup_id,
      },
      items: p.backups.map((b) => {
        const d = p.decisions.get(b.id);
        const inProgress = b.status === 'queued' || b.status === 'running';
        return {
          backup_id: b.id,
          trigger: b.trigger,
          status: b.status,
          created_at: iso(b.createdAt),
          base_backup_stop: iso(p.stops.get(b.id)),
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
    /**
     * Deletes the cluster's stored WAL that no kept base backup needs (src/modules/pitr/wal-prune.ts);
     * run after prune, so the backups it moved to `deleting` no longer hold WAL back. The caller
     * asks for a GC when something was deleted.
     */
    pruneWal: (tenantId: string, clusterId: string) => pruneWal(db, { tenantId, clusterId, now: deps.now?.() ?? new Date() }),
  };
}
export type RetentionService = ReturnType<typeof createRetentionService>;
