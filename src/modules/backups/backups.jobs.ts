import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Db } from '../../db/client.js';
import type { SecretBox } from '../../crypto/secrets.js';
import { getDriver, type PostgresTargetPolicy } from '../../components/index.js';
import type { ArtifactStore } from '../../storage/types.js';
import type { Queues } from '../../queue/queues.js';
import { decryptComponent, type StoredComponent } from '../clusters/components.js';
import type { ArtifactLocation } from './backups.present.js';
import { ArtifactUnusable, findIntactCopy, type Stores } from './artifacts.js';
import { withLease } from '../../queue/lease.js';

const PROGRESS_EVERY_MS = 1_000;

export interface BackupJobDeps {
  db: Db;
  store: ArtifactStore;
  /** Where dual-region clusters' artifacts are copied after the backup completes. */
  secondary: ArtifactStore | null;
  box: SecretBox;
  dataRoot: string;
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

export function errorMessage(err: unknown): string {
  const m = err instanceof Error ? err.message : String(err);
  return m.length > 2000 ? m.slice(0, 2000) + '…' : m;
}

/**
 * Runs one backup: every component concurrently into the store (hashing as bytes pass), then a
 * manifest, then one transaction records the artifacts and `completed`. Any component failing
 * aborts the others, removes every artifact written, and records `failed` with the cause.
 */
export function createBackupRunner(deps: BackupJobDeps) {
  const { db, store, log } = deps;

  return async function runBackup(payload: { tenant_id: string; backup_id: string }): Promise<void> {
    const t = deps.now();
    const claimed = await db.backup.updateMany({
      where: { id: payload.backup_id, tenantId: payload.tenant_id, status: 'queued' },
      data: { status: 'running', startedAt: t, workerId: deps.workerId, leaseExpiresAt: new Date(t.getTime() + deps.leaseMs) },
    });
    if (claimed.count === 0) return; // deleted, already run, or taken by another worker: nothing to do
    const backup = await db.backup.findUniqueOrThrow({ where: { id: payload.backup_id }, include: { cluster: true } });
    const components = backup.cluster.components as StoredComponent[];
    const dual = backup.cluster.backupLocation === 'dual_region';
    const prefix = backupPrefix(backup);
    const status = new Map(components.map((c) => [c.name, 'running']));
    const done = new Map<string, number>();
    let lastProgress = 0;
    const reportProgress = (force = false) => {
      const n = Date.now();
      if (!force && n - lastProgress < PROGRESS_EVERY_MS) return;
      lastProgress = n;
      const total = [...done.values()].reduce((a, b) => a + b, 0);
      db.backup
        .updateMany({ where: { id: backup.id, status: 'running' }, data: { bytesDone: BigInt(total), components: [...status].map(([name, s]) => ({ name, status: s })) } })
        .catch(() => {});
    };
    const abort = new AbortController();
    let failure: { component: string | null; message: string } | null = null;
    const onShutdown = () => {
      failure ??= { component: null, message: 'interrupted: the worker shut down before the backup finished' };
      abort.abort();
    };
    if (deps.shutdown?.aborted) onShutdown();
    deps.shutdown?.addEventListener('abort', onShutdown, { once: true });

    const renew = () =>
      db.backup.updateMany({ where: { id: backup.id, status: 'running', workerId: deps.workerId }, data: { leaseExpiresAt: new Date(deps.now().getTime() + deps.leaseMs) } });
    const results = await withLease(renew, () =>
      Promise.all(
        components.map(async (c) => {
          try {
            const driver = getDriver(c.type);
            const key = `${prefix}${c.name}.${driver.artifactExtension}`;
            const stream = driver.backup(decryptComponent(c, deps.box).config, { dataRoot: deps.dataRoot, postgresTargets: deps.postgresTargets, signal: abort.signal });
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
            status.set(c.name, abort.signal.aborted && failure ? 'cancelled' : 'failed');
            if (!failure) {
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
    const finish = deps.now();
    if (failure) {
      await store.deletePrefix(prefix).catch((err: unknown) => log.error({ err, backup_id: backup.id }, 'could not remove partial artifacts'));
      const f = failure as { component: string | null; message: string };
      await db.backup.updateMany({
        where: { id: backup.id, status: 'running' },
        data: {
          status: 'failed',
          completedAt: finish,
          errorComponent: f.component,
          errorMessage: f.message,
          leaseExpiresAt: null,
          components: [...status].map(([name, s]) => ({ name, status: s })),
        },
      });
      log.info({ backup_id: backup.id, component: f.component }, 'backup failed');
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
        await store.deletePrefix(prefix).catch(() => {});
        await db.backup.updateMany({
          where: { id: backup.id, status: 'running' },
          data: { status: 'failed', completedAt: finish, errorComponent: null, errorMessage: `writing the manifest failed: ${errorMessage(err)}`, leaseExpiresAt: null },
        });
        return;
      }
      const size = artifacts.reduce((a, r) => a + r.bytes, 0);
      const committed = await db.$transaction(async (tx) => {
        const r = await tx.backup.updateMany({
          where: { id: backup.id, status: 'running' },
          data: {
            status: 'completed',
            completedAt: finish,
            sizeBytes: BigInt(size),
            bytesDone: BigInt(size),
            leaseExpiresAt: null,
            components: [...status].map(([name, s]) => ({ name, status: s })),
          },
        });
        if (r.count === 0) return false; // declared lost meanwhile: its record says failed
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
              ...(dual && deps.secondary ? [{ store: 'secondary' as const, url: deps.secondary.locationOf(a.key), status: 'pending' as const }] : []),
            ] satisfies ArtifactLocation[],
          })),
        });
        return true;
      });
      if (!committed) {
        await store.deletePrefix(prefix).catch(() => {});
        return;
      }
      log.info({ backup_id: backup.id, bytes: size }, 'backup completed');
      if (dual && deps.secondary)
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
export function createBackupDeleter(deps: { db: Db; stores: ArtifactStore[] }) {
  return async function deleteBackup(payload: { tenant_id: string; backup_id: string }): Promise<void> {
    const b = await deps.db.backup.findFirst({ where: { id: payload.backup_id, tenantId: payload.tenant_id } });
    if (!b || b.status !== 'deleting') return;
    for (const s of deps.stores) await s.deletePrefix(backupPrefix(b));
    await deps.db.backup.deleteMany({ where: { id: b.id, status: 'deleting' } });
  };
}

/**
 * Copies a dual-region backup's artifacts (and manifest) to the secondary store, checking that
 * the copy hashes to the recorded sha256, and records each copy's status. Idempotent: copies
 * already present are skipped, so a retry or the reconciler can run it again.
 */
export function createReplicator(deps: { db: Db; stores: Stores; log: Logger }) {
  return async function replicate(payload: { tenant_id: string; backup_id: string }): Promise<void> {
    const { db, stores } = deps;
    const secondary = stores.secondary;
    if (!secondary) return;
    const b = await db.backup.findFirst({ where: { id: payload.backup_id, tenantId: payload.tenant_id, status: 'completed' }, include: { artifacts: true } });
    if (!b) return;
    const manifestKey = `${backupPrefix(b)}manifest.json`;
    if (!(await secondary.exists(manifestKey)) && (await stores.primary.exists(manifestKey)))
      await secondary.put(manifestKey, await stores.primary.get(manifestKey));
    for (const a of b.artifacts) {
      const locations = a.locations as unknown as ArtifactLocation[];
      const sec = locations.find((l) => l.store === 'secondary');
      if (!sec || sec.status === 'present') continue;
      let status: ArtifactLocation['status'] = 'present';
      try {
        const copy = await secondary.put(a.key, await stores.primary.get(a.key));
        if (copy.sha256 !== a.sha256) {
          status = 'failed';
          await secondary.delete(a.key);
        }
      } catch (err) {
        deps.log.warn({ err: errorMessage(err), backup_id: b.id, component: a.component }, 'replication failed');
        status = 'failed';
      }
      sec.status = status;
      await db.backupArtifact.update({ where: { id: a.id }, data: { locations: locations as never } });
      if (status === 'failed') throw new Error(`replication of component ${a.component} failed; will retry`);
    }
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
