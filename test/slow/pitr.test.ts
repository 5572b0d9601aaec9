import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startService, waitUntil } from '../faults/procs.js';
import { createTenant, startStack, waitFor, type Stack } from '../helpers/stack.js';
import { createTenantDatabase, tenantServerUrl } from '../helpers/db.js';
import { startArchiverRole } from '../../src/roles/archiver.js';
import type { Archiver } from '../../src/modules/pitr/archiver.js';

// Point-in-time recovery end to end (SPEC section 13): a continuous component on the tenants'
// server, its WAL archived by an archiver role, a base backup taken by a worker, and restores
// to points in time into new databases.

let s: Stack;
let token: string;
let archiver: Archiver;
let source: Awaited<ReturnType<typeof createTenantDatabase>>;
let clusterId: string;
let workDir: string;
const created: string[] = [];
const stamps: { before: Date; after: Date }[] = [];

async function query<T extends pg.QueryResultRow>(database: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: `${tenantServerUrl()}/${database}` });
  await c.connect();
  try {
    return (await c.query<T>(sql, params)).rows;
  } finally {
    await c.end();
  }
}
const serverNow = async () => (await query<{ t: Date }>('postgres', 'SELECT clock_timestamp() AS t'))[0]!.t;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Inserts row `id`, noting the server's time just before and just after its commit. */
async function insertRow(id: number) {
  const before = await serverNow();
  await query(source.name, 'INSERT INTO items (id) VALUES ($1)', [id]);
  stamps.push({ before, after: await serverNow() });
}

async function window() {
  const r = await s.request('GET', `/v1/clusters/${clusterId}/recovery-window`, { token });
  expect(r.status, r.text).toBe(200);
  return r.body.components[0] as { component: string; earliest_restorable_time: string | null; latest_restorable_time: string | null; lag_bytes: number | null; state: string; error: string | null };
}

async function restoreAt(at: Date, database: string) {
  const r = await s.request('POST', `/v1/clusters/${clusterId}/restores`, { token, body: { point_in_time: at.toISOString(), target_database: database } });
  expect(r.status, `${r.text}\n${r.status === 500 ? s.logs().split('\n').filter((l) => l.includes('"level":50')).slice(-3).join('\n') : ''}`).toBe(202);
  created.push(database);
  expect(r.body).toMatchObject({ point_in_time: at.toISOString(), target_database: database, status: 'queued' });
  const done = await waitFor(
    async () => {
      const g = await s.request('GET', r.headers.location as string, { token });
      return ['completed', 'failed'].includes(g.body.status) ? g.body : null;
    },
    150_000,
    `restore to ${at.toISOString()}`,
  );
  expect(done.error, JSON.stringify(done.error)).toBeNull();
  expect(done.status).toBe('completed');
  return (await query<{ id: number }>(database, 'SELECT id FROM items ORDER BY id')).map((x) => x.id);
}

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'bk-pitr-'));
  // The scratch instances run as the postgres OS user (we are root here): it must reach them.
  await chmod(workDir, 0o755);
  s = await startStack({ env: { ARCHIVER_LEASE_MS: '3000', PITR_WORK_DIR: workDir } });
  token = (await createTenant(s)).adminToken;
  source = await createTenantDatabase();
  await query(source.name, 'CREATE TABLE items (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())');
  // Two manual backups in a row (no manual rate limit), and a one-day recovery window.
  const policy = await s.request('POST', '/v1/policies', { token, body: { name: 'pitr', manual_rate_limit: null, recovery_window: '1d' } });
  expect(policy.status, policy.text).toBe(201);
  const c = await s.request('POST', '/v1/clusters', { token, body: { name: 'pitr', policy_id: policy.body.id, components: [{ name: 'db', type: 'postgres', config: { url: source.url, continuous: true } }] } });
  expect(c.status, c.text).toBe(201);
  clusterId = c.body.id;
  archiver = startArchiverRole(s.rt);
}, 60_000);

afterAll(async () => {
  await archiver?.close();
  // Deleting the cluster drops its slot: nothing stays on the shared server.
  if (clusterId) await s.request('DELETE', `/v1/clusters/${clusterId}`, { token });
  for (const st of await s.rt.db.walStream.findMany()) {
    await query('postgres', 'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active', [st.slotName]).catch(() => {});
  }
  for (const d of created) await query('postgres', `DROP DATABASE IF EXISTS ${d} WITH (FORCE)`).catch(() => {});
  await s.close();
  await source.drop();
  await rm(workDir, { recursive: true, force: true });
}, 60_000);

describe('point-in-time recovery', () => {
  let backupId: string;

  it('a backup of a continuous component is a base backup, recorded once its WAL is archived; the window opens at its stop time', async () => {
    const b = await s.request('POST', `/v1/clusters/${clusterId}/backups`, { token });
    expect(b.status, b.text).toBe(202);
    backupId = b.body.id;
    const done = await waitFor(
      async () => {
        const g = await s.request('GET', `/v1/clusters/${clusterId}/backups/${backupId}`, { token });
        return ['completed', 'failed'].includes(g.body.status) ? g.body : null;
      },
      150_000,
      'the base backup',
    );
    expect(done.error, JSON.stringify(done.error)).toBeNull();
    const artifact = await s.rt.db.backupArtifact.findFirstOrThrow({ where: { backupId } });
    expect(artifact.baseBackup).toMatchObject({ start_lsn: expect.stringMatching(/^[0-9A-F]+\/[0-9A-F]+$/), end_lsn: expect.stringMatching(/\//), timeline: 1 });
    const w = await window();
    expect(w.component).toBe('db');
    expect(w.earliest_restorable_time).toBe((artifact.baseBackup as { stop_time: string }).stop_time);
  }, 180_000);

  it('a second base backup deduplicates against the first', async () => {
    const b = await s.request('POST', `/v1/clusters/${clusterId}/backups`, { token });
    expect(b.status, b.text).toBe(202);
    const done = await waitFor(
      async () => {
        const g = await s.request('GET', `/v1/clusters/${clusterId}/backups/${b.body.id}`, { token });
        return ['completed', 'failed'].includes(g.body.status) ? g.body : null;
      },
      150_000,
      'the second base backup',
    );
    expect(done.error, JSON.stringify(done.error)).toBeNull();
    // The whole server, read again: only what changed (a few pages, the new backup_label) is stored.
    expect(done.size_bytes).toBeGreaterThan(10 * 1024 * 1024);
    expect(done.stored_bytes, `stored ${done.stored_bytes} of ${done.size_bytes}`).toBeLessThan(done.size_bytes * 0.2);
  }, 180_000);

  it('the continuous component\'s archive is the base backup\'s tar', async () => {
    const r = await s.request('GET', `/v1/clusters/${clusterId}/backups/${backupId}/components/db/archive`, { token });
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('application/x-tar');
    expect(r.headers['content-disposition']).toMatch(/\.basebackup\.tar"$/);
    expect(r.text).toContain('START WAL LOCATION');
  });

  it('rows inserted at t1 < t2 < t3; latest_restorable_time stays within 10 s of now while streaming', async () => {
    for (const id of [1, 2, 3]) {
      await insertRow(id);
      await sleep(1500);
    }
    const third = stamps[2]!.after;
    // Repeatedly over ~12 s, under a steady trickle of writes: never more than 10 s behind.
    for (let i = 0; i < 6; i++) {
      await query(source.name, 'CREATE TABLE IF NOT EXISTS noise (n int); INSERT INTO noise VALUES (1)');
      const w = await window();
      expect(w.state).toBe('streaming');
      expect(w.latest_restorable_time).not.toBeNull();
      const behind = (await serverNow()).getTime() - Date.parse(w.latest_restorable_time!);
      expect(behind, `latest_restorable_time ${w.latest_restorable_time} trails by ${behind} ms`).toBeLessThan(10_000);
      await sleep(2000);
    }
    expect(Date.parse((await window()).latest_restorable_time!)).toBeGreaterThan(third.getTime() + 500);
  }, 60_000);

  it('a restore to a time between t2 and t3 gives a new database with exactly the rows up to t2', async () => {
    const between = new Date((stamps[1]!.after.getTime() + stamps[2]!.before.getTime()) / 2);
    expect(await restoreAt(between, `bk_pitr_mid_${randomBytes(3).toString('hex')}`)).toEqual([1, 2]);
    // The component's own database is untouched.
    expect((await query<{ id: number }>(source.name, 'SELECT id FROM items ORDER BY id')).map((x) => x.id)).toEqual([1, 2, 3]);
  }, 180_000);

  it('a restore to just after t3 gives all of them', async () => {
    expect(await restoreAt(new Date(stamps[2]!.after.getTime() + 300), `bk_pitr_all_${randomBytes(3).toString('hex')}`)).toEqual([1, 2, 3]);
  }, 180_000);

  it('an existing target database answers 409; a time outside the window 422 naming the window; a bad name 422', async () => {
    const at = new Date(stamps[2]!.after.getTime() + 300).toISOString();
    const exists = await s.request('POST', `/v1/clusters/${clusterId}/restores`, { token, body: { point_in_time: at, target_database: source.name } });
    expect(exists.status).toBe(409);
    expect(exists.headers['content-type']).toMatch(/application\/problem\+json/);
    expect(exists.body.detail).toContain(source.name);

    const w = await window();
    for (const t of [new Date(Date.parse(w.earliest_restorable_time!) - 60_000), new Date(Date.now() + 3_600_000)]) {
      const r = await s.request('POST', `/v1/clusters/${clusterId}/restores`, { token, body: { point_in_time: t.toISOString(), target_database: 'bk_pitr_never' } });
      expect(r.status).toBe(422);
      const msg = r.body.errors.find((e: { path: string }) => e.path === 'body.point_in_time')?.message as string;
      expect(msg).toMatch(/outside the recovery window/);
      expect(msg).toContain(w.earliest_restorable_time!);
    }
    const bad = await s.request('POST', `/v1/clusters/${clusterId}/restores`, { token, body: { point_in_time: at, target_database: 'Robert"); DROP' } });
    expect(bad.status).toBe(422);
    expect(JSON.stringify(bad.body.errors)).toMatch(/target_database/);
    const noTz = await s.request('POST', `/v1/clusters/${clusterId}/restores`, { token, body: { point_in_time: '2026-12-03 10:00', target_database: 'bk_x' } });
    expect(noTz.status).toBe(422);
    expect((await query('postgres', "SELECT 1 FROM pg_database WHERE datname = 'bk_pitr_never'")).length).toBe(0);
  }, 60_000);

  it('after an archiver is killed with kill -9 another takes over, and a restore to a time inside the outage works', async () => {
    // The stream moves to an archiver in a process of its own.
    await archiver.close();
    const child = startService({
      DATABASE_URL: s.databaseUrl,
      REDIS_URL: inject('redisUrl'),
      ENCRYPTION_KEY: s.rt.config.encryptionKey.toString('base64'),
      STORAGE_URL: s.rt.config.storageUrl,
      DATA_ROOT: s.dataRoot,
      ROLES: 'archiver',
      ARCHIVER_LEASE_MS: '3000',
      PITR_WORK_DIR: path.join(workDir, 'child'),
      TARGET_ALLOWED_HOSTS: '127.0.0.1',
      QUEUE_PREFIX: `bktest-pitr-${randomBytes(4).toString('hex')}`,
    });
    try {
      const since = new Date();
      await waitUntil(async () => {
        const row = await s.rt.db.walStream.findFirst({ where: { clusterId, status: 'active' } });
        return row?.leaseOwner?.includes(`:${child.proc.pid}:`) && row.reportedAt! > since && row.state === 'streaming';
      }, 30_000, `the child archiver to stream (logs: ${child.logs()})`);
      await insertRow(4);
      await sleep(1000);
      child.proc.kill('SIGKILL');
      await child.exited;
      // The outage: rows 5 and 6 while nobody archives; then another archiver takes over.
      await insertRow(5);
      await sleep(1200);
      await insertRow(6);
      await sleep(1000);
    } finally {
      child.proc.kill('SIGKILL');
    }
    archiver = startArchiverRole(s.rt);
    await waitFor(async () => Date.parse((await window()).latest_restorable_time ?? '0') > stamps[5]!.after.getTime() + 500, 30_000, 'the window to pass the outage');
    const inOutage = new Date((stamps[4]!.after.getTime() + stamps[5]!.before.getTime()) / 2);
    expect(await restoreAt(inOutage, `bk_pitr_out_${randomBytes(3).toString('hex')}`)).toEqual([1, 2, 3, 4, 5]);
  }, 180_000);

  it('restoring the base backup itself puts the component back as it was at the backup', async () => {
    const r = await s.request('POST', `/v1/clusters/${clusterId}/backups/${backupId}/restore`, { token });
    expect(r.status, r.text).toBe(202);
    const done = await waitFor(
      async () => {
        const g = await s.request('GET', r.headers.location as string, { token });
        return ['completed', 'failed'].includes(g.body.status) ? g.body : null;
      },
      150_000,
      'the restore of the base backup',
    );
    expect(done.error, JSON.stringify(done.error)).toBeNull();
    expect(await query(source.name, 'SELECT id FROM items')).toEqual([]);
  }, 180_000);
});
