import { randomUUID } from 'node:crypto';
import type { Db } from '../../db/client.js';
import { isUniqueViolation } from '../../db/errors.js';
import { Conflict, Invalid, NotFound, RateLimited } from '../../errors.js';
import { page } from '../../lib/cursor.js';
import type { Queues } from '../../queue/queues.js';
import { addInterval, subtractInterval } from '../../scheduling/interval.js';
import type { ClusterRepo } from '../clusters/clusters.repo.js';
import type { Ledger } from '../../jobs/ledger.js';
import type { BackupRepo } from './backups.repo.js';
import { presentBackup } from './backups.present.js';
import type { BackupView } from './backups.schemas.js';
import { findAnswer, requestHash } from './idempotency.js';

export interface BackupServiceDeps {
  db: Db;
  ledger: Ledger;
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

/** How a freshly queued manual backup looks (the answer, and what an Idempotency-Key replays). */
function queuedManual(id: string, clusterId: string, createdAt: Date, components: { name: string; status: string }[], live = true): BackupView {
  return presentBackup({
    id,
    tenantId: '',
    clusterId,
    trigger: 'manual',
    status: 'queued',
    live,
    createdAt,
    startedAt: null,
    completedAt: null,
    sizeBytes: null,
    storedBytes: null,
    pausedMs: null,
    hookState: null,
    hookPausedAt: null,
    hookClaimedAt: null,
    bytesDone: 0n,
    progress: null,
    components,
    errorComponent: null,
    errorMessage: null,
    verifyStatus: null,
    verifiedAt: null,
    verifyMessage: null,
    replicationStatus: null,
    replicationAttempts: 0,
    replicationNextAt: null,
    replicationError: null,
    artifacts: [],
  });
}

// Each cluster's policy as last seen: the decision statement re-checks it, so a stale entry only
// costs one more round trip.
const POLICY_CACHE_MAX = 10_000;

export function createBackupService(deps: BackupServiceDeps) {
  const { db, repo, clusters, now, ledger } = deps;
  const policyOf = new Map<string, { rate: string | null; timezone: string }>();

  async function enqueueRun(tenantId: string, backupId: string) {
    await deps.queues
      .add('backups', 'run-backup', { tenant_id: tenantId, backup_id: backupId }, backupId)
      .catch((err: unknown) => deps.log.warn({ err, backup_id: backupId }, 'could not enqueue backup; the reconciler will'));
  }

  /**
   * One statement decides (cluster state, policy, rate limit, one at a time) on the cluster's
   * locked row and queues the backup, so concurrent requests can never both pass. With an
   * Idempotency-Key the same statement stores the answer; a concurrent request with that key
   * fails on the record's key and, retried, replays it.
   */
  async function tryCreateManual(tenantId: string, clusterId: string, body: unknown, key: string | undefined): Promise<CreateAnswer> {
    const t = now();
    const location = (id: string) => `/v1/clusters/${clusterId}/backups/${id}`;
    const hash = key ? requestHash(`POST /v1/clusters/${clusterId}/backups`, body) : '';
    if (key) {
      const prior = await findAnswer(db, tenantId, key, hash, t);
      if (prior) return { backup: prior.body as BackupView, location: prior.location ?? '', replayed: true };
    }
    let policy = policyOf.get(clusterId) ?? { rate: null, timezone: '' };
    for (let attempt = 0; ; attempt++) {
      const since = policy.rate ? subtractInterval(t, policy.rate, policy.timezone) : null;
      const id = randomUUID();
      const answer = key ? { key, hash, body: queuedManual(id, clusterId, t, []), location: location(id) } : null;
      const live = (body as { live?: boolean } | null | undefined)?.live ?? null;
      const v = await ledger.queueManualBackup({ id, tenantId, clusterId, now: t, policy, since, idempotency: answer, live });
      switch (v.verdict) {
        case 'ok':
          return { backup: queuedManual(id, clusterId, t, v.components, v.live), location: location(id), replayed: false };
        case 'nothing_to_pause':
          throw new Invalid('a consistent backup (live: false) needs a pre_backup hook to pause the cluster; this cluster has none, so there is nothing to pause', [
            { path: 'body.live', message: 'false needs the cluster to have a pre_backup hook (PATCH /v1/clusters/{id} hooks)' },
          ]);
        case 'stale_policy':
          policy = { rate: v.rate, timezone: v.timezone };
          if (policyOf.size >= POLICY_CACHE_MAX) policyOf.clear();
          policyOf.set(clusterId, policy);
          if (attempt < 3) continue;
          throw new Conflict('the cluster\'s policy is changing; try again');
        case 'not_found':
          throw new NotFound('cluster');
        case 'not_active':
          throw new Conflict(`the cluster is ${v.status}; backups are not possible now`);
        case 'manual_disabled':
          throw new Invalid('manual backups are disabled by the cluster\'s policy (manual_count: 0)', [
            { path: 'policy.manual_count', message: 'is 0: manual backups are disabled' },
          ]);
        case 'rate_limited': {
          const freeAt = addInterval(v.lastManualAt, policy.rate!, policy.timezone);
          const retryAfter = Math.max(1, Math.ceil((freeAt.getTime() - t.getTime()) / 1000));
          throw new RateLimited(
            `at most one manual backup per ${policy.rate} for this cluster; the next is possible at ${freeAt.toISOString()} (deleting the recent one frees the slot)`,
            retryAfter,
          );
        }
        case 'busy':
          throw new Conflict('a backup or restore of this cluster is already queued or running');
      }
    }
  }

  return {
    enqueueRun,
    async createManual(tenantId: string, clusterId: string, body: unknown, idempotencyKey?: string): Promise<CreateAnswer> {
      let answer: CreateAnswer;
      try {
        answer = await tryCreateManual(tenantId, clusterId, body, idempotencyKey);
      } catch (err) {
        // The same key raced: the winner's record now decides (a replay, or 422 for another request).
        if (idempotencyKey && (isUniqueViolation(err) || err instanceof Conflict || err instanceof RateLimited)) {
          const prior = await findAnswer(db, tenantId, idempotencyKey, requestHash(`POST /v1/clusters/${clusterId}/backups`, body), now());
          if (prior) return { backup: prior.body as BackupView, location: prior.location ?? '', replayed: true };
          if (isUniqueViolation(err)) return tryCreateManual(tenantId, clusterId, body, idempotencyKey);
        }
        throw err;
      }
      if (!answer.replayed) await enqueueRun(tenantId, answer.backup.id);
      return answer;
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
        if (!(await ledger.markDeleting(tx, clusterId, id))) throw new Conflict('the backup is running; delete it once it has finished');
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
