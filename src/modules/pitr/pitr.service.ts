import { randomUUID } from 'node:crypto';
import type { Db } from '../../db/client.js';
import type { SecretBox } from '../../crypto/secrets.js';
import type { TargetPolicy } from '../../components/postgres-targets.js';
import { withClient } from '../../components/pitr/checks.js';
import { ComponentError } from '../../components/types.js';
import { Conflict, Invalid, NotFound } from '../../errors.js';
import { iso } from '../../http/schemas.js';
import type { Queues } from '../../queue/queues.js';
import type { Ledger } from '../../jobs/ledger.js';
import type { ClusterRepo } from '../clusters/clusters.repo.js';
import { isContinuous, type StoredComponent } from '../clusters/components.js';
import type { BaseBackupRecord } from '../backups/backups.jobs.js';
import { presentRestore } from '../restores/restores.service.js';
import { streamConnection } from './slots.js';
import type { PointInTimeRestoreInput, RecoveryWindowView } from './pitr.schemas.js';

export interface PitrServiceDeps {
  db: Db;
  ledger: Ledger;
  clusters: ClusterRepo;
  box: SecretBox;
  targets: TargetPolicy;
  queues: Pick<Queues, 'add'>;
  now: () => Date;
  log: { warn(o: object, m: string): void };
}

/** A completed base backup of a stream: the backup it belongs to and where it can be replayed from. */
export interface BaseBackupOf {
  backupId: string;
  base: BaseBackupRecord;
  stopTime: Date;
}

/** The completed base backups of a continuous component whose WAL is in `streamId`, oldest first. */
export async function baseBackupsOf(db: Db, clusterId: string, component: string, streamId: string): Promise<BaseBackupOf[]> {
  const rows = await db.backupArtifact.findMany({
    where: { component, type: 'postgres', backup: { clusterId, status: 'completed' }, NOT: { baseBackup: { equals: null as never } } },
    select: { backupId: true, baseBackup: true },
  });
  return rows
    .map((r) => ({ backupId: r.backupId, base: r.baseBackup as unknown as BaseBackupRecord }))
    .filter((r) => r.base && r.base.stream_id === streamId && typeof r.base.stop_time === 'string')
    .map((r) => ({ ...r, stopTime: new Date(r.base.stop_time) }))
    .sort((a, b) => a.stopTime.getTime() - b.stopTime.getTime());
}

/**
 * The recovery window of continuous components (SPEC section 13) and restores to a point in time
 * inside it. A point-in-time restore writes a NEW database, never the component's own.
 */
export function createPitrService(deps: PitrServiceDeps) {
  const { db } = deps;

  async function continuousComponents(tenantId: string, clusterId: string) {
    const cluster = await deps.clusters.find(db, tenantId, clusterId);
    if (!cluster) throw new NotFound('cluster');
    return { cluster, components: (cluster.components as StoredComponent[]).filter(isContinuous) };
  }

  const held = (st: { leaseExpiresAt: Date | null } | null) => st?.leaseExpiresAt != null && st.leaseExpiresAt.getTime() > deps.now().getTime();

  async function windowOf(clusterId: string, component: string) {
    const stream = await db.walStream.findFirst({ where: { clusterId, component, status: 'active' } });
    const bases = stream ? await baseBackupsOf(db, clusterId, component, stream.id) : [];
    return { stream, bases, earliest: bases[0]?.stopTime ?? null, latest: stream?.latestRestorableTime ?? null };
  }

  return {
    async recoveryWindow(tenantId: string, clusterId: string): Promise<RecoveryWindowView> {
      const { components } = await continuousComponents(tenantId, clusterId);
      const out: RecoveryWindowView['components'] = [];
      for (const c of components) {
        const w = await windowOf(clusterId, c.name);
        out.push({
          component: c.name,
          earliest_restorable_time: iso(w.earliest),
          // Nothing before the first base backup can be restored: no window until there is one.
          latest_restorable_time: w.earliest ? iso(w.latest) : null,
          lag_bytes: w.stream?.lagBytes === null || w.stream?.lagBytes === undefined ? null : Number(w.stream.lagBytes),
          // A stream no archiver holds is stopped, whatever its last holder reported.
          state: (held(w.stream) ? w.stream!.state : 'stopped') as 'streaming' | 'behind' | 'stopped',
          error: w.stream?.error ?? (held(w.stream) ? null : 'no archiver is streaming this component: is a process with the archiver role running?'),
        });
      }
      return { components: out };
    },

    /**
     * Checks the request against the window and the target server, then queues the restore: its
     * backup is the newest base backup that stopped at or before point_in_time.
     */
    async createRestore(tenantId: string, clusterId: string, input: PointInTimeRestoreInput) {
      const { cluster, components } = await continuousComponents(tenantId, clusterId);
      if (cluster.status === 'deleting') throw new Conflict('the cluster is being deleted');
      let component: StoredComponent;
      if (input.components) {
        const name = input.components[0]!;
        const c = (cluster.components as StoredComponent[]).find((x) => x.name === name);
        if (!c) throw new Invalid('invalid restore', [{ path: 'body.components.0', message: `the cluster has no component "${name}"` }]);
        if (!isContinuous(c)) throw new Invalid('invalid restore', [{ path: 'body.components.0', message: `component "${name}" is not a continuous postgres component (config.continuous: true), so it has no point in time to restore` }]);
        component = c;
      } else if (components.length === 1) {
        component = components[0]!;
      } else {
        throw new Invalid('invalid restore', [
          {
            path: 'body.components',
            message: components.length === 0 ? 'the cluster has no continuous postgres component (config.continuous: true)' : `the cluster has ${components.length} continuous components (${components.map((c) => c.name).join(', ')}): name one in components`,
          },
        ]);
      }
      const at = new Date(input.point_in_time);
      const w = await windowOf(clusterId, component.name);
      if (!w.stream || !w.earliest || !w.latest) {
        throw new Invalid('invalid restore', [{ path: 'body.point_in_time', message: `component "${component.name}" has no recovery window yet: it needs a completed base backup (a backup of the cluster) and archived WAL after it` }]);
      }
      if (at < w.earliest || at > w.latest) {
        throw new Invalid('invalid restore', [
          { path: 'body.point_in_time', message: `${input.point_in_time} is outside the recovery window of component "${component.name}": from ${w.earliest.toISOString()} to ${w.latest.toISOString()}` },
        ]);
      }
      const base = [...w.bases].reverse().find((b) => b.stopTime <= at)!;

      // The new database must not exist (checked again by the worker, which creates it).
      const conn = await streamConnection(deps, { urlEnc: w.stream.urlEnc }).catch((err: unknown) => {
        throw new Invalid('invalid restore', [{ path: 'body.target_database', message: err instanceof ComponentError ? err.message : 'the component\'s server is refused by the target policy' }]);
      });
      const exists = await withClient(conn, 'checking the target database', async (c) => (await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [input.target_database])).rowCount === 1).catch(
        (err: unknown) => {
          throw new Invalid('invalid restore', [{ path: 'body.target_database', message: err instanceof Error ? err.message : String(err) }]);
        },
      );
      if (exists) throw new Conflict(`database "${input.target_database}" already exists on the component's server; a point-in-time restore creates a new database: name another`);

      // A job of the cluster like any restore (one active job per cluster, SPEC rule 2): it
      // holds the cluster's slot until it ends, though it writes only the new database.
      const row = await db.$transaction(async (tx) => {
        if (!(await deps.clusters.lock(tx, tenantId, clusterId))) throw new NotFound('cluster');
        const locked = (await deps.clusters.find(tx, tenantId, clusterId))!;
        if (locked.status !== 'active') throw new Conflict(`the cluster is ${locked.status}`);
        if (locked.activeJobId !== null) throw new Conflict('a backup or restore of the cluster is already queued or running; try again when it has ended');
        const queued = await deps.ledger.queueRestore(tx, { id: randomUUID(), tenantId, backupId: base.backupId, sourceClusterId: clusterId, clusterId, components: [component.name], now: deps.now() });
        return tx.restore.update({ where: { id: queued.id }, data: { pointInTime: at, targetDatabase: input.target_database } });
      });
      await deps.queues
        .add('restores', 'run-restore', { tenant_id: tenantId, restore_id: row.id }, row.id)
        .catch((err: unknown) => deps.log.warn({ err, restore_id: row.id }, 'could not enqueue restore; the reconciler will'));
      return { restore: presentRestore(row), location: `/v1/clusters/${clusterId}/restores/${row.id}` };
    },
  };
}
export type PitrService = ReturnType<typeof createPitrService>;
