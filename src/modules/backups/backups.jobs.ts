import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Db } from '../../db/client.js';
import type { SecretBox } from '../../crypto/secrets.js';
import { getDriver, type PostgresTargetPolicy } from '../../components/index.js';
import type { ArtifactStore } from '../../storage/types.js';
import type { Queues } from '../../queue/queues.js';
import { RetryLater } from '../../queue/worker.js';
import type { Ledger } from '../../jobs/ledger.js';
import { publicMessage } from '../../lib/public-error.js';
import { decryptComponent, type StoredComponent } from '../clusters/components.js';
import type { ArtifactLocation } from './backups.present.js';
import { ArtifactUnusable, findIntactCopy, type Stores } from './artifacts.js';
import { withLease } from '../../queue/lease.js';

const PROGRESS_EVERY_MS = 1_000;
/** How soon a handed-back job is offered to the workers again. */
export const HAND_BACK_DELAY_MS = 500;

export interface BackupJobDeps {
  db: Db;
  ledger: Ledger;
  store: ArtifactStore;
  /** Where dual-region clusters' artifacts are copied after the backup completes. */
  secondary: ArtifactStore | null;
  box: SecretBox;
  /** The folder of a tenant's directory components (DATA_ROOT/<tenant dir>), checked again here. */
  dataRootOf: (tenantId: string) => Promise<string>;
  postgresTargets: PostgresTargetPolicy;
  queues: Pick<Queues, 'add'>;
  workerId: string;
  now: () => Date;
  log: Logger;
  leaseMs: number;
  /** Aborted when the worker must stop before running jobs finish (graceful shutdown ran out of time). */
  shutdown?: AbortSignal;
}

export function backupPrefix(b: { tenantId: string; clusterId: string; id: string }): string {
  return `${b.tenantId}/${b.clusterId}/${b.id}/`;
}

/** Tenant-visible text of an error: no server paths, bounded (the full error goes to the log). */
export const errorMessage = publicMessage;

/**
 * Runs one backup: every component concurrently into the store (hashing as bytes pass), then a
 * manifest, then one transaction records the artifacts and `completed`. Any component failing
 * aborts the others, removes every artifact written, and records `failed` with the cause. A
 * shutdown that cannot wait removes what was written and hands the backup back (`queued`), so
 * another worker runs it.
 */
export function createBackupRunner(deps: BackupJobDeps) {
  const { db, store, log, ledger } = deps;

  return async function runBackup(payload: { tenant_id: string; backup_id: string }): Promise<void> {
    if (deps.shutdown?.aborted) throw new RetryLater(HAND_BACK_DELAY_MS, 'this worker is shutting down');
    const started = await ledger.start('backup', payload.tenant_id, payload.backup_id, { workerId: deps.workerId, now: deps.now(), leaseMs: deps.leaseMs });
    if (!started) return; // deleted, already run, or taken by another worker: nothing to do
    const backup = await db.backup.findUniqueOrThrow({ where: { id: payload.backup_id }, include: { cluster: true } });
    const components = backup.cluster.components as StoredComponent[];
    const dual = backup.cluster.backupLocation === 'dual_region';
    const prefix = backupPrefix(backup);
    const status = new Map(components.map((c) => [c.name, 'running']));
    const componentStatus = () => [...status].map(([name, s]) => ({ name, status: s }));
    const done = new Map<string, number>();
    let lastProgress = 0;
    const reportProgress = (force = false) => {
      const n = Date.now();
      if (!force && n - lastProgress < PROGRESS_EVERY_MS) return;
      lastProgress = n;
      const total = [...done.values()].reduce((a, b) => a + b, 0);
      // Progress is not lifecycle state: it only touches a running row of this worker.
      db.backup
        .updateMany({ where: { id: backup.id, status: 'running', workerId: deps.workerId }, data: { bytesDone: BigInt(total), components: componentStatus() } })
        .catch(() => {});
    };
    const abort = new AbortController();
    let failure: { component: string | null; message: string } | null = null;
    let interrupted = false;
    const onShutdown = () => {
      interrupted = true;
      abort.abort();
    };
    if (deps.shutdown?.aborted) onShutdown();
    deps.shutdown?.addEventListener('abort', onShutdown, { once: true });

    const renew = () => ledger.renew('backup', backup.id, { workerId: deps.workerId, now: deps.now(), leaseMs: deps.leaseMs });
    let dataRoot: string | null = null;
    const results = await withLease(
      renew,
      () =>
        Promise.all(
          components.map(async (c) => {
            try {
              const driver = getDriver(c.type);
              const key = `${prefix}${c.name}.${driver.artifactExtension}`;
              dataRoot ??= await deps.dataRootOf(backup.tenantId);
              const stream = driver.backup(decryptComponent(c, deps.box).config, { dataRoot, postgresTargets: deps.postgresTargets, signal: abort.signal, log });
              const res = await store.put(key, stream, {
                signal: abort.signal,
                onProgress: (n: number) => {
                  done.set(c.name, n);
                  reportProgress();
                },
              });
              status.set(c.name, 'completed');
              return { component: c.name, key, ...res };
            } catch (err) {
              status.set(c.name, abort.signal.aborted ? 'cancelled' : 'failed');
              if (!failure && !interrupted) {
                log.warn({ err, backup_id: backup.id, component: c.name }, 'backup component failed');
                failure = { component: c.name, message: errorMessage(err) };
                abort.abort();
              }
              return null;
            }
          }),
        ),
      log,
      deps.leaseMs,
    );
    deps.shutdown?.removeEventListener('abort', onShutdown);

    const removePartial = () => store.deletePrefix(prefix).catch((err: unknown) => log.error({ err, backup_id: backup.id }, 'could not remove partial artifacts'));
    if (interrupted) {
      await removePartial();
      const back = await ledger.handBack('backup', backup.id, deps.workerId);
      log.info({ backup_id: backup.id, handed_back: back }, 'backup interrupted by shutdown; handed back');
      if (back) throw new RetryLater(HAND_BACK_DELAY_MS, 'handed back at shutdown');
      return;
    }
    const finish = deps.now();
    const fail = async (f: { component: string | null; message: string }) => {
      await removePartial();
      await ledger.fail('backup', backup.id, f, { now: finish, data: { components: componentStatus() } });
      log.info({ backup_id: backup.id, component: f.component }, 'backup failed');
    };
    if (failure) {
      await fail(failure);
    } else {
      const artifacts = results.filter((r) => r !== null);
      const manifest = {
        format: 'backup-manifest/v1',
        backup_id: backup.id,
        cluster_id: backup.clusterId,
        tenant_id: backup.tenantId,
        trigger: backup.trigger,
        created_at: backup.createdAt.toISOString(),
        completed_at: finish.toISOString(),
        artifacts: artifacts.map((a) => ({ component: a.component, key: a.key, bytes: a.bytes, sha256: a.sha256 })),
      };
      try {
        await store.put(`${prefix}manifest.json`, Readable.from([Buffer.from(JSON.stringify(manifest, null, 2))]));
      } catch (err) {
        log.warn({ err, backup_id: backup.id }, 'writing the manifest failed');
        await fail({ component: null, message: `writing the manifest failed: ${errorMessage(err)}` });
        return;
      }
      const size = artifacts.reduce((a, r) => a + r.bytes, 0);
      const replicate = dual && deps.secondary !== null;
      const committed = await ledger.complete(
        'backup',
        backup.id,
        {
          completedAt: finish,
          sizeBytes: BigInt(size),
          bytesDone: BigInt(size),
          components: componentStatus(),
          ...(replicate && { replicationStatus: 'pending', replicationNextAt: finish }),
        },
        async (tx) => {
          await tx.backupArtifact.createMany({
            data: artifacts.map((a) => ({
              id: randomUUID(),
              backupId: backup.id,
              component: a.component,
              key: a.key,
              bytes: BigInt(a.bytes),
              sha256: a.sha256,
              locations: [
                { store: 'primary', url: store.locationOf(a.key), status: 'present' },
                ...(replicate ? [{ store: 'secondary' as const, url: deps.secondary!.locationOf(a.key), status: 'pending' as const }] : []),
              ] satisfies ArtifactLocation[],
            })),
          });
        },
      );
      if (!committed) {
        await removePartial(); // declared lost meanwhile: its record says failed
        return;
      }
      log.info({ backup_id: backup.id, bytes: size }, 'backup completed');
      if (replicate)
        await deps.queues
          .add('maintenance', 'replicate-backup', { tenant_id: backup.tenantId, backup_id: backup.id }, backup.id)
          .catch((err: unknown) => log.warn({ err }, 'could not enqueue replication; the reconciler will'));
    }
    await deps.queues
      .add('maintenance', 'prune', { tenant_id: backup.tenantId, cluster_id: backup.clusterId }, `${backup.clusterId}-${backup.id}`)
      .catch((err: unknown) => log.warn({ err }, 'could not enqueue prune; the periodic sweep will'));
  };
}

/** Removes a `deleting` backup: artifacts from every store first, then the record. Idempotent. */
export function createBackupDeleter(deps: { db: Db; ledger: Ledger; stores: ArtifactStore[] }) {
  return async function deleteBackup(payload: { tenant_id: string; backup_id: string }): Promise<void> {
    const b = await deps.db.backup.findFirst({ where: { id: payload.backup_id, tenantId: payload.tenant_id } });
    if (!b || b.status !== 'deleting') return;
    for (const s of deps.stores) await s.deletePrefix(backupPrefix(b));
    await deps.ledger.removeDeleted(b.id);
  };
}

/** Delay before the n-th retry of a failed dual-region copy: 30 s doubling, at most 6 h. */
export function replicationBackoffMs(attempts: number): number {
  return Math.min(6 * 3600_000, 30_000 * 2 ** Math.max(0, attempts - 1));
}

/**
 * Copies a dual-region backup's artifacts (and manifest) to the secondary store, checking that
 * the copy hashes to the recorded sha256, and records each copy's status. A failed copy makes
 * the backup `degraded` (shown on it and in metrics) and is retried with a growing backoff by
 * the reconciler, never given up on. Idempotent: copies already present are skipped.
 */
export function createReplicator(deps: { db: Db; stores: Stores; log: Logger; now: () => Date }) {
  return async function replicate(payload: { tenant_id: string; backup_id: string }): Promise<void> {
    const { db, stores } = deps;
    const secondary = stores.secondary;
    if (!secondary) return;
    const b = await db.backup.findFirst({ where: { id: payload.backup_id, tenantId: payload.tenant_id, status: 'completed' }, include: { artifacts: true } });
    if (!b || b.replicationStatus === 'replicated') return;
    const problems: string[] = [];
    try {
      const manifestKey = `${backupPrefix(b)}manifest.json`;
      if (!(await secondary.exists(manifestKey)) && (await stores.primary.exists(manifestKey))) await secondary.put(manifestKey, await stores.primary.get(manifestKey));
    } catch (err) {
      problems.push(`manifest: ${errorMessage(err)}`);
    }
    for (const a of b.artifacts) {
      const locations = a.locations as unknown as ArtifactLocation[];
      const sec = locations.find((l) => l.store === 'secondary');
      if (!sec || sec.status === 'present') continue;
      let status: ArtifactLocation['status'] = 'present';
      try {
        const copy = await secondary.put(a.key, await stores.primary.get(a.key));
        if (copy.sha256 !== a.sha256) {
          status = 'failed';
          problems.push(`component ${a.component}: the copy's checksum does not match`);
          await secondary.delete(a.key);
        }
      } catch (err) {
        deps.log.warn({ err, backup_id: b.id, component: a.component }, 'replication failed');
        problems.push(`component ${a.component}: ${errorMessage(err)}`);
        status = 'failed';
      }
      sec.status = status;
      await db.backupArtifact.update({ where: { id: a.id }, data: { locations: locations as never } });
    }
    const attempts = b.replicationAttempts + 1;
    await db.backup.updateMany({
      where: { id: b.id, status: 'completed' },
      data: problems.length
        ? { replicationStatus: 'degraded', replicationAttempts: attempts, replicationError: problems.join('; '), replicationNextAt: new Date(deps.now().getTime() + replicationBackoffMs(attempts)) }
        : { replicationStatus: 'replicated', replicationAttempts: attempts, replicationError: null, replicationNextAt: null },
    });
  };
}

/** Re-reads and re-hashes every stored copy of a completed backup; records the outcome on it. */
export function createVerifier(deps: { db: Db; stores: Stores; now: () => Date }) {
  return async function verify(payload: { tenant_id: string; backup_id: string }): Promise<void> {
    const { db } = deps;
    const claimed = await db.backup.updateMany({ where: { id: payload.backup_id, tenantId: payload.tenant_id, status: 'completed', verifyStatus: 'queued' }, data: { verifyStatus: 'running' } });
    if (!claimed.count) return;
    const b = await db.backup.findUniqueOrThrow({ where: { id: payload.backup_id }, include: { artifacts: { orderBy: { component: 'asc' } } } });
    const problems: string[] = [];
    for (const a of b.artifacts) {
      const locations = a.locations as unknown as ArtifactLocation[];
      for (const loc of locations.filter((l) => l.status === 'present')) {
        try {
          await findIntactCopy({ ...a, locations: [loc] }, deps.stores);
        } catch (err) {
          problems.push(err instanceof ArtifactUnusable ? `component "${a.component}": ${err.problems.join('; ')}` : errorMessage(err));
        }
      }
    }
    await db.backup.updateMany({
      where: { id: b.id, verifyStatus: 'running' },
      data: {
        verifyStatus: problems.length ? 'failed' : 'passed',
        verifiedAt: deps.now(),
        verifyMessage: problems.length ? problems.join(' | ') : `${b.artifacts.length} artifact(s) re-read; every sha256 matches`,
      },
    });
  };
}
