import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Db } from '../../db/client.js';
import type { SecretBox } from '../../crypto/secrets.js';
import { getDriver } from '../../components/index.js';
import type { ArtifactStore } from '../../storage/types.js';
import type { Queues } from '../../queue/queues.js';
import { decryptComponent, type StoredComponent } from '../clusters/components.js';
import type { ArtifactLocation } from './backups.present.js';

export const LEASE_MS = 60_000;
const HEARTBEAT_MS = 15_000;
const PROGRESS_EVERY_MS = 1_000;

export interface BackupJobDeps {
  db: Db;
  store: ArtifactStore;
  box: SecretBox;
  dataRoot: string;
  queues: Pick<Queues, 'add'>;
  workerId: string;
  now: () => Date;
  log: Logger;
}

export function backupPrefix(b: { tenantId: string; clusterId: string; id: string }): string {
  return `${b.tenantId}/${b.clusterId}/${b.id}/`;
}

/** Keeps the lease alive while `fn` runs; a worker that dies stops renewing and the reaper fails the backup. */
async function withLease<T>(deps: BackupJobDeps, backupId: string, fn: () => Promise<T>): Promise<T> {
  const timer = setInterval(() => {
    deps.db.backup
      .updateMany({ where: { id: backupId, status: 'running', workerId: deps.workerId }, data: { leaseExpiresAt: new Date(deps.now().getTime() + LEASE_MS) } })
      .catch((err: unknown) => deps.log.warn({ err, backup_id: backupId }, 'lease renewal failed'));
  }, HEARTBEAT_MS);
  timer.unref();
  try {
    return await fn();
  } finally {
    clearInterval(timer);
  }
}

function errorMessage(err: unknown): string {
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
      data: { status: 'running', startedAt: t, workerId: deps.workerId, leaseExpiresAt: new Date(t.getTime() + LEASE_MS) },
    });
    if (claimed.count === 0) return; // deleted, already run, or taken by another worker: nothing to do
    const backup = await db.backup.findUniqueOrThrow({ where: { id: payload.backup_id }, include: { cluster: true } });
    const components = backup.cluster.components as StoredComponent[];
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

    const results = await withLease(deps, backup.id, () =>
      Promise.all(
        components.map(async (c) => {
          try {
            const driver = getDriver(c.type);
            const key = `${prefix}${c.name}.${driver.artifactExtension}`;
            const stream = driver.backup(decryptComponent(c, deps.box).config, { dataRoot: deps.dataRoot, signal: abort.signal });
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
    );

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
            locations: [{ store: 'primary', url: store.locationOf(a.key), status: 'present' } satisfies ArtifactLocation],
          })),
        });
        return true;
      });
      if (!committed) {
        await store.deletePrefix(prefix).catch(() => {});
        return;
      }
      log.info({ backup_id: backup.id, bytes: size }, 'backup completed');
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
