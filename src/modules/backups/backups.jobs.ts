import { createHash, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Db } from '../../db/client.js';
import type { SecretBox } from '../../crypto/secrets.js';
import { getDriver, type TargetPolicy } from '../../components/index.js';
import { ComponentError } from '../../components/types.js';
import type { BaseBackupResult } from '../../components/pitr/basebackup.js';
import { parseLsn } from '../../components/pitr/lsn.js';
import type { RepoService } from '../../repo/service.js';
import { IntegrityError, type Progress } from '../../repo/types.js';
import { writeSnapshot, type SnapshotRecord } from '../../repo/snapshot.js';
import { packKey, snapshotKey } from '../../repo/layout.js';
import { packIdOf } from '../../repo/pack.js';
import { verifyPackCopies } from '../../repo/verify-packs.js';
import { readWhole } from '../../storage/index.js';
import type { Queues } from '../../queue/queues.js';
import { RetryLater } from '../../queue/worker.js';
import type { Ledger } from '../../jobs/ledger.js';
import { publicMessage } from '../../lib/public-error.js';
import { decryptComponent, type StoredComponent } from '../clusters/components.js';
import type { ArtifactLocation } from './backups.present.js';
import { withLease } from '../../queue/lease.js';
import { announceBackup } from '../events/resources.js';
import type { HookCaller } from '../hooks/hooks.js';
import { beginPause, type Pause } from '../hooks/pause.js';

const PROGRESS_EVERY_MS = 1_000;
/** How soon a handed-back job is offered to the workers again. */
export const HAND_BACK_DELAY_MS = 500;

export interface BackupJobDeps {
  db: Db;
  ledger: Ledger;
  repo: RepoService;
  box: SecretBox;
  /** The folder of a tenant's directory components (DATA_ROOT/<tenant dir>), checked again here. */
  dataRootOf: (tenantId: string) => Promise<string>;
  targets: TargetPolicy;
  queues: Pick<Queues, 'add'>;
  workerId: string;
  now: () => Date;
  log: Logger;
  leaseMs: number;
  /** Calls the clusters' hooks (consistent backups pause with pre_backup / post_backup). */
  hooks: HookCaller;
  /** Aborted when the worker must stop before running jobs finish (graceful shutdown ran out of time). */
  shutdown?: AbortSignal;
}

/** Tenant-visible text of an error: no server paths, bounded (the full error goes to the log). */
export const errorMessage = publicMessage;

/** The manifest of the same component in the cluster's newest completed backup, if it is a directory snapshot. */
async function previousArtifact(db: Db, clusterId: string, component: string, type: string) {
  return db.backupArtifact.findFirst({
    where: { component, type, backup: { clusterId, status: 'completed' } },
    orderBy: { backup: { completedAt: 'desc' } },
  });
}

/** How long a base backup waits for the archiver to have stored the WAL up to its end. */
const BASE_BACKUP_WAL_WAIT_MS = 120_000;

/** What backup_artifacts.base_backup records of a continuous component's snapshot. */
export interface BaseBackupRecord {
  start_lsn: string;
  end_lsn: string;
  timeline: number;
  /** ISO time: a point in time at or after it is reachable from this backup. */
  stop_time: string;
  /** The wal_streams row whose stored WAL replays it. */
  stream_id: string;
}

/**
 * Waits until the component's archiver has stored the WAL from the base backup's start to its
 * end (replay needs at least that much), failing with what the archiver says when it does not
 * get there in time, or when the stored WAL begins after the backup's start (the stream started
 * later: the backup could never be replayed).
 */
async function waitForBaseBackupWal(db: Db, o: { clusterId: string; component: string; base: BaseBackupResult; signal: AbortSignal }): Promise<BaseBackupRecord> {
  const start = parseLsn(o.base.startLsn);
  const end = parseLsn(o.base.endLsn);
  const deadline = Date.now() + BASE_BACKUP_WAL_WAIT_MS;
  for (;;) {
    const stream = await db.walStream.findFirst({ where: { clusterId: o.clusterId, component: o.component, status: 'active' } });
    if (!stream) throw new ComponentError('postgres: the component is no longer continuous; its base backup cannot be replayed');
    if (stream.storedLsn !== null && stream.storedLsn >= end) {
      const first = await db.walSegment.findFirst({ where: { streamId: stream.id, status: 'stored', partial: false }, orderBy: { startLsn: 'asc' }, select: { startLsn: true } })
        ?? await db.walSegment.findFirst({ where: { streamId: stream.id, status: 'stored' }, orderBy: { startLsn: 'asc' }, select: { startLsn: true } });
      if (!first || first.startLsn > start) throw new ComponentError(`postgres: the archived WAL begins after this base backup's start (${o.base.startLsn}); take another backup once the archiver streams`);
      return { start_lsn: o.base.startLsn, end_lsn: o.base.endLsn, timeline: o.base.timeline, stop_time: o.base.stopTime.toISOString(), stream_id: stream.id };
    }
    if (Date.now() > deadline) {
      const why = stream.error ? `: ${stream.error}` : stream.leaseOwner ? '' : ' (no archiver holds the stream: is a process with the archiver role running?)';
      throw new ComponentError(`postgres: the WAL this base backup needs (up to ${o.base.endLsn}) was not archived within ${BASE_BACKUP_WAL_WAIT_MS / 1000} s; the archiver is ${stream.state}${why}`);
    }
    if (o.signal.aborted) throw o.signal.reason instanceof Error ? o.signal.reason : new Error('aborted');
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Passes bytes through, hashing them. */
function hashing(source: AsyncIterable<Buffer>): { stream: AsyncGenerator<Buffer>; digest: () => string } {
  const hash = createHash('sha256');
  async function* pass() {
    for await (const b of source) {
      hash.update(b);
      yield b;
    }
  }
  let hex: string | undefined;
  return { stream: pass(), digest: () => (hex ??= hash.digest('hex')) };
}

/** A tenant-visible name for a failure: integrity problems say so. */
export function describeFailure(err: unknown): string {
  if (err instanceof IntegrityError) return `integrity check failed: ${errorMessage(err)}`;
  return errorMessage(err);
}

/**
 * Runs one backup: every component concurrently into the tenant's repository (each through its
 * own writer: chunks deduplicated against every earlier backup of the tenant, new ones sealed
 * into packs), then the manifests, the sealed snapshot record in the store, and one transaction
 * that records the artifacts and `completed`. Any component failing aborts the others and
 * records `failed` with the cause; what it stored is garbage that GC collects. A shutdown that
 * cannot wait hands the backup back (`queued`), so another worker runs it.
 */
export function createBackupRunner(deps: BackupJobDeps) {
  const { db, log, ledger, repo } = deps;

  return async function runBackup(payload: { tenant_id: string; backup_id: string }): Promise<void> {
    if (deps.shutdown?.aborted) throw new RetryLater(HAND_BACK_DELAY_MS, 'this worker is shutting down');
    const started = await ledger.start('backup', payload.tenant_id, payload.backup_id, { workerId: deps.workerId, now: deps.now(), leaseMs: deps.leaseMs });
    if (!started) return; // deleted, already run, or taken by another worker: nothing to do
    const backup = await db.backup.findUniqueOrThrow({ where: { id: payload.backup_id }, include: { cluster: { include: { policy: true } } } });
    // References of an earlier attempt (handed back) are recorded again as this one goes.
    await db.backupChunk.deleteMany({ where: { backupId: backup.id } });
    const components = backup.cluster.components as StoredComponent[];
    const dual = backup.cluster.backupLocation === 'dual_region';
    const status = new Map(components.map((c) => [c.name, 'running']));
    const componentStatus = () => [...status].map(([name, s]) => ({ name, status: s }));
    const progress = new Map<string, Progress>();
    let lastProgress = 0;
    const reportProgress = (force = false) => {
      const n = Date.now();
      if (!force && n - lastProgress < PROGRESS_EVERY_MS) return;
      lastProgress = n;
      const all = [...progress.values()];
      const sum = (f: (p: Progress) => number | null) => (all.some((p) => f(p) === null) ? null : all.reduce((a, p) => a + (f(p) ?? 0), 0));
      const p = { bytes_done: sum((x) => x.bytes_done) ?? 0, bytes_total: sum((x) => x.bytes_total), files_done: sum((x) => x.files_done) ?? 0, files_total: sum((x) => x.files_total) };
      // Progress is not lifecycle state: it only touches a running row of this worker.
      db.backup
        .updateMany({ where: { id: backup.id, status: 'running', workerId: deps.workerId }, data: { bytesDone: BigInt(p.bytes_done), progress: p, components: componentStatus() } })
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
    // A consistent backup (live: false) pauses the cluster: pre_backup must answer 2xx before
    // anything is read; post_backup is called as soon as every component has reached its
    // consistent point (postgres: its exported snapshot; directory: the end of its read), and in
    // any case before this attempt ends (hooks/pause.ts).
    let pause: Pause | null = null;
    const points = components.map(() => {
      let reached = () => {};
      const at = new Promise<void>((resolve) => (reached = resolve));
      return { at, reached };
    });
    const results = await withLease(
      renew,
      async () => {
        try {
          if (!backup.live) {
            const begun = await beginPause({ db, hooks: deps.hooks, now: deps.now, log }, { kind: 'backup', tenantId: backup.tenantId, cluster: backup.cluster, jobId: backup.id, live: false });
            if (!begun.ok) {
              failure = { component: begun.component, message: begun.message };
              for (const c of components) status.set(c.name, 'cancelled');
              return components.map(() => null);
            }
            pause = begun.pause;
            if (pause) {
              const p = pause;
              void Promise.all(points.map((x) => x.at))
                .then(() => p.resume())
                .catch((err: unknown) => log.warn({ err, backup_id: backup.id }, 'could not end the pause at the consistent point'));
            } else {
              // Its pre_backup hook was removed after the backup was asked for: nothing is paused,
              // so the backup is what a live one is, and is recorded as such.
              await db.backup.updateMany({ where: { id: backup.id }, data: { live: true } });
              log.warn({ backup_id: backup.id }, 'consistent backup of a cluster that no longer has a pre_backup hook: taken live');
            }
          }
          return await Promise.all(
          components.map(async (c, i) => {
            try {
              const driver = getDriver(c.type);
              dataRoot ??= await deps.dataRootOf(backup.tenantId);
              const writer = await repo.writer({ tenantId: backup.tenantId, backupId: backup.id, clusterId: backup.clusterId, signal: abort.signal });
              const prev = c.type === 'directory' ? await previousArtifact(db, backup.clusterId, c.name, c.type) : null;
              const source = prev ? await repo.source(backup.tenantId, { signal: abort.signal }) : null;
              progress.set(c.name, { bytes_done: 0, bytes_total: null, files_done: 0, files_total: null });
              const snap = driver.backup(decryptComponent(c, deps.box).config, {
                dataRoot,
                targets: deps.targets,
                signal: abort.signal,
                log,
                sink: writer,
                previous: prev && source ? () => repo.manifestBytes(source, prev) : null,
                onProgress: (p) => {
                  progress.set(c.name, p);
                  reportProgress();
                },
                ...(pause && { onConsistent: points[i]!.reached }),
              });
              const manifest = hashing(snap.manifest);
              const ref = await writer.writeStream(manifest.stream);
              points[i]!.reached(); // every byte read (a directory's consistent point)
              await writer.flush();
              // A base backup is restorable once the WAL up to its end is archived (SPEC section 13).
              const base = snap.baseBackup?.() ?? null;
              const baseBackup = base ? await waitForBaseBackupWal(db, { clusterId: backup.clusterId, component: c.name, base, signal: abort.signal }) : null;
              status.set(c.name, 'completed');
              return { component: c.name, type: c.type, bytes: snap.logicalBytes(), storedBytes: writer.storedBytes, sha256: manifest.digest(), manifest: ref, baseBackup };
            } catch (err) {
              status.set(c.name, abort.signal.aborted ? 'cancelled' : 'failed');
              if (!failure && !interrupted) {
                log.warn({ err, backup_id: backup.id, component: c.name }, 'backup component failed');
                failure = { component: c.name, message: describeFailure(err) };
                abort.abort();
              }
              return null;
            }
          }),
          );
        } finally {
          // Failed, aborted or done: the pause ends with this attempt (the post hook, once).
          await (pause as Pause | null)?.resume();
        }
      },
      log,
      deps.leaseMs,
    );
    deps.shutdown?.removeEventListener('abort', onShutdown);

    // What a failed or interrupted attempt stored is unreferenced once its references go: GC's.
    const requestGc = () => repo.repositories.requestGc(backup.tenantId, deps.now()).catch(() => {});
    if (interrupted) {
      await db.backupChunk.deleteMany({ where: { backupId: backup.id } }).catch(() => {});
      await requestGc();
      const back = await ledger.handBack('backup', backup.id, deps.workerId);
      log.info({ backup_id: backup.id, handed_back: back }, 'backup interrupted by shutdown; handed back');
      if (back) throw new RetryLater(HAND_BACK_DELAY_MS, 'handed back at shutdown');
      return;
    }
    const finish = deps.now();
    const fail = async (f: { component: string | null; message: string }) => {
      await ledger.fail('backup', backup.id, f, { now: finish, data: { components: componentStatus() } });
      await db.backupChunk.deleteMany({ where: { backupId: backup.id } }).catch(() => {});
      await requestGc();
      log.info({ backup_id: backup.id, component: f.component }, 'backup failed');
    };
    if (failure) {
      await fail(failure);
    } else {
      const artifacts = results.filter((r) => r !== null);
      const size = artifacts.reduce((a, r) => a + r.bytes, 0);
      const stored = artifacts.reduce((a, r) => a + r.storedBytes, 0);
      const cl = backup.cluster;
      const record: SnapshotRecord = {
        format: 'bk-snapshot/v1',
        backup: {
          id: backup.id,
          tenant_id: backup.tenantId,
          cluster_id: backup.clusterId,
          trigger: backup.trigger,
          created_at: backup.createdAt.toISOString(),
          started_at: backup.startedAt?.toISOString() ?? null,
          completed_at: finish.toISOString(),
          size_bytes: size,
          stored_bytes: stored,
        },
        cluster: {
          id: cl.id,
          name: cl.name,
          environment: cl.environment,
          region: cl.region,
          backup_location: cl.backupLocation,
          deletion_protection: cl.deletionProtection,
          // Secrets in the clear inside the sealed record: they stay readable across `rotate-key`.
          components: (cl.components as StoredComponent[]).map((x) => decryptComponent(x, deps.box)),
          created_at: cl.createdAt.toISOString(),
          policy: cl.policy && {
            id: cl.policy.id,
            name: cl.policy.name,
            is_default: cl.policy.isDefault,
            environment: cl.policy.defaultFor,
            scheduled_live: cl.policy.scheduledLive,
            timezone: cl.policy.timezone,
            schedule: cl.policy.schedule,
            max_backups: cl.policy.maxBackups,
            manual_count: cl.policy.manualCount,
            manual_rate_limit: cl.policy.manualRateLimit,
            failed_count: cl.policy.failedCount,
            recovery_window: cl.policy.recoveryWindow,
          },
        },
        components: artifacts.map((a) => ({ name: a.component, type: a.type, bytes: a.bytes, stored_bytes: a.storedBytes, sha256: a.sha256, manifest: a.manifest, ...(a.baseBackup && { base_backup: a.baseBackup }) })),
      };
      let key: string;
      try {
        key = await writeSnapshot(repo.primary, await repo.repositories.keysOf(backup.tenantId), record);
      } catch (err) {
        log.warn({ err, backup_id: backup.id }, 'writing the snapshot record failed');
        await fail({ component: null, message: `writing the snapshot record failed: ${errorMessage(err)}` });
        return;
      }
      const replicate = dual && repo.secondary !== null;
      const committed = await ledger.complete(
        'backup',
        backup.id,
        {
          completedAt: finish,
          sizeBytes: BigInt(size),
          storedBytes: BigInt(stored),
          bytesDone: BigInt(size),
          progress: { bytes_done: size, bytes_total: size, files_done: [...progress.values()].reduce((a, p) => a + p.files_done, 0), files_total: [...progress.values()].reduce((a, p) => a + p.files_done, 0) },
          components: componentStatus(),
          ...(replicate && { replicationStatus: 'pending', replicationNextAt: finish }),
        },
        async (tx) => {
          await tx.backupArtifact.createMany({
            data: artifacts.map((a) => ({
              id: randomUUID(),
              backupId: backup.id,
              component: a.component,
              type: a.type,
              key,
              bytes: BigInt(a.bytes),
              storedBytes: BigInt(a.storedBytes),
              sha256: a.sha256,
              manifest: a.manifest as never,
              ...(a.baseBackup && { baseBackup: a.baseBackup as never }),
              locations: [
                { store: 'primary', url: repo.primary.locationOf(key), status: 'present' },
                ...(replicate ? [{ store: 'secondary' as const, url: repo.secondary!.locationOf(key), status: 'pending' as const }] : []),
              ] satisfies ArtifactLocation[],
            })),
          });
        },
      );
      if (!committed) {
        // declared lost meanwhile: its record says failed
        await repo.primary.delete(key).catch(() => {});
        await requestGc();
        return;
      }
      log.info({ backup_id: backup.id, bytes: size, stored_bytes: stored }, 'backup completed');
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

/**
 * Removes a `deleting` backup: its snapshot record from every store, then the record (its chunk
 * references go with it), then asks for a GC of the tenant's repository. Idempotent.
 */
export function createBackupDeleter(deps: { db: Db; ledger: Ledger; repo: RepoService; queues?: Pick<Queues, 'add'>; now?: () => Date }) {
  return async function deleteBackup(payload: { tenant_id: string; backup_id: string }): Promise<void> {
    const b = await deps.db.backup.findFirst({ where: { id: payload.backup_id, tenantId: payload.tenant_id } });
    if (!b || b.status !== 'deleting') return;
    for (const s of [deps.repo.primary, deps.repo.secondary]) if (s) await s.delete(snapshotKey(b.tenantId, b.id));
    await deps.ledger.removeDeleted(b.id, deps.now?.() ?? new Date());
    await deps.repo.repositories.requestGc(b.tenantId);
    await deps.queues?.add('maintenance', 'gc', { tenant_id: b.tenantId }, b.tenantId).catch(() => {});
  };
}

/** Delay before the n-th retry of a failed dual-region copy: 30 s doubling, at most 6 h. */
export function replicationBackoffMs(attempts: number): number {
  return Math.min(6 * 3600_000, 30_000 * 2 ** Math.max(0, attempts - 1));
}

/**
 * Copies what a dual-region backup relies on to the secondary store: every pack holding one of
 * its chunks (whole, checked against its id, the sha256 of its body), its snapshot record and
 * the repository config; records each pack's status. A failed copy makes the backup `degraded`
 * (shown on it and in metrics) and is retried with a growing backoff by the reconciler, never
 * given up on. Idempotent: packs already present are skipped.
 */
export function createReplicator(deps: { db: Db; repo: RepoService; log: Logger; now: () => Date }) {
  return async function replicate(payload: { tenant_id: string; backup_id: string }): Promise<void> {
    const { db, repo } = deps;
    const secondary = repo.secondary;
    if (!secondary) return;
    const b = await db.backup.findFirst({ where: { id: payload.backup_id, tenantId: payload.tenant_id, status: 'completed' }, include: { artifacts: true } });
    if (!b || b.replicationStatus === 'replicated') return;
    const problems: string[] = [];
    const packs = await db.$pool.query<{ id: string }>(
      `SELECT DISTINCT c.pack_id AS id FROM backup_chunks r JOIN chunks c ON c.tenant_id = r.tenant_id AND c.id = r.chunk_id
       JOIN packs p ON p.id = c.pack_id WHERE r.backup_id = $1 AND p.secondary_status IS DISTINCT FROM 'present'`,
      [b.id],
    );
    for (const { id } of packs.rows) {
      const key = packKey(b.tenantId, id);
      try {
        const body = await readWhole(repo.primary, key);
        if (packIdOf(body) !== id) throw new IntegrityError('the primary copy does not match its id');
        await secondary.putBuffer(key, body);
        await db.pack.updateMany({ where: { id }, data: { secondaryStatus: 'present' } });
      } catch (err) {
        deps.log.warn({ err, backup_id: b.id, pack: id }, 'replication of a pack failed');
        problems.push(`pack ${id.slice(0, 12)}: ${errorMessage(err)}`);
        await db.pack.updateMany({ where: { id }, data: { secondaryStatus: 'failed' } });
      }
    }
    const snap = snapshotKey(b.tenantId, b.id);
    try {
      await repo.repositories.keysOf(b.tenantId); // writes the config to the secondary if it is not there yet
      await secondary.putBuffer(snap, await readWhole(repo.primary, snap));
    } catch (err) {
      problems.push(`snapshot record: ${errorMessage(err)}`);
    }
    for (const a of b.artifacts) {
      const locations = a.locations as unknown as ArtifactLocation[];
      const sec = locations.find((l) => l.store === 'secondary');
      if (!sec) continue;
      sec.status = problems.length ? 'failed' : 'present';
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

/**
 * Re-reads every pack a completed backup relies on, whole, from every store that holds a copy:
 * the body must hash to the pack's id and every chunk in it must decrypt and match its MAC; and
 * every component's manifest must read back to its recorded sha256. Records the outcome.
 */
export function createVerifier(deps: { db: Db; repo: RepoService; now: () => Date }) {
  return async function verify(payload: { tenant_id: string; backup_id: string }): Promise<void> {
    const { db, repo } = deps;
    const claimed = await db.backup.updateMany({ where: { id: payload.backup_id, tenantId: payload.tenant_id, status: 'completed', verifyStatus: 'queued' }, data: { verifyStatus: 'running' } });
    if (!claimed.count) return;
    const b = await db.backup.findUniqueOrThrow({ where: { id: payload.backup_id }, include: { artifacts: { orderBy: { component: 'asc' } } } });
    const problems: string[] = [];
    const keys = await repo.repositories.keysOf(b.tenantId);
    const checked = new Map<string, string[]>(); // pack -> problems
    let packCount = 0;
    for (const a of b.artifacts) {
      const where = `component "${a.component}"`;
      try {
        const source = await repo.source(b.tenantId);
        const ids = new Set<string>(((a.manifest as { chunks?: string[] }).chunks ?? []));
        if (a.type === 'directory') {
          for await (const e of repo.entries(source, a)) for (const id of e.chunks ?? []) ids.add(id);
        } else {
          for (const id of (await repo.streamOf(source, a)).chunks) ids.add(id);
        }
        // Every pack holding one of them, and how many of them are located at all (one statement).
        const packs = await db.$pool.query<{ id: string; secondary_status: string | null; n: number }>(
          `SELECT p.id, p.secondary_status, count(*)::int AS n FROM chunks c JOIN packs p ON p.id = c.pack_id
           WHERE c.tenant_id = $1 AND c.id = ANY($2::text[]) GROUP BY p.id, p.secondary_status`,
          [b.tenantId, [...ids]],
        );
        const located = packs.rows.reduce((a, p) => a + p.n, 0);
        if (located !== ids.size) problems.push(`${where}: integrity check failed: ${ids.size - located} chunk(s) missing from the repository`);
        for (const p of packs.rows) {
          let found = checked.get(p.id);
          if (!found) {
            found = await verifyPackCopies(repo, keys, b.tenantId, { id: p.id, secondaryStatus: p.secondary_status });
            checked.set(p.id, found);
            packCount++;
          }
          for (const m of found) problems.push(`${where}: integrity check failed: ${m}`);
        }
      } catch (err) {
        problems.push(`${where}: ${describeFailure(err)}`);
      }
    }
    const at = deps.now();
    const data = {
      verifyStatus: problems.length ? 'failed' : 'passed',
      verifiedAt: at,
      verifyMessage: problems.length ? problems.join(' | ') : `${b.artifacts.length} component(s), ${packCount} pack(s) re-read at every location; every chunk verifies`,
    };
    // A failed verification is an event (SPEC section 10), recorded in the transaction of its outcome.
    await db.$transaction(async (tx) => {
      const r = await tx.backup.updateMany({ where: { id: b.id, verifyStatus: 'running' }, data });
      if (r.count > 0 && problems.length > 0) await announceBackup(tx, 'verification.failed', b.id, at);
    });
  };
}
