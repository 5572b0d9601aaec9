import { randomUUID } from 'node:crypto';
import type { Db } from '../../db/client.js';
import { isUniqueViolation } from '../../db/errors.js';
import { Conflict, Invalid, NotFound, RateLimited } from '../../errors.js';
import { page } from '../../lib/cursor.js';
import type { Queues } from '../../queue/queues.js';
import { addInterval, subtractInterval } from '../../scheduling/interval.js';
import type { ClusterRepo } from '../clusters/clusters.repo.js';
import type { StoredComponent } from '../clusters/components.js';
import type { BackupRepo } from './backups.repo.js';
import { presentBackup } from './backups.present.js';
import type { BackupView } from './backups.schemas.js';
import { findAnswer, requestHash, saveAnswer } from './idempotency.js';

export interface BackupServiceDeps {
  db: Db;
  repo: BackupRepo;
  clusters: ClusterRepo;
  queues: Pick<Queues, 'add'>;
  now: () => Date;
  log: { warn(obj: object, msg: string): void };
}

export interface CreateAnswer {
  backup: BackupView;
  location: string;
  replayed: boolean;
}

export function createBackupService(deps: BackupServiceDeps) {
  const { db, repo, clusters, now } = deps;

  async function enqueueRun(tenantId: string, backupId: string) {
    await deps.queues
      .add('backups', 'run-backup', { tenant_id: tenantId, backup_id: backupId }, backupId)
      .catch((err: unknown) => deps.log.warn({ err, backup_id: backupId }, 'could not enqueue backup; the reconciler will'));
  }

  /**
   * One transaction under the cluster's row lock decides everything (idempotency, cluster state,
   * policy, rate limit, one-at-a-time), so concurrent requests are serialised and can never both pass.
   */
  async function tryCreateManual(tenantId: string, clusterId: string, body: unknown, key: string | undefined): Promise<CreateAnswer> {
    const t = now();
    const hash = key ? requestHash(`POST /v1/clusters/${clusterId}/backups`, body) : '';
    const result = await db.$transaction(async (tx) => {
      if (!(await clusters.lock(tx, tenantId, clusterId))) throw new NotFound('cluster');
      if (key) {
        const prior = await findAnswer(tx, tenantId, key, hash, t);
        if (prior) return { backup: prior.body as BackupView, location: prior.location ?? '', replayed: true, created: false };
      }
      const cluster = (await clusters.findWithPolicy(tx, tenantId, clusterId))!;
      if (cluster.status !== 'active') throw new Conflict(`the cluster is ${cluster.status}; backups are not possible now`);
      const policy = cluster.policy!;
      if (policy.manualCount === 0)
        throw new Invalid('manual backups are disabled by the cluster\'s policy (manual_count: 0)', [
          { path: 'policy.manual_count', message: 'is 0: manual backups are disabled' },
        ]);
      if (policy.manualRateLimit) {
        const latest = await repo.latestManualSince(tx, clusterId, subtractInterval(t, policy.manualRateLimit, policy.timezone));
        if (latest) {
          const freeAt = addInterval(latest.createdAt, policy.manualRateLimit, policy.timezone);
          const retryAfter = Math.max(1, Math.ceil((freeAt.getTime() - t.getTime()) / 1000));
          throw new RateLimited(
            `at most one manual backup per ${policy.manualRateLimit} for this cluster; the next is possible at ${freeAt.toISOString()} (deleting the recent one frees the slot)`,
            retryAfter,
          );
        }
      }
      if (await clusters.hasActiveWork(tx, clusterId)) throw new Conflict('a backup or restore of this cluster is already queued or running');
      const row = await repo.create(tx, {
        id: randomUUID(),
        tenantId,
        clusterId,
        trigger: 'manual',
        status: 'queued',
        createdAt: t,
        components: (cluster.components as StoredComponent[]).map((c) => ({ name: c.name, status: 'queued' })),
      });
      const backup = presentBackup(row);
      const location = `/v1/clusters/${clusterId}/backups/${row.id}`;
      if (key) await saveAnswer(tx, tenantId, key, hash, { status: 202, body: backup, location }, t);
      return { backup, location, replayed: false, created: true };
    });
    if (result.created) await enqueueRun(tenantId, result.backup.id);
    return { backup: result.backup, location: result.location, replayed: result.replayed };
  }

  return {
    enqueueRun,
    async createManual(tenantId: string, clusterId: string, body: unknown, idempotencyKey?: string): Promise<CreateAnswer> {
      try {
        return await tryCreateManual(tenantId, clusterId, body, idempotencyKey);
      } catch (err) {
        // The same key raced on another cluster: the winner's record now decides.
        if (idempotencyKey && isUniqueViolation(err)) return tryCreateManual(tenantId, clusterId, body, idempotencyKey);
        throw err;
      }
    },
    async get(tenantId: string, clusterId: string, id: string) {
      const b = await repo.find(db, tenantId, clusterId, id);
      if (!b) throw new NotFound('backup');
      return presentBackup(b);
    },
    async list(tenantId: string, clusterId: string, q: { status?: string | undefined; trigger?: string | undefined; limit: number; cursor?: string | undefined }) {
      if (!(await clusters.find(db, tenantId, clusterId))) throw new NotFound('cluster');
      const { items, nextCursor } = page(await repo.list(tenantId, clusterId, q), q.limit);
      return { items: items.map(presentBackup), next_cursor: nextCursor };
    },
    /** Queues a re-read and re-hash of every stored copy; the outcome lands in `verification`. */
    async verify(tenantId: string, clusterId: string, id: string) {
      const b = await repo.find(db, tenantId, clusterId, id);
      if (!b) throw new NotFound('backup');
      if (b.status !== 'completed') throw new Conflict(`only a completed backup can be verified (this one is ${b.status})`);
      if (b.verifyStatus !== 'queued' && b.verifyStatus !== 'running') {
        await db.backup.updateMany({ where: { id, status: 'completed' }, data: { verifyStatus: 'queued', verifyMessage: null } });
        await deps.queues
          .add('maintenance', 'verify-backup', { tenant_id: tenantId, backup_id: id }, id)
          .catch((err: unknown) => deps.log.warn({ err, backup_id: id }, 'could not enqueue verification; the reconciler will'));
      }
      return presentBackup((await repo.find(db, tenantId, clusterId, id))!);
    },
    /** Artifacts go first (by a job), then the record; a running backup or one a restore reads cannot be deleted. */
    async delete(tenantId: string, clusterId: string, id: string) {
      const row = await db.$transaction(async (tx) => {
        if (!(await clusters.lock(tx, tenantId, clusterId))) throw new NotFound('cluster');
        const b = await repo.find(tx, tenantId, clusterId, id);
        if (!b) throw new NotFound('backup');
        if (b.status === 'deleting') return b;
        if (b.status === 'running') throw new Conflict('the backup is running; delete it once it has finished');
        const readers = await tx.restore.count({ where: { backupId: id, status: { in: ['queued', 'running'] } } });
        if (readers > 0) throw new Conflict('a restore is reading this backup');
        if (!(await repo.markDeleting(tx, tenantId, id))) throw new Conflict('the backup is running; delete it once it has finished');
        return (await repo.find(tx, tenantId, clusterId, id))!;
      });
      await deps.queues
        .add('maintenance', 'delete-backup', { tenant_id: tenantId, backup_id: id }, id)
        .catch((err: unknown) => deps.log.warn({ err, backup_id: id }, 'could not enqueue backup deletion; the reconciler will'));
      return presentBackup(row);
    },
  };
}
export type BackupService = ReturnType<typeof createBackupService>;
