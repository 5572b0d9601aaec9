import type { Logger } from 'pino';
import type { Db } from '../../db/client.js';
import type { SecretBox } from '../../crypto/secrets.js';
import { getDriver, type TargetPolicy } from '../../components/index.js';
import { withLease } from '../../queue/lease.js';
import type { RepoService } from '../../repo/service.js';
import { IntegrityError } from '../../repo/types.js';
import { describeFailure, HAND_BACK_DELAY_MS } from '../backups/backups.jobs.js';
import type { Ledger } from '../../jobs/ledger.js';
import { RetryLater } from '../../queue/worker.js';
import { decryptComponent, type StoredComponent } from '../clusters/components.js';
import type { HookCaller } from '../hooks/hooks.js';
import { beginPause, type Pause } from '../hooks/pause.js';
import { postgresConnection, restoreDump, type PostgresConfig } from '../../components/postgres.js';
import { copyDatabase } from '../../components/pitr/scratch.js';
import { baseBackupOf, dumpScratch, replayToScratch, type BaseBackupArtifact } from '../pitr/pitr-restore.js';

export interface RestoreJobDeps {
  db: Db;
  ledger: Ledger;
  repo: RepoService;
  box: SecretBox;
  /** The folder of a tenant's directory components (DATA_ROOT/<tenant dir>), checked again here. */
  dataRootOf: (tenantId: string) => Promise<string>;
  targets: TargetPolicy;
  workerId: string;
  now: () => Date;
  log: Logger;
  leaseMs: number;
  /** Calls the target cluster's pre_restore / post_restore hooks around the restore. */
  hooks: HookCaller;
  /** Aborted when the worker must stop now: the restore rolls back, the target stays as it was. */
  shutdown?: AbortSignal;
  /** Scratch instances of point-in-time and base backup restores (PITR_WORK_DIR, PITR_SCRATCH_USER). */
  pitr?: { workDir: string; scratchUser: string };
}

/**
 * Runs one restore. Every chunk is read by byte range from its pack (falling back to the
 * secondary copy pack by pack) and verified before anything reaches a target; each component is
 * replaced by its driver (directory: materialized beside, made durable, swapped atomically;
 * postgres: one transaction, committed only once every chunk verified). When several components
 * are restored, all of their chunks are first read and checked, so a damaged second component
 * does not leave the first one replaced. The target cluster is `active` again afterwards,
 * whatever the outcome.
 */
export function createRestoreRunner(deps: RestoreJobDeps) {
  const { db, log, ledger, repo } = deps;
  return async function runRestore(payload: { tenant_id: string; restore_id: string }): Promise<void> {
    if (deps.shutdown?.aborted) throw new RetryLater(HAND_BACK_DELAY_MS, 'this worker is shutting down');
    const started = await ledger.start('restore', payload.tenant_id, payload.restore_id, { workerId: deps.workerId, now: deps.now(), leaseMs: deps.leaseMs });
    if (!started) return;
    const r = await db.restore.findUniqueOrThrow({ where: { id: payload.restore_id }, include: { backup: { include: { artifacts: true } }, cluster: true } });
    const renew = () => ledger.renew('restore', r.id, { workerId: deps.workerId, now: deps.now(), leaseMs: deps.leaseMs });
    let failure: { component: string | null; message: string } | null = null;
    let current: string | null = null;
    let pause: Pause | null = null;
    try {
      await withLease(
        renew,
        async () => {
          if (r.pointInTime && r.targetDatabase) {
            // Into a new database: nothing of the cluster is replaced, so no pause.
            current = (r.components as string[])[0] ?? null;
            await restorePointInTime(deps, { ...r, pointInTime: r.pointInTime, targetDatabase: r.targetDatabase });
            return;
          }
          // pre_restore stops the target's components (SAP's procedure) before anything is
          // written; post_restore starts them again afterwards, whatever the outcome.
          const begun = await beginPause({ db, hooks: deps.hooks, now: deps.now, log }, { kind: 'restore', tenantId: r.tenantId, cluster: r.cluster, jobId: r.id, live: false });
          if (!begun.ok) throw new HookRefused(begun.component, begun.message);
          pause = begun.pause;
          const names = r.components as string[];
          const paths = (r.paths as string[] | null) ?? undefined;
          const targets = new Map((r.cluster.components as StoredComponent[]).map((c) => [c.name, c]));
          const dataRoot = await deps.dataRootOf(r.tenantId);
          const source = await repo.source(r.tenantId, {
            ...(deps.shutdown && { signal: deps.shutdown }),
            onFallback: (pack, problem) => log.warn({ restore_id: r.id, pack, problem }, 'primary copy of a pack failed; reading the secondary'),
          });
          const plan = [];
          for (const name of names) {
            current = name;
            const artifact = r.backup.artifacts.find((a) => a.component === name);
            const target = targets.get(name);
            if (!artifact || !target) throw new Error(`component "${name}" is no longer present in the backup or the target cluster`);
            plan.push({ name, artifact, target });
          }
          if (plan.length > 1) {
            // All or nothing across components: every chunk of every component verifies first.
            for (const step of plan) {
              current = step.name;
              await drain(source, repo, step.artifact);
            }
          }
          for (const step of plan) {
            current = step.name;
            deps.shutdown?.throwIfAborted();
            if (baseBackupOf(step.artifact)) {
              await restoreBaseBackup(deps, { tenantId: r.tenantId, artifact: step.artifact, target: step.target, source });
              continue;
            }
            await getDriver(step.target.type).restore(decryptComponent(step.target, deps.box).config, {
              dataRoot,
              targets: deps.targets,
              log,
              source,
              manifest: repo.manifestBytes(source, step.artifact),
              ...(paths && { paths }),
              ...(deps.shutdown && { signal: deps.shutdown }),
            });
          }
        },
        log,
        deps.leaseMs,
      );
    } catch (err) {
      await (pause as Pause | null)?.resume();
      if (err instanceof HookRefused) {
        failure = { component: err.component, message: err.message };
      } else if (deps.shutdown?.aborted) {
        // Rolled back by the driver: hand it back so another worker restores it from the start.
        const back = await ledger.handBack('restore', r.id, deps.workerId);
        log.info({ restore_id: r.id, handed_back: back }, 'restore interrupted by shutdown; handed back');
        if (back) throw new RetryLater(HAND_BACK_DELAY_MS, 'handed back at shutdown');
        return;
      } else {
        log.warn({ err, restore_id: r.id, component: current }, 'restore failed');
        const message = describeFailure(err) + (err instanceof IntegrityError ? '; nothing was restored' : '');
        failure = { component: current, message: current ? `component "${current}": ${message}` : message };
      }
    }
    await (pause as Pause | null)?.resume();
    const end = deps.now();
    if (failure) await ledger.fail('restore', r.id, failure, { now: end });
    else await ledger.complete('restore', r.id, { completedAt: end });
    log.info({ restore_id: r.id, failed: failure !== null }, 'restore finished');
  };
}

const replayDeps = (deps: RestoreJobDeps) => ({
  db: deps.db,
  repo: deps.repo,
  pitr: deps.pitr ?? { workDir: 'data/pitr', scratchUser: 'postgres' },
  log: deps.log,
  ...(deps.shutdown && { signal: deps.shutdown }),
});

/**
 * A point-in-time restore (SPEC section 13): the base backup replayed up to point_in_time in a
 * scratch instance, then its database copied into the new target database on the component's
 * server (made by copyDatabase, dropped again on failure).
 */
async function restorePointInTime(deps: RestoreJobDeps, r: { tenantId: string; components: unknown; pointInTime: Date; targetDatabase: string; cluster: { components: unknown }; backup: { artifacts: BaseBackupArtifact[] } }): Promise<void> {
  const name = (r.components as string[])[0]!;
  const artifact = r.backup.artifacts.find((a) => a.component === name);
  const component = (r.cluster.components as StoredComponent[]).find((c) => c.name === name);
  if (!artifact || !component || component.type !== 'postgres') throw new Error(`component "${name}" is no longer present in the backup or the cluster`);
  const conn = await postgresConnection(decryptComponent(component, deps.box).config as PostgresConfig, { dataRoot: '', targets: deps.targets });
  const source = await deps.repo.source(r.tenantId, deps.shutdown ? { signal: deps.shutdown } : {});
  const scratch = await replayToScratch(replayDeps(deps), { tenantId: r.tenantId, artifact, source, target: { time: r.pointInTime } });
  try {
    await copyDatabase(scratch, conn.database, conn, r.targetDatabase, { log: deps.log, ...(deps.shutdown && { signal: deps.shutdown }) });
  } finally {
    await scratch.stop();
  }
}

/**
 * A restore of a continuous component's backup (a base backup) into the component's database:
 * replayed to its consistent point in a scratch instance, then dumped from there into the
 * single-transaction path every postgres restore takes.
 */
async function restoreBaseBackup(deps: RestoreJobDeps, o: { tenantId: string; artifact: BaseBackupArtifact; target: StoredComponent; source: import('../../repo/types.js').ChunkSource }): Promise<void> {
  const conn = await postgresConnection(decryptComponent(o.target, deps.box).config as PostgresConfig, { dataRoot: '', targets: deps.targets });
  const scratch = await replayToScratch(replayDeps(deps), { tenantId: o.tenantId, artifact: o.artifact, source: o.source, target: 'immediate' });
  try {
    const dump = dumpScratch(scratch, conn.database, { log: deps.log, ...(deps.shutdown && { signal: deps.shutdown }) });
    await restoreDump(conn, dump, async () => {}, { log: deps.log, ...(deps.shutdown && { signal: deps.shutdown }) });
  } finally {
    await scratch.stop();
  }
}

/** A pre_restore hook that did not answer 2xx: the restore fails with nothing written. */
class HookRefused extends Error {
  constructor(
    readonly component: string,
    message: string,
  ) {
    super(message);
  }
}

/** Reads and verifies every chunk of a component's snapshot, keeping nothing. */
async function drain(source: import('../../repo/types.js').ChunkSource, repo: RepoService, artifact: { component: string; type: string; sha256: string; manifest: unknown }): Promise<void> {
  if (artifact.type === 'directory') {
    for await (const e of repo.entries(source, artifact)) {
      if (e.chunks?.length) for await (const _ of source.read(e.chunks)) void _;
    }
  } else {
    const ref = await repo.streamOf(source, artifact);
    for await (const _ of source.read(ref.chunks)) void _;
  }
}
