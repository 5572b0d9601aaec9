import type { Logger } from 'pino';
import type { Db } from '../../db/client.js';
import type { SecretBox } from '../../crypto/secrets.js';
import { getDriver, type PostgresTargetPolicy } from '../../components/index.js';
import { Sha256Meter } from '../../storage/checksum.js';
import { withLease } from '../../queue/lease.js';
import { ArtifactUnusable, findIntactCopy, type Stores } from '../backups/artifacts.js';
import { errorMessage } from '../backups/backups.jobs.js';
import { decryptComponent, type StoredComponent } from '../clusters/components.js';

export interface RestoreJobDeps {
  db: Db;
  stores: Stores;
  box: SecretBox;
  dataRoot: string;
  postgresTargets: PostgresTargetPolicy;
  workerId: string;
  now: () => Date;
  log: Logger;
  leaseMs: number;
  /** Aborted when the worker must stop now: the restore rolls back, the target stays as it was. */
  shutdown?: AbortSignal;
}

/**
 * Runs one restore. Every artifact is first read back in full and its sha256 checked (falling
 * back to the secondary copy); only when all are intact is any target touched. Each component
 * is then replaced by its driver (directory: extract beside, swap atomically; postgres: one
 * transaction). The target cluster is `active` again afterwards, whatever the outcome.
 */
export function createRestoreRunner(deps: RestoreJobDeps) {
  const { db, log } = deps;
  return async function runRestore(payload: { tenant_id: string; restore_id: string }): Promise<void> {
    const t = deps.now();
    const claimed = await db.restore.updateMany({
      where: { id: payload.restore_id, tenantId: payload.tenant_id, status: 'queued' },
      data: { status: 'running', startedAt: t, workerId: deps.workerId, leaseExpiresAt: new Date(t.getTime() + deps.leaseMs) },
    });
    if (claimed.count === 0) return;
    const r = await db.restore.findUniqueOrThrow({ where: { id: payload.restore_id }, include: { backup: { include: { artifacts: true } }, cluster: true } });
    const renew = () =>
      db.restore.updateMany({ where: { id: r.id, status: 'running', workerId: deps.workerId }, data: { leaseExpiresAt: new Date(deps.now().getTime() + deps.leaseMs) } });
    let failure: { component: string | null; message: string } | null = null;
    let current: string | null = null;
    try {
      await withLease(
        renew,
        async () => {
          const names = r.components as string[];
          const targets = new Map((r.cluster.components as StoredComponent[]).map((c) => [c.name, c]));
          const plan = [];
          for (const name of names) {
            current = name;
            const artifact = r.backup.artifacts.find((a) => a.component === name);
            const target = targets.get(name);
            if (!artifact || !target) throw new Error(`component "${name}" is no longer present in the backup or the target cluster`);
            plan.push({ name, artifact, target, copy: await findIntactCopy(artifact, deps.stores) });
          }
          for (const step of plan) {
            current = step.name;
            const source = await step.copy.store.get(step.artifact.key);
            const meter = new Sha256Meter();
            source.on('error', (err) => meter.destroy(err));
            deps.shutdown?.throwIfAborted();
            await getDriver(step.target.type).restore(decryptComponent(step.target, deps.box).config, source.pipe(meter), {
              dataRoot: deps.dataRoot,
              postgresTargets: deps.postgresTargets,
              ...(deps.shutdown && { signal: deps.shutdown }),
            });
            const got = meter.result().sha256;
            if (got !== step.artifact.sha256) throw new Error(`checksum of the ${step.copy.which} copy changed during the restore (expected sha256 ${step.artifact.sha256}, got ${got})`);
          }
        },
        log,
        deps.leaseMs,
      );
    } catch (err) {
      failure =
        err instanceof ArtifactUnusable
          ? { component: err.component, message: err.message }
          : deps.shutdown?.aborted
            ? { component: current, message: 'interrupted: the worker shut down before the restore finished' }
            : { component: current, message: errorMessage(err) };
    }
    const end = deps.now();
    await db.$transaction([
      db.restore.updateMany({
        where: { id: r.id, status: 'running' },
        data: failure
          ? { status: 'failed', completedAt: end, errorComponent: failure.component, errorMessage: failure.message, leaseExpiresAt: null }
          : { status: 'completed', completedAt: end, leaseExpiresAt: null },
      }),
      db.cluster.updateMany({ where: { id: r.clusterId, status: 'restoring' }, data: { status: 'active' } }),
    ]);
    log.info({ restore_id: r.id, failed: failure !== null }, 'restore finished');
  };
}
