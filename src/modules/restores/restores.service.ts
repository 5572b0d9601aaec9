import { randomUUID } from 'node:crypto';
import type { Db } from '../../db/client.js';
import { Conflict, Invalid, NotFound, type FieldProblem } from '../../errors.js';
import { iso } from '../../http/schemas.js';
import { afterCursor, newestFirst, page } from '../../lib/cursor.js';
import type { Queues } from '../../queue/queues.js';
import type { ClusterRepo } from '../clusters/clusters.repo.js';
import type { StoredComponent } from '../clusters/components.js';
import type { RestoreView } from './restores.schemas.js';
import type { Ledger } from '../../jobs/ledger.js';
import type { BackupFilesService } from '../backups/backups.files.js';

type RestoreRow = NonNullable<Awaited<ReturnType<Db['restore']['findFirst']>>>;

export function presentRestore(r: RestoreRow): RestoreView {
  return {
    id: r.id,
    backup_id: r.backupId,
    source_cluster_id: r.sourceClusterId,
    cluster_id: r.clusterId,
    components: r.components as string[],
    paths: (r.paths as string[] | null) ?? null,
    point_in_time: iso(r.pointInTime),
    target_database: r.targetDatabase,
    status: r.status,
    error: r.errorMessage === null ? null : { component: r.errorComponent, message: r.errorMessage },
    created_at: iso(r.createdAt),
    started_at: iso(r.startedAt),
    completed_at: iso(r.completedAt),
  };
}

export interface RestoreServiceDeps {
  db: Db;
  ledger: Ledger;
  clusters: ClusterRepo;
  queues: Pick<Queues, 'add'>;
  now: () => Date;
  log: { warn(o: object, m: string): void };
  /** Reads backups' manifests: checks the `paths` of partial restores. */
  files: Pick<BackupFilesService, 'checkPaths'>;
}

type CreateInput = { target_cluster_id?: string | undefined; components?: string[] | undefined; paths?: string[] | undefined };

export function createRestoreService(deps: RestoreServiceDeps) {
  const { db, clusters, now, ledger } = deps;

  /**
   * A partial restore names paths of exactly one directory component, and each must be in the
   * backup's manifest. Read before the transaction (the store is no place to wait with row locks
   * held); a completed backup's artifacts never change, so what is read here stays true. A
   * backup that is missing or not completed is left to the transaction's own answers.
   */
  async function checkPaths(tenantId: string, sourceClusterId: string, backupId: string, input: CreateInput, paths: string[]) {
    const backup = await db.backup.findFirst({ where: { id: backupId, tenantId, clusterId: sourceClusterId }, include: { artifacts: true } });
    if (!backup || backup.status !== 'completed') return;
    const names = input.components ? [...new Set(input.components)] : backup.artifacts.map((a) => a.component);
    const artifact = names.length === 1 ? backup.artifacts.find((a) => a.component === names[0]) : undefined;
    if (names.length !== 1) {
      throw new Invalid('invalid restore', [{ path: 'body.paths', message: `a partial restore needs exactly one component (this one restores ${names.length}: name it in components)` }]);
    }
    if (!artifact) return; // the transaction names the unknown component
    if (artifact.type !== 'directory') {
      throw new Invalid('invalid restore', [{ path: 'body.paths', message: `component "${artifact.component}" is a ${artifact.type} component; only a directory component can be restored in part` }]);
    }
    await deps.files.checkPaths(tenantId, artifact, paths);
  }

  return {
    /**
     * Under the row locks of both clusters (taken in id order, so two crossing restores cannot
     * deadlock): the backup must be completed, the components must exist in the backup and in
     * the target with the same type, and the target must be idle. The target turns `restoring`.
     */
    async create(tenantId: string, sourceClusterId: string, backupId: string, input: CreateInput) {
      const targetId = input.target_cluster_id ?? sourceClusterId;
      const paths = input.paths ? [...new Set(input.paths)] : null;
      if (paths) await checkPaths(tenantId, sourceClusterId, backupId, input, paths);
      const row = await db.$transaction(async (tx) => {
        // Which error a missing cluster gives must not depend on how the ids sort: a missing (or
        // another tenant's) cluster in the path is always 404, whatever the body names.
        const missing = new Set<string>();
        for (const id of [...new Set([sourceClusterId, targetId])].sort()) {
          if (!(await clusters.lock(tx, tenantId, id))) missing.add(id);
        }
        if (missing.has(sourceClusterId)) throw new NotFound('cluster');
        if (missing.has(targetId)) throw new Invalid('invalid restore', [{ path: 'body.target_cluster_id', message: 'no such cluster' }]);
        const backup = await tx.backup.findFirst({ where: { id: backupId, tenantId, clusterId: sourceClusterId }, include: { artifacts: true } });
        if (!backup) throw new NotFound('backup');
        if (backup.status !== 'completed') throw new Conflict(`only a completed backup can be restored (this one is ${backup.status})`);
        const target = (await clusters.find(tx, tenantId, targetId))!;
        const targetComponents = new Map((target.components as StoredComponent[]).map((c) => [c.name, c]));
        const source = targetId === sourceClusterId ? target : (await clusters.find(tx, tenantId, sourceClusterId))!;
        const sourceComponents = new Map((source.components as StoredComponent[]).map((c) => [c.name, c]));
        const inBackup = new Set(backup.artifacts.map((a) => a.component));
        const wanted = input.components ? [...new Set(input.components)] : [...inBackup].sort();
        const errors: FieldProblem[] = [];
        wanted.forEach((name, i) => {
          const path = input.components ? `body.components.${i}` : 'body.components';
          if (!inBackup.has(name)) errors.push({ path, message: `the backup has no component "${name}"` });
          else if (!targetComponents.has(name)) errors.push({ path, message: `the target cluster has no component "${name}"` });
          else if (sourceComponents.get(name) && targetComponents.get(name)!.type !== sourceComponents.get(name)!.type)
            errors.push({ path, message: `component "${name}" is a ${sourceComponents.get(name)!.type} in the backup but a ${targetComponents.get(name)!.type} in the target` });
        });
        if (errors.length) throw new Invalid('invalid restore', errors);
        if (target.status !== 'active') throw new Conflict(`the target cluster is ${target.status}`);
        if (target.activeJobId !== null) throw new Conflict('a backup or restore of the target cluster is already queued or running');
        if (source.status === 'deleting') throw new Conflict('the cluster of this backup is being deleted');
        const queued = await ledger.queueRestore(tx, { id: randomUUID(), tenantId, backupId, sourceClusterId, clusterId: targetId, components: wanted, now: now() });
        // Not lifecycle state: what the queued restore replaces, set in the transaction that queues it.
        return paths ? tx.restore.update({ where: { id: queued.id }, data: { paths } }) : queued;
      });
      await deps.queues
        .add('restores', 'run-restore', { tenant_id: tenantId, restore_id: row.id }, row.id)
        .catch((err: unknown) => deps.log.warn({ err, restore_id: row.id }, 'could not enqueue restore; the reconciler will'));
      return { restore: presentRestore(row), location: `/v1/clusters/${targetId}/restores/${row.id}` };
    },
    /** Restores into this cluster, and restores read from this cluster's backups. */
    async list(tenantId: string, clusterId: string, q: { limit: number; cursor?: string | undefined }) {
      if (!(await clusters.find(db, tenantId, clusterId))) throw new NotFound('cluster');
      const rows = await db.restore.findMany({
        where: { tenantId, OR: [{ clusterId }, { sourceClusterId: clusterId }], ...afterCursor(q.cursor) },
        orderBy: newestFirst,
        take: q.limit + 1,
      });
      const { items, nextCursor } = page(rows, q.limit);
      return { items: items.map(presentRestore), next_cursor: nextCursor };
    },
    async get(tenantId: string, clusterId: string, id: string) {
      const r = await db.restore.findFirst({ where: { id, tenantId, OR: [{ clusterId }, { sourceClusterId: clusterId }] } });
      if (!r) throw new NotFound('restore');
      return presentRestore(r);
    },
  };
}
export type RestoreService = ReturnType<typeof createRestoreService>;
