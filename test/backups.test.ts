import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, readdir, symlink, writeFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, createTenant, startStack, waitFor, waitForBackup, type Stack } from './helpers/stack.js';
import { plantBackup } from './helpers/jobs.js';
import { createTenantDatabase, tenantUrl } from './helpers/db.js';
import { artifactOf, exportOf, manifestOf, packsOfBackup, runGc, sha256, snapshotRecordAt, storedPacks, unreferencedStoredPacks } from './helpers/repo.js';

let s: Stack;
let admin: string;
let tenantId: string;
// The tenant's folder, DATA_ROOT/<data_dir>: where its directory components live.
let home: string;
let operator: string;
let seeded: Awaited<ReturnType<typeof createTenantDatabase>>;

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) out.push(path.join(e.parentPath, e.name));
  return out;
}

beforeAll(async () => {
  // Small packs, so that a backup that fails has uploaded some of its data already.
  s = await startStack({ env: { PACK_TARGET_BYTES: String(1024 * 1024) } });
  const t = await createTenant(s);
  home = t.dir;
  admin = t.adminToken;
  tenantId = t.tenantId;
  operator = await createKey(s, admin, 'operator');
  await mkdir(path.join(home, 'site', 'nested'), { recursive: true });
  await writeFile(path.join(home, 'site', 'index.html'), '<h1>hello</h1>'.repeat(1000));
  await writeFile(path.join(home, 'site', 'nested', 'data.bin'), Buffer.alloc(300_000, 7));
  seeded = await createTenantDatabase();
  const c = new pg.Client({ connectionString: seeded.url });
  await c.connect();
  await c.query('CREATE TABLE orders (id serial primary key, item text not null, qty int not null)');
  await c.query(`INSERT INTO orders (item, qty) SELECT 'item-' || g, g FROM generate_series(1, 500) g`);
  await c.end();
});
afterAll(async () => {
  await s.close();
  await seeded.drop();
});

/** A policy without a manual rate limit, so tests can take several backups in a row. */
async function cluster(name: string, components: unknown[], policy: Record<string, unknown> = { manual_rate_limit: null }) {
  const p = await s.request('POST', '/v1/policies', { token: admin, body: { name: `p-${name}`, ...policy } });
  expect(p.status).toBe(201);
  const c = await s.request('POST', '/v1/clusters', { token: admin, body: { name, policy_id: p.body.id, components } });
  expect(c.status, c.text).toBe(201);
  return c.body.id as string;
}

/**
 * What "leaves no artifact" means in the repository: no snapshot record and no chunk reference of
 * the backup, and once GC ran (no grace) no pack that was not there before it (what it uploaded
 * before failing was referenced by it alone).
 */
async function expectNothingLeftBy(backupId: string, packsBefore: string[]) {
  expect((await listFiles(s.storageRoot)).filter((f) => f.includes(backupId))).toEqual([]);
  expect(await snapshotRecordAt(s, s.storageRoot, tenantId, backupId)).toBeNull();
  expect(await s.rt.db.backupArtifact.count({ where: { backupId } })).toBe(0);
  await runGc(s, tenantId);
  expect(await packsOfBackup(s, backupId)).toEqual([]);
  expect(await s.rt.db.backupChunk.count({ where: { backupId } })).toBe(0);
  const after = await storedPacks(s.storageRoot, tenantId);
  expect(after.filter((p) => !packsBefore.includes(p))).toEqual([]);
  expect(await s.rt.db.pack.count({ where: { tenantId, id: { notIn: packsBefore } } })).toBe(0);
  expect(await unreferencedStoredPacks(s, s.storageRoot, tenantId)).toEqual([]);
}

describe('manual backups', () => {
  it('backs up a directory: 202 + Location, then completed with the sha256 of the stored artifact', async () => {
    const id = await cluster('dir', [{ name: 'files', type: 'directory', config: { path: 'site' } }]);
    const res = await s.request('POST', `/v1/clusters/${id}/backups`, { token: operator });
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ cluster_id: id, trigger: 'manual', status: 'queued', live: true, components: [{ name: 'files', status: 'queued' }] });
    expect(res.headers.location).toBe(`/v1/clusters/${id}/backups/${res.body.id}`);
    const done = await waitForBackup(s, operator, id, res.body.id);
    expect(done.status, JSON.stringify(done.error)).toBe('completed');
    expect(done.components).toEqual([{ name: 'files', status: 'completed' }]);
    expect(done.artifacts).toHaveLength(1);
    const a = done.artifacts[0];
    // The artifact's sha256 is that of the component's manifest, read back through the repository.
    const row = await artifactOf(s, done.id, 'files');
    const manifest = await manifestOf(s, tenantId, row);
    expect(a.sha256).toBe(sha256(manifest));
    expect(row.sha256).toBe(a.sha256);
    // Logical bytes: the files of the tree.
    const logical = 14_000 + 300_000;
    expect(a.bytes).toBe(logical);
    expect(done.size_bytes).toBe(logical);
    expect(done.progress.bytes_done).toBe(logical);
    expect(manifest.subarray(0, manifest.indexOf(0x0a)).toString()).toContain('"format":"bk-manifest/v1"');
    // The snapshot holds the tree: its manifest lists it, and its export is a tar of it.
    const entries = manifest.toString().split('\n').filter(Boolean).slice(1).map((l) => JSON.parse(l).path as string);
    expect(entries).toEqual(expect.arrayContaining(['index.html', 'nested', 'nested/data.bin']));
    const tarFile = path.join(home, '..', `export-${done.id}.tar`);
    await writeFile(tarFile, await exportOf(s, tenantId, row));
    const { stdout } = await promisify(execFile)('tar', ['-tf', tarFile]);
    expect(stdout).toContain('index.html');
    expect(stdout).toContain('nested/data.bin');
    // A sealed snapshot record of the backup is in the store: the artifact's key, naming the same manifest.
    expect(row.key).toBe(`repos/${tenantId}/snapshots/${done.id}`);
    expect(fileURLToPath(a.location)).toBe(path.join(s.storageRoot, row.key));
    const record = await snapshotRecordAt(s, s.storageRoot, tenantId, done.id);
    expect(record?.components).toEqual([expect.objectContaining({ name: 'files', sha256: a.sha256, bytes: a.bytes })]);
  });

  it('backs up a seeded PostgreSQL database with pg_dump -Fc', async () => {
    const id = await cluster('pg', [{ name: 'db', type: 'postgres', config: { url: seeded.url } }]);
    const res = await s.request('POST', `/v1/clusters/${id}/backups`, { token: operator });
    const done = await waitForBackup(s, operator, id, res.body.id);
    expect(done.status, JSON.stringify(done.error)).toBe('completed');
    const row = await artifactOf(s, done.id, 'db');
    expect(done.artifacts[0].sha256).toBe(sha256(await manifestOf(s, tenantId, row)));
    const bytes = await exportOf(s, tenantId, row);
    expect(bytes.subarray(0, 5).toString()).toBe('PGDMP'); // custom format
    expect(done.artifacts[0].bytes).toBe(bytes.length);
    const file = path.join(home, '..', `export-${done.id}.pgdump`);
    await writeFile(file, bytes);
    const { stdout } = await promisify(execFile)('pg_restore', ['--list', file]);
    expect(stdout).toMatch(/TABLE DATA public orders/);
  });

  it('fails the whole backup when one component fails, keeps the cause, and leaves no artifact', async () => {
    const packsBefore = await storedPacks(s.storageRoot, tenantId);
    const id = await cluster('mixed', [
      { name: 'files', type: 'directory', config: { path: 'site' } },
      { name: 'db', type: 'postgres', config: { url: tenantUrl('no_such_database_xyz', { user: 'postgres', password: 'hunter2' }) } },
    ]);
    const res = await s.request('POST', `/v1/clusters/${id}/backups`, { token: operator });
    const done = await waitForBackup(s, operator, id, res.body.id);
    expect(done.status).toBe('failed');
    expect(done.error.component).toBe('db');
    expect(done.error.message).toMatch(/no_such_database_xyz|does not exist/);
    expect(done.error.message).not.toContain('hunter2');
    expect(done.artifacts).toEqual([]);
    expect(done.components.find((c: { name: string }) => c.name === 'db').status).toBe('failed');
    await expectNothingLeftBy(res.body.id, packsBefore);
    // Not retried (rule 4): it stays failed and no other backup appears.
    await new Promise((r) => setTimeout(r, 500));
    const list = await s.request('GET', `/v1/clusters/${id}/backups`, { token: operator });
    expect(list.body.items.map((b: { status: string }) => b.status)).toEqual(['failed']);
  });

  it('fails a directory backup when a symlink inside the tree escapes the tenant\'s folder', async () => {
    await mkdir(path.join(home, 'leaky'), { recursive: true });
    await writeFile(path.join(home, 'leaky', 'ok.txt'), randomBytes(3_000_000)); // before the link in path order
    const packsBefore = await storedPacks(s.storageRoot, tenantId);
    const id = await cluster('leaky', [{ name: 'files', type: 'directory', config: { path: 'leaky' } }]);
    await symlink('/etc/passwd', path.join(home, 'leaky', 'passwd'));
    const res = await s.request('POST', `/v1/clusters/${id}/backups`, { token: operator });
    const done = await waitForBackup(s, operator, id, res.body.id);
    expect(done.status).toBe('failed');
    expect(done.error.message).toMatch(/passwd/);
    await expectNothingLeftBy(res.body.id, packsBefore);
  });
});

describe('rules', () => {
  it('allows one backup in progress per cluster (409)', async () => {
    const id = await cluster('busy', [{ name: 'files', type: 'directory', config: { path: 'site' } }]);
    // A backup some worker is running right now.
    const c = await s.rt.db.cluster.findUniqueOrThrow({ where: { id } });
    const first = { body: await plantBackup(s.rt, { id: randomUUID(), tenantId: c.tenantId, clusterId: id, trigger: 'manual', status: 'running', components: [] }) };
    const second = await s.request('POST', `/v1/clusters/${id}/backups`, { token: operator });
    expect(second.status).toBe(409);
    expect(second.headers['content-type']).toMatch(/problem\+json/);
    const del = await s.request('DELETE', `/v1/clusters/${id}/backups/${first.body.id}`, { token: operator });
    expect(del.status).toBe(409);
    // It ends (through the ledger, as a worker would): the slot is free again.
    expect(await s.rt.ledger.fail('backup', first.body.id, { component: null, message: 'test' }, { now: new Date() })).toBe(true);
    expect((await s.request('POST', `/v1/clusters/${id}/backups`, { token: operator })).status).toBe(202);
  });

  it('rate-limits manual backups with 429 + Retry-After; deleting the backup frees the slot at once', async () => {
    const id = await cluster('rl', [{ name: 'files', type: 'directory', config: { path: 'site' } }], { manual_rate_limit: '1h' });
    const first = await s.request('POST', `/v1/clusters/${id}/backups`, { token: operator });
    expect(first.status).toBe(202);
    await waitForBackup(s, operator, id, first.body.id);
    const limited = await s.request('POST', `/v1/clusters/${id}/backups`, { token: operator });
    expect(limited.status).toBe(429);
    expect(limited.headers['content-type']).toMatch(/problem\+json/);
    const retry = Number(limited.headers['retry-after']);
    expect(retry).toBeGreaterThan(3500);
    expect(retry).toBeLessThanOrEqual(3600);
    const del = await s.request('DELETE', `/v1/clusters/${id}/backups/${first.body.id}`, { token: operator });
    expect(del.status).toBe(202);
    expect(del.body.status).toBe('deleting');
    const again = await s.request('POST', `/v1/clusters/${id}/backups`, { token: operator });
    expect(again.status).toBe(202);
    // The deleted backup's record and snapshot record go, and GC takes what only it referenced.
    await waitFor(async () => !(await s.rt.db.backup.findUnique({ where: { id: first.body.id } })), 10_000, 'deleted backup row');
    expect((await listFiles(s.storageRoot)).filter((f) => f.includes(first.body.id))).toEqual([]);
    await waitForBackup(s, operator, id, again.body.id);
    await runGc(s, tenantId);
    expect(await unreferencedStoredPacks(s, s.storageRoot, tenantId)).toEqual([]);
  });

  it('lets exactly one of 25 concurrent manual requests through', async () => {
    const id = await cluster('race', [{ name: 'files', type: 'directory', config: { path: 'site' } }], { manual_rate_limit: '1h' });
    const answers = await Promise.all(Array.from({ length: 25 }, () => s.request('POST', `/v1/clusters/${id}/backups`, { token: operator })));
    const codes = answers.map((a) => a.status);
    expect(codes.filter((c) => c === 202)).toHaveLength(1);
    expect(codes.every((c) => c === 202 || c === 429 || c === 409)).toBe(true);
    expect(await s.rt.db.backup.count({ where: { clusterId: id } })).toBe(1);
  });

  it('lets exactly one through under concurrency without a rate limit too (one at a time)', async () => {
    const id = await cluster('race2', [{ name: 'files', type: 'directory', config: { path: 'site' } }]);
    const answers = await Promise.all(Array.from({ length: 25 }, () => s.request('POST', `/v1/clusters/${id}/backups`, { token: operator })));
    expect(answers.filter((a) => a.status === 202)).toHaveLength(1);
    expect(answers.filter((a) => a.status === 409)).toHaveLength(24);
  });

  it('replays the first answer for the same Idempotency-Key and creates nothing new', async () => {
    const id = await cluster('idem', [{ name: 'files', type: 'directory', config: { path: 'site' } }], { manual_rate_limit: '1h' });
    const headers = { 'idempotency-key': 'nightly-2026-11-21' };
    const first = await s.request('POST', `/v1/clusters/${id}/backups`, { token: operator, headers, body: {} });
    expect(first.status).toBe(202);
    const again = await Promise.all([1, 2, 3].map(() => s.request('POST', `/v1/clusters/${id}/backups`, { token: operator, headers, body: {} })));
    for (const a of again) {
      expect(a.status).toBe(202);
      expect(a.body).toEqual(first.body);
      expect(a.headers.location).toBe(first.headers.location);
      expect(a.headers['idempotent-replayed']).toBe('true');
    }
    expect(await s.rt.db.backup.count({ where: { clusterId: id } })).toBe(1);
    // The same key for another request is refused.
    const other = await cluster('idem2', [{ name: 'files', type: 'directory', config: { path: 'site' } }]);
    const reused = await s.request('POST', `/v1/clusters/${other}/backups`, { token: operator, headers, body: {} });
    expect(reused.status).toBe(422);
    // Without the key the rate limit applies as usual.
    expect((await s.request('POST', `/v1/clusters/${id}/backups`, { token: operator })).status).toBe(429);
    // Keys are per tenant: another tenant may use the same key.
    const t2 = await createTenant(s);
    await mkdir(path.join(t2.dir, 'site'), { recursive: true });
    const c2 = await s.request('POST', '/v1/clusters', { token: t2.adminToken, body: { name: 'x', components: [{ name: 'f', type: 'directory', config: { path: 'site' } }] } });
    expect((await s.request('POST', `/v1/clusters/${c2.body.id}/backups`, { token: t2.adminToken, headers })).status).toBe(202);
  });

  it('refuses manual backups with 422 when the policy has manual_count: 0', async () => {
    const id = await cluster('nomanual', [{ name: 'files', type: 'directory', config: { path: 'site' } }], { manual_count: 0 });
    const res = await s.request('POST', `/v1/clusters/${id}/backups`, { token: operator });
    expect(res.status).toBe(422);
    expect(res.body.detail).toMatch(/manual_count/);
  });

  it('lists backups newest first with status and trigger filters', async () => {
    const id = await cluster('listing', [{ name: 'files', type: 'directory', config: { path: 'site' } }]);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await s.request('POST', `/v1/clusters/${id}/backups`, { token: operator });
      ids.push(r.body.id);
      await waitForBackup(s, operator, id, r.body.id);
    }
    const all = await s.request('GET', `/v1/clusters/${id}/backups?limit=2`, { token: operator });
    expect(all.body.items.map((b: { id: string }) => b.id)).toEqual([ids[2], ids[1]]);
    const rest = await s.request('GET', `/v1/clusters/${id}/backups?limit=2&cursor=${all.body.next_cursor}`, { token: operator });
    expect(rest.body.items.map((b: { id: string }) => b.id)).toEqual([ids[0]]);
    expect(rest.body.next_cursor).toBeNull();
    const none = await s.request('GET', `/v1/clusters/${id}/backups?trigger=scheduled`, { token: operator });
    expect(none.body.items).toEqual([]);
    const bad = await s.request('GET', `/v1/clusters/${id}/backups?status=done`, { token: operator });
    expect(bad.status).toBe(422);
  });
});
