import type { Logger } from 'pino';
import type { Db } from '../../db/client.js';
import type { SecretBox } from '../../crypto/secrets.js';
import { expectDigest, getDriver, type PostgresTargetPolicy } from '../../components/index.js';
import { withLease } from '../../queue/lease.js';
import { ArtifactUnusable, findIntactCopy, type Stores } from '../backups/artifacts.js';
import { errorMessage, HAND_BACK_DELAY_MS } from '../backups/backups.jobs.js';
import type { Ledger } from '../../jobs/ledger.js';
import { RetryLater } from '../../queue/worker.js';
import { decryptComponent, type StoredComponent } from '../clusters/components.js';

export interface RestoreJobDeps {
  db: Db;
  ledger: Ledger;
  stores: Stores;
  box: SecretBox;
  /** The folder of a tenant's directory components (DATA_ROOT/<tenant dir>), checked again here. */
  dataRootOf: (tenantId: string) => Promise<string>;
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
  const { db, log, ledger } = deps;
  return async function runRestore(payload: { tenant_id: string; restore_id: string }): Promise<void> {
    if (deps.shutdown?.aborted) throw new RetryLater(HAND_BACK_DELAY_MS, 'this worker is shutting down');
    const started = await ledger.start('restore', payload.tenant_id, payload.restore_id, { workerId: deps.workerId, now: deps.now(), leaseMs: deps.leaseMs });
    if (!started) return;
    const r = await db.restore.findUniqueOrThrow({ where: { id: payload.restore_id }, include: { backup: { include: { artifacts: true } }, cluster: true } });
    const renew = () => ledger.renew('restore', r.id, { workerId: deps.workerId, now: deps.now(), leaseMs: deps.leaseMs });
    let failure: { component: string | null; message: string } | null = null;
    let current: string | null = null;
    try {
      await withLease(
        renew,
        async () => {
          const names = r.components as string[];
          const targets = new Map((r.cluster.components as StoredComponent[]).map((c) => [c.name, c]));
          const dataRoot = await deps.dataRootOf(r.tenantId);
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
            deps.shutdown?.throwIfAborted();
            // The copy found intact above is read once more and applied; the driver hashes exactly
            // the bytes it applies and refuses them before its swap or COMMIT unless they match.
            const source = await step.copy.store.get(step.artifact.key);
            await getDriver(step.target.type).restore(decryptComponent(step.target, deps.box).config, source, {
              dataRoot,
              postgresTargets: deps.postgresTargets,
              log,
              verify: expectDigest(step.artifact, `${step.copy.which} copy`),
              ...(deps.shutdown && { signal: deps.shutdown }),
            });
          }
        },
        log,
        deps.leaseMs,
      );
    } catch (err) {
      if (deps.shutdown?.aborted) {
        // Rolled back by the driver: hand it back so another worker restores it from the start.
        const back = await ledger.handBack('restore', r.id, deps.workerId);
        log.info({ restore_id: r.id, handed_back: back }, 'restore interrupted by shutdown; handed back');
        if (back) throw new RetryLater(HAND_BACK_DELAY_MS, 'handed back at shutdown');
        return;
      }
      log.warn({ err, restore_id: r.id, component: current }, 'restore failed');
      failure = err instanceof ArtifactUnusable ? { component: err.component, message: errorMessage(err) } : { component: current, message: errorMessage(err) };
    }
    const end = deps.now();
    if (failure) await ledger.fail('restore', r.id, failure, { now: end });
    else await ledger.complete('restore', r.id, { completedAt: end });
    log.info({ restore_id: r.id, failed: failure !== null }, 'restore finished');
  };
}
