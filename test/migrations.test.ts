import { createHash, randomUUID } from 'node:crypto';
import { mkdtemp, mkdir, readFile, writeFile, cp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MIGRATIONS_DIR, migrate, readMigrations } from '../src/db/migrate.js';
import { createDb } from '../src/db/client.js';
import { createTestDatabase } from './helpers/db.js';

describe('migration runner', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  beforeAll(async () => {
    db = await createTestDatabase({ empty: true });
  });
  afterAll(async () => db.drop());

  it('applies every migration once and records it the way Prisma does', async () => {
    const first = await migrate(db.url);
    const all = await readMigrations();
    expect(first).toEqual(all.map((m) => m.name));
    expect(await migrate(db.url)).toEqual([]); // idempotent

    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    const { rows } = await c.query('SELECT * FROM _prisma_migrations ORDER BY migration_name');
    const cols = (await c.query(`SELECT column_name, data_type FROM information_schema.columns WHERE table_name = '_prisma_migrations' ORDER BY ordinal_position`)).rows;
    await c.end();
    expect(cols.map((r) => r.column_name)).toEqual(['id', 'checksum', 'finished_at', 'migration_name', 'logs', 'rolled_back_at', 'started_at', 'applied_steps_count']);
    expect(rows).toHaveLength(all.length);
    for (const [i, r] of rows.entries()) {
      const sql = await readFile(path.join(MIGRATIONS_DIR, r.migration_name, 'migration.sql'), 'utf8');
      expect(r.checksum).toBe(createHash('sha256').update(sql).digest('hex'));
      expect(r.migration_name).toBe(all[i]!.name);
      expect(r.finished_at).toBeInstanceOf(Date);
      expect(r.rolled_back_at).toBeNull();
      expect(r.applied_steps_count).toBe(1);
    }
  });

  it('refuses to run when an applied migration was edited', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'mig-'));
    await cp(MIGRATIONS_DIR, dir, { recursive: true });
    const [m] = await readMigrations(dir);
    await writeFile(path.join(dir, m!.name, 'migration.sql'), m!.sql + '\n-- edited\n');
    await expect(migrate(db.url, dir)).rejects.toThrow(/modified after it was applied/);
  });

  it('rolls back a failing migration and records nothing for it', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'mig-'));
    await cp(MIGRATIONS_DIR, dir, { recursive: true });
    await mkdir(path.join(dir, '99990101000000_broken'));
    await writeFile(path.join(dir, '99990101000000_broken', 'migration.sql'), 'CREATE TABLE half_done (id int);\nSELECT no_such_function();\n');
    await expect(migrate(db.url, dir)).rejects.toThrow(/99990101000000_broken failed/);
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    const t = await c.query(`SELECT to_regclass('half_done') AS t`);
    const r = await c.query(`SELECT count(*)::int AS n FROM _prisma_migrations WHERE migration_name = '99990101000000_broken'`);
    await c.end();
    expect(t.rows[0].t).toBeNull();
    expect(r.rows[0].n).toBe(0);
  });

  it('serialises concurrent runners (advisory lock): each migration is applied once', async () => {
    const fresh = await createTestDatabase({ empty: true });
    try {
      const results = await Promise.all([migrate(fresh.url), migrate(fresh.url), migrate(fresh.url)]);
      expect(results.flat().sort()).toEqual((await readMigrations()).map((m) => m.name));
    } finally {
      await fresh.drop();
    }
  });
});

/**
 * The migrations and schema.prisma agree: every model's every scalar field is written and read
 * back through the generated client against a database built only from the SQL migrations, and
 * every mapped column exists with no unmapped extra columns.
 */
describe('schema.prisma agrees with the migrations', () => {
  let tdb: Awaited<ReturnType<typeof createTestDatabase>>;
  beforeAll(async () => {
    tdb = await createTestDatabase();
  });
  afterAll(async () => tdb.drop());

  it('has exactly the columns the client maps, table by table', async () => {
    const { Prisma } = await import('../src/generated/prisma/client.js');
    const client = createDb(tdb.url, { poolSize: 2, connectTimeoutMs: 5000 });
    // The runtime data model the generated client carries (field -> column names).
    const model = (client as unknown as { _runtimeDataModel: { models: Record<string, { dbName: string | null; fields: { name: string; kind: string; dbName?: string }[] }> } })._runtimeDataModel;
    const c = new pg.Client({ connectionString: tdb.url });
    await c.connect();
    try {
      expect(Object.keys(model.models).sort()).toEqual(Object.values(Prisma.ModelName).sort());
      for (const [name, m] of Object.entries(model.models)) {
        const table = m.dbName ?? name;
        const expected = m.fields.filter((f) => f.kind !== 'object').map((f) => f.dbName ?? f.name).sort();
        const { rows } = await c.query('SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1', [table]);
        expect(rows.map((r) => r.column_name).sort(), `columns of ${table}`).toEqual(expected);
      }
    } finally {
      await c.end();
      await client.$disconnect();
    }
  });

  it('writes and reads every model and field through the client', async () => {
    const db = createDb(tdb.url, { poolSize: 2, connectTimeoutMs: 5000 });
    try {
      const now = new Date('2026-01-02T03:04:05.678Z');
      const tenant = await db.tenant.create({ data: { id: randomUUID(), name: 'schema-check', dataDir: 'schema-check', createdAt: now } });
      const key = await db.apiKey.create({
        data: { id: randomUUID(), tenantId: tenant.id, name: 'k', role: 'operator', prefix: 'bk_abc', tokenHash: 'h'.repeat(64), createdAt: now, expiresAt: now, lastUsedAt: now, revokedAt: now },
      });
      const apiClient = await db.apiClient.create({
        data: { id: randomUUID(), tenantId: tenant.id, name: 'c', role: 'viewer', secretHash: 's'.repeat(64), createdAt: now, lastUsedAt: now, deletedAt: now },
      });
      const policy = await db.policy.create({
        data: { id: randomUUID(), tenantId: tenant.id, name: 'p', isDefault: true, defaultFor: 'staging', scheduledLive: false, timezone: 'Europe/Berlin', schedule: [{ interval: '1d', count: 7 }], maxBackups: 9, manualCount: 2, manualRateLimit: '1h', failedCount: 1, recoveryWindow: '14d', createdAt: now, updatedAt: now },
      });
      const restoreId = randomUUID();
      const cluster = await db.cluster.create({
        data: {
          id: randomUUID(), tenantId: tenant.id, name: 'c', environment: 'staging', region: 'eu-1', backupLocation: 'dual_region', policyId: policy.id,
          deletionProtection: true, components: [{ name: 'db', type: 'postgres' }], status: 'restoring', nextBackupAt: now, lastSkippedAt: now, createdAt: now, updatedAt: now,
          activeJobId: restoreId, activeJobKind: 'restore', retentionDirty: true, lastManualAt: now, policyFollowsEnvironment: true,
          hooks: { pre_backup: { url: 'https://hooks.example.com/pre', timeout_s: 30 } }, hooksSecretEnc: 'enc:v1:x',
        },
      });
      const backup = await db.backup.create({
        data: {
          id: randomUUID(), tenantId: tenant.id, clusterId: cluster.id, trigger: 'scheduled', status: 'deleting', live: false, createdAt: now, startedAt: now, completedAt: now,
          sizeBytes: 5n * 1024n ** 3n, bytesDone: 7n, components: [{ name: 'db', status: 'completed' }], errorComponent: 'db', errorMessage: 'm', workerId: 'w', leaseExpiresAt: now, verifyStatus: 'passed', verifiedAt: now, verifyMessage: 'ok',
          replicationStatus: 'degraded', replicationAttempts: 2, replicationNextAt: now, replicationError: 'e',
          storedBytes: 4n * 1024n ** 3n, pausedMs: 12, hookState: 'resumed', progress: { bytes_done: 1, bytes_total: null, files_done: 0, files_total: null },
        },
      });
      const artifact = await db.backupArtifact.create({
        data: { id: randomUUID(), backupId: backup.id, component: 'db', key: 'k', bytes: 3n * 1024n ** 3n, sha256: 'a'.repeat(64), locations: [{ store: 'primary' }], createdAt: now,
          type: 'postgres', storedBytes: 2n * 1024n ** 3n, manifest: { chunks: ['c'.repeat(64)], bytes: 10 }, baseBackup: { start_lsn: '0/2000028', end_lsn: '0/2000100', timeline: 1 } },
      });
      const repository = await db.repository.create({ data: { tenantId: tenant.id, wrappedKeys: 'bkkeys:v1:x', keyId: 'k1', createdAt: now, gcRequestedAt: now, gcRanAt: now, verifiedAt: now } });
      const pack = await db.pack.create({
        data: { id: 'p'.repeat(64), tenantId: tenant.id, bytes: 20n * 1024n ** 3n, chunkCount: 3, status: 'doomed', secondaryStatus: 'present', createdAt: now, doomedAt: now, verifiedAt: now, verifyError: 'x' },
      });
      const chunk = await db.chunk.create({ data: { tenantId: tenant.id, id: 'c'.repeat(64), packId: pack.id, packOffset: 7, length: 9, rawLength: 11, clusterId: cluster.id, createdAt: now } });
      const ref = await db.backupChunk.create({ data: { backupId: backup.id, tenantId: tenant.id, chunkId: chunk.id } });
      expect(await db.repository.findUniqueOrThrow({ where: { tenantId: tenant.id } })).toEqual(repository);
      expect(await db.pack.findUniqueOrThrow({ where: { id: pack.id } })).toEqual(pack);
      expect(await db.chunk.findUniqueOrThrow({ where: { tenantId_id: { tenantId: tenant.id, id: chunk.id } }, include: { pack: true } })).toEqual({ ...chunk, pack });
      expect(await db.backupChunk.findUniqueOrThrow({ where: { backupId_chunkId: { backupId: backup.id, chunkId: chunk.id } } })).toEqual(ref);
      // PITR (SPEC section 13): a stream, its stored WAL files and their references, which GC reads with backups' through chunk_refs
      const stream = await db.walStream.create({
        data: {
          id: randomUUID(), tenantId: tenant.id, clusterId: cluster.id, component: 'db', slotName: 'bk_x', urlEnc: 'enc:v1:u', status: 'dropping', state: 'behind', error: 'e',
          leaseOwner: 'w', leaseExpiresAt: now, latestRestorableTime: now, storedLsn: 2n ** 40n, lagBytes: 7n, reportedAt: now, createdAt: now, updatedAt: now,
        },
      });
      const segment = await db.walSegment.create({
        data: {
          id: randomUUID(), streamId: stream.id, tenantId: tenant.id, name: '000000010000000000000003', timeline: 1, startLsn: 3n * 2n ** 24n, endLsn: 4n * 2n ** 24n, partial: true,
          coversUntil: now, status: 'stored', bytes: 16n * 2n ** 20n, storedBytes: 9n, sha256: 'b'.repeat(64), manifest: { chunks: [], bytes: 0 }, createdAt: now,
        },
      });
      const walRef = await db.walChunk.create({ data: { segmentId: segment.id, tenantId: tenant.id, chunkId: chunk.id } });
      expect(await db.walStream.findUniqueOrThrow({ where: { id: stream.id }, include: { segments: { include: { chunkRefs: true } } } })).toEqual({ ...stream, segments: [{ ...segment, chunkRefs: [walRef] }] });
      // one active stream per component; a dropping one beside it is fine
      await db.walStream.create({ data: { ...stream, id: randomUUID(), status: 'active' } });
      await expect(db.walStream.create({ data: { ...stream, id: randomUUID(), status: 'active' } })).rejects.toThrow();
      await db.walStream.deleteMany({ where: { clusterId: cluster.id, status: 'active' } });
      // one stored version of a file per stream; a writing one beside it is fine
      await expect(db.walSegment.create({ data: { ...segment, id: randomUUID(), manifest: { chunks: [], bytes: 0 } } })).rejects.toThrow();
      await db.walSegment.create({ data: { ...segment, id: randomUUID(), status: 'writing', manifest: { chunks: [], bytes: 0 } } });
      await expect(db.walStream.update({ where: { id: stream.id }, data: { state: 'lost' } })).rejects.toThrow();
      const refs = await db.$queryRaw<{ n: number }[]>`SELECT count(*)::int AS n FROM chunk_refs WHERE tenant_id = ${tenant.id}::uuid AND chunk_id = ${chunk.id}`;
      expect(refs[0]!.n).toBe(2); // the backup's and the WAL file's
      await db.walStream.delete({ where: { id: stream.id } });
      expect(await db.walChunk.count({ where: { segmentId: segment.id } })).toBe(0);
      await expect(db.pack.delete({ where: { id: pack.id } })).rejects.toThrow(); // a chunk still points at it
      await db.chunk.delete({ where: { tenantId_id: { tenantId: tenant.id, id: chunk.id } } });
      const restore = await db.restore.create({
        data: {
          id: restoreId, tenantId: tenant.id, backupId: backup.id, sourceClusterId: cluster.id, clusterId: cluster.id, components: ['db'], paths: ['a/b'], status: 'running', errorComponent: 'db', errorMessage: 'e',
          createdAt: now, startedAt: now, completedAt: now, workerId: 'w', leaseExpiresAt: now, hookState: 'paused', pointInTime: now, targetDatabase: 'recovered',
        },
      });
      const idem = await db.idempotencyRecord.create({
        data: { tenantId: tenant.id, key: 'k', requestHash: 'h', responseStatus: 202, responseBody: { a: 1 }, location: '/x', createdAt: now },
      });
      const audit = await db.auditEvent.create({
        data: { id: randomUUID(), tenantId: tenant.id, keyId: key.id, actor: 'api_key', action: 'backup.create', targetType: 'backup', targetId: backup.id, outcome: 'success', statusCode: 202, method: 'POST', path: '/x', requestId: 'r', createdAt: now },
      });
      expect(await db.auditEvent.findUniqueOrThrow({ where: { id: audit.id } })).toEqual(audit);
      const event = await db.event.create({ data: { id: randomUUID(), tenantId: tenant.id, type: 'backup.completed', occurredAt: now, clusterId: cluster.id, data: { backup: { id: backup.id } }, dispatchedAt: now } });
      expect(event.seq).toBeTypeOf('bigint');
      const webhook = await db.webhook.create({
        data: {
          id: randomUUID(), tenantId: tenant.id, url: 'https://hooks.example.com/in', events: ['backup.completed', 'backup.failed'], description: 'd', secretEnc: 'enc',
          enabled: false, disabledAt: now, disabledReason: 'r', failingSince: now, createdAt: now, updatedAt: now,
        },
      });
      const delivery = await db.webhookDelivery.create({
        data: { id: randomUUID(), tenantId: tenant.id, webhookId: webhook.id, eventId: event.id, status: 'failed', attempts: 2, nextAttemptAt: now, lastAttemptAt: now, createdAt: now, deliveredAt: now },
      });
      const attempt = await db.webhookAttempt.create({
        data: { id: randomUUID(), tenantId: tenant.id, webhookId: webhook.id, deliveryId: delivery.id, eventId: event.id, attempt: 2, startedAt: now, durationMs: 12, statusCode: 503, outcome: 'failed', error: 'e' },
      });
      expect(await db.event.findUniqueOrThrow({ where: { id: event.id } })).toEqual(event);
      expect(await db.webhook.findUniqueOrThrow({ where: { id: webhook.id } })).toEqual(webhook);
      expect(await db.webhookDelivery.findUniqueOrThrow({ where: { webhookId_eventId: { webhookId: webhook.id, eventId: event.id } } })).toEqual(delivery);
      expect(await db.webhookAttempt.findUniqueOrThrow({ where: { id: attempt.id } })).toEqual(attempt);
      expect(
        await db.webhook.findUniqueOrThrow({ where: { id: webhook.id }, include: { deliveries: { include: { event: true, attemptRows: true } }, attempts: { include: { delivery: true } } } }),
      ).toEqual({ ...webhook, deliveries: [{ ...delivery, event, attemptRows: [attempt] }], attempts: [{ ...attempt, delivery }] });
      expect(await db.event.findUniqueOrThrow({ where: { id: event.id }, include: { deliveries: true } })).toEqual({ ...event, deliveries: [delivery] });
      // one delivery per (webhook, event); the checks on status and outcome hold
      await expect(db.webhookDelivery.create({ data: { id: randomUUID(), tenantId: tenant.id, webhookId: webhook.id, eventId: event.id } })).rejects.toThrow();
      await expect(db.webhookDelivery.update({ where: { id: delivery.id }, data: { status: 'lost' } })).rejects.toThrow();
      await expect(db.webhookAttempt.update({ where: { id: attempt.id }, data: { outcome: 'maybe' } })).rejects.toThrow();
      // deleting an event deletes its deliveries and their attempts; deleting a webhook, its own
      const event2 = await db.event.create({ data: { id: randomUUID(), tenantId: tenant.id, type: 'cluster.deleted', clusterId: null, data: {} } });
      const delivery2 = await db.webhookDelivery.create({ data: { id: randomUUID(), tenantId: tenant.id, webhookId: webhook.id, eventId: event2.id } });
      expect(delivery2).toMatchObject({ status: 'pending', attempts: 0, lastAttemptAt: null, deliveredAt: null });
      expect(event2.seq).toBeGreaterThan(event.seq);
      await db.webhookAttempt.create({
        data: { id: randomUUID(), tenantId: tenant.id, webhookId: webhook.id, deliveryId: delivery2.id, eventId: event2.id, attempt: 1, startedAt: now, durationMs: 1, outcome: 'delivered' },
      });
      await db.event.delete({ where: { id: event2.id } });
      expect(await db.webhookDelivery.count({ where: { id: delivery2.id } })).toBe(0);
      expect(await db.webhookAttempt.count({ where: { deliveryId: delivery2.id } })).toBe(0);
      const webhook2 = await db.webhook.create({ data: { id: randomUUID(), tenantId: tenant.id, url: 'https://x.example.com/', events: ['hook.failed'], secretEnc: 'enc' } });
      expect(webhook2).toMatchObject({ enabled: true, description: null, disabledAt: null, failingSince: null });
      const delivery3 = await db.webhookDelivery.create({ data: { id: randomUUID(), tenantId: tenant.id, webhookId: webhook2.id, eventId: event.id } });
      await db.webhookAttempt.create({
        data: { id: randomUUID(), tenantId: tenant.id, webhookId: webhook2.id, deliveryId: delivery3.id, eventId: event.id, attempt: 1, startedAt: now, durationMs: 1, outcome: 'delivered' },
      });
      await db.webhook.delete({ where: { id: webhook2.id } });
      expect(await db.webhookDelivery.count({ where: { webhookId: webhook2.id } })).toBe(0);
      expect(await db.webhookAttempt.count({ where: { webhookId: webhook2.id } })).toBe(0);
      // an event outlives its cluster (no foreign key on cluster_id)
      const gone = await db.event.create({ data: { id: randomUUID(), tenantId: tenant.id, type: 'cluster.deleted', clusterId: randomUUID(), data: {} } });
      expect(await db.event.findUniqueOrThrow({ where: { id: gone.id } })).toEqual(gone);
      const setting = await db.serviceSetting.create({ data: { name: 'schema-check', value: 'v', createdAt: now } });
      expect(await db.serviceSetting.findUniqueOrThrow({ where: { name: 'schema-check' } })).toEqual(setting);
      expect(await db.tenant.findUniqueOrThrow({ where: { id: tenant.id } })).toEqual(tenant);
      expect(await db.apiKey.findUniqueOrThrow({ where: { id: key.id } })).toEqual(key);
      expect(await db.apiClient.findUniqueOrThrow({ where: { id: apiClient.id } })).toEqual(apiClient);
      expect(await db.policy.findUniqueOrThrow({ where: { id: policy.id } })).toEqual(policy);
      expect(await db.cluster.findUniqueOrThrow({ where: { id: cluster.id } })).toEqual(cluster);
      expect(await db.backup.findUniqueOrThrow({ where: { id: backup.id } })).toEqual(backup);
      expect(await db.backupArtifact.findUniqueOrThrow({ where: { id: artifact.id } })).toEqual(artifact);
      expect(await db.restore.findUniqueOrThrow({ where: { id: restore.id } })).toEqual(restore);
      expect(await db.idempotencyRecord.findUniqueOrThrow({ where: { tenantId_key: { tenantId: tenant.id, key: 'k' } } })).toEqual(idem);
      // Relations and cascades declared in the schema exist in the database.
      const withAll = await db.tenant.findUniqueOrThrow({
        where: { id: tenant.id },
        include: {
          apiKeys: true, apiClients: true, policies: true, repository: true, packs: true, events: true, webhooks: true, webhookDeliveries: true, webhookAttempts: true,
          clusters: { include: { backups: { include: { artifacts: true, restores: true, chunkRefs: true } } } },
        },
      });
      expect(withAll.events.map((e) => e.id).sort()).toEqual([event.id, gone.id].sort());
      expect(withAll.webhooks).toEqual([webhook]);
      expect(withAll.webhookDeliveries).toEqual([delivery]);
      expect(withAll.webhookAttempts).toEqual([attempt]);
      expect(withAll.repository).toEqual(repository);
      expect(withAll.apiClients).toEqual([apiClient]);
      expect(withAll.packs).toEqual([pack]);
      expect(withAll.clusters[0]!.backups[0]!.chunkRefs).toEqual([ref]);
      expect(withAll.clusters[0]!.backups[0]!.artifacts).toHaveLength(1);
      expect(withAll.clusters[0]!.backups[0]!.restores).toHaveLength(1);
      await db.tenant.delete({ where: { id: tenant.id } });
      expect(await db.backupArtifact.count()).toBe(0);
      expect(await db.backupChunk.count()).toBe(0);
      expect(await db.pack.count()).toBe(0);
      expect(await db.repository.count()).toBe(0);
      expect(await db.apiClient.count()).toBe(0);
      expect(await db.event.count()).toBe(0);
      expect(await db.webhook.count()).toBe(0);
      expect(await db.webhookDelivery.count()).toBe(0);
      expect(await db.webhookAttempt.count()).toBe(0);
    } finally {
      await db.$disconnect();
    }
  });
});
