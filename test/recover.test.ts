/**
 * Disaster recovery from the store alone (SPEC section 8, docs/repository.md "Disaster
 * recovery"), and `npm run rotate-key`: real PostgreSQL, Redis, API and worker; the scripts run
 * as the operator runs them.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createDb, type Db } from '../src/db/client.js';
import { migrate } from '../src/db/migrate.js';
import { recoverFromStore, type RecoverReport } from '../src/repo/recover.js';
import { sharedSealPool } from '../src/repo/seal-pool.js';
import { WrongKeyError } from '../src/repo/types.js';
import { createStore } from '../src/storage/index.js';
import { createSecretBox } from '../src/crypto/secrets.js';
import { adminUrl, createTenantDatabase, withAdmin } from './helpers/db.js';
import { backupNow, compressible, describeTree, MiB, pseudoRandom, restoreAndWait, runGc, sql, tableText, verifyAndWait, type TreeEntry } from './helpers/repo-tree.js';
import { createTenant, startStack, type Stack } from './helpers/stack.js';

const run = promisify(execFile);

let base: string;
let storeUrl: string;
let dataRoot: string;
const key1 = randomBytes(32);
const key2 = randomBytes(32);
const tenantDbs: Awaited<ReturnType<typeof createTenantDatabase>>[] = [];
const scratchDbs: string[] = [];

interface Original {
  tenantId: string;
  name: string;
  dir: string;
  clusterId: string;
  dbUrl: string;
  backups: { id: string; tree: TreeEntry[]; table: string; size: number; stored: number }[];
}
const originals: Original[] = [];

/** The stack env of every service of this file: one store, one data root, the key given. */
const envFor = (key: Buffer, databaseUrl?: string) => ({
  PACK_TARGET_BYTES: String(MiB),
  STORAGE_URL: storeUrl,
  DATA_ROOT: dataRoot,
  ENCRYPTION_KEY: key.toString('base64'),
  ...(databaseUrl && { DATABASE_URL: databaseUrl }),
});

/** An empty database of this file's own (dropped at the end), optionally with the schema. */
async function scratchDatabase(opts: { migrated: boolean; create: boolean }): Promise<string> {
  const name = `bk_test_recover_${randomBytes(5).toString('hex')}`;
  scratchDbs.push(name);
  if (opts.create) await withAdmin((c) => c.query(`CREATE DATABASE ${name}`));
  const u = new URL(adminUrl());
  u.pathname = `/${name}`;
  if (opts.migrated) await migrate(u.href);
  return u.href;
}

async function recoverInProcess(databaseUrl: string, key: Buffer): Promise<{ report: RecoverReport; db: Db }> {
  const db = createDb(databaseUrl, { poolSize: 4, connectTimeoutMs: 5000 });
  const report = await recoverFromStore({ db, store: createStore(storeUrl), masterKey: key, seal: sharedSealPool() });
  return { report, db };
}

function npmRun(script: string, env: Record<string, string>) {
  return run('npm', ['run', '-s', script], {
    cwd: path.resolve('.'),
    env: { PATH: process.env.PATH!, HOME: process.env.HOME ?? '/tmp', REDIS_URL: inject('redisUrl'), STORAGE_URL: storeUrl, ...env },
    timeout: 60_000,
  });
}

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'bk-recover-'));
  storeUrl = pathToFileURL(path.join(base, 'store')).href;
  dataRoot = path.join(base, 'sources');
  await mkdir(path.join(base, 'store'), { recursive: true });
  await mkdir(dataRoot, { recursive: true });
  // The service as it ran before the disaster: two tenants, each a cluster of a directory and a database, two backups each.
  const s = await startStack({ env: envFor(key1) });
  try {
    for (const n of [0, 1]) {
      const t = await createTenant(s, `recover-${n}-${randomBytes(3).toString('hex')}`);
      const dir = path.join(dataRoot, path.relative(s.dataRoot, t.dir));
      const tree = path.join(dir, 'tree');
      await mkdir(path.join(tree, 'sub'), { recursive: true });
      await writeFile(path.join(tree, 'random.bin'), pseudoRandom(2 * MiB, `r${n}`));
      await writeFile(path.join(tree, 'sub', 'text.txt'), compressible(MiB, `t${n}`));
      const tdb = await createTenantDatabase();
      tenantDbs.push(tdb);
      await sql(tdb.url, 'CREATE TABLE items (id int primary key, label text not null, qty int not null)');
      await sql(tdb.url, `INSERT INTO items SELECT g, 'item ' || g || ' of tenant ${n}', g % 97 FROM generate_series(1, 20000) g`);
      const p = await s.request('POST', '/v1/policies', { token: t.adminToken, body: { name: 'keep', manual_rate_limit: null, manual_count: 10 } });
      expect(p.status, p.text).toBe(201);
      const c = await s.request('POST', '/v1/clusters', {
        token: t.adminToken,
        body: {
          name: `app-${n}`,
          policy_id: p.body.id,
          components: [
            { name: 'files', type: 'directory', config: { path: 'tree' } },
            { name: 'db', type: 'postgres', config: { url: tdb.url } },
          ],
        },
      });
      expect(c.status, c.text).toBe(201);
      const o: Original = { tenantId: t.tenantId, name: `recover-${n}`, dir, clusterId: c.body.id, dbUrl: tdb.url, backups: [] };
      for (let i = 0; i < 2; i++) {
        if (i > 0) {
          await writeFile(path.join(tree, 'sub', 'new.txt'), `added in backup ${i}`);
          await sql(tdb.url, `UPDATE items SET qty = qty + 1000 WHERE id <= 200`);
        }
        const b = await backupNow(s, t.adminToken, o.clusterId);
        o.backups.push({ id: b.id, tree: await describeTree(tree), table: await tableText(tdb.url, 'items'), size: b.size_bytes, stored: b.stored_bytes });
      }
      originals.push(o);
    }
  } finally {
    // The disaster: the service's database is gone (close drops it).
    await s.close();
  }
}, 60_000);

afterAll(async () => {
  for (const name of scratchDbs) await withAdmin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).catch(() => {});
  for (const d of tenantDbs) await d.drop().catch(() => {});
  await rm(base, { recursive: true, force: true });
});

describe('recovery from the store and ENCRYPTION_KEY', () => {
  let cliDatabase: string;
  let tokens: Map<string, string>;

  it('recoverFromStore rebuilds tenants, clusters and completed backups into an empty database; running it again adds nothing', async () => {
    const url = await scratchDatabase({ migrated: true, create: true });
    const { report, db } = await recoverInProcess(url, key1);
    try {
      expect(report.tenants.map((t) => t.id).sort()).toEqual(originals.map((o) => o.tenantId).sort());
      for (const t of report.tenants) {
        expect(t).toMatchObject({ backups: 2, clusters: 1 });
        expect(t.packs).toBeGreaterThan(2);
        expect(t.admin_token).toEqual(expect.any(String));
      }
      for (const o of originals) {
        const rows = await db.backup.findMany({ where: { tenantId: o.tenantId }, orderBy: { createdAt: 'asc' }, include: { artifacts: true } });
        expect(rows.map((b) => [b.id, b.status, b.clusterId, Number(b.sizeBytes), Number(b.storedBytes)])).toEqual(
          o.backups.map((b) => [b.id, 'completed', o.clusterId, b.size, b.stored]),
        );
        expect(rows.every((b) => b.artifacts.map((a) => a.component).sort().join() === 'db,files')).toBe(true);
        // The references are back: each backup relies on its chunks again (GC would keep them).
        for (const b of rows) expect(await db.backupChunk.count({ where: { backupId: b.id } })).toBeGreaterThan(2);
      }
      const again = await recoverFromStore({ db, store: createStore(storeUrl), masterKey: key1, seal: sharedSealPool() });
      expect(again.tenants.map((t) => t.admin_token)).toEqual([null, null]);
      expect(await db.backup.count()).toBe(4);
      expect(await db.cluster.count()).toBe(2);
      expect(await db.apiKey.count()).toBe(2);
    } finally {
      await db.$disconnect();
    }
  });

  it('recover with another key stops, naming the key', async () => {
    const url = await scratchDatabase({ migrated: true, create: true });
    const db = createDb(url, { poolSize: 2, connectTimeoutMs: 5000 });
    try {
      await expect(recoverFromStore({ db, store: createStore(storeUrl), masterKey: randomBytes(32), seal: sharedSealPool() })).rejects.toBeInstanceOf(WrongKeyError);
      expect(await db.tenant.count()).toBe(0);
    } finally {
      await db.$disconnect();
    }
  });

  it('npm run recover creates and fills a database and prints a new admin key per tenant', async () => {
    cliDatabase = await scratchDatabase({ migrated: false, create: false });
    const { stdout, stderr } = await npmRun('recover', { DATABASE_URL: cliDatabase, ENCRYPTION_KEY: key1.toString('base64') });
    const report = JSON.parse(stdout) as RecoverReport;
    expect(report.tenants).toHaveLength(2);
    for (const o of originals) expect(stderr).toContain(o.tenantId);
    tokens = new Map(report.tenants.map((t) => [t.id, t.admin_token!]));
    expect([...tokens.values()].every((t) => typeof t === 'string' && t.length > 20)).toBe(true);
  });

  it('a service on the recovered database lists the backups with the printed keys and restores each kind byte for byte', async () => {
    const s = await startStack({ env: { ...envFor(key1, cliDatabase), GC_GRACE_MS: '0' } });
    try {
      for (const o of originals) {
        const token = tokens.get(o.tenantId)!;
        const clusters = await s.request('GET', '/v1/clusters', { token });
        expect(clusters.status, clusters.text).toBe(200);
        expect(clusters.body.items.map((c: { id: string }) => c.id)).toEqual([o.clusterId]);
        const list = await s.request('GET', `/v1/clusters/${o.clusterId}/backups`, { token });
        expect(list.body.items.map((b: { id: string; status: string }) => `${b.id}:${b.status}`)).toEqual(o.backups.map((b) => `${b.id}:completed`).reverse());
      }
      // Tenant 0: the directory as of its first backup, over a tree that is gone.
      const [a, b] = originals as [Original, Original];
      await rm(path.join(a.dir, 'tree'), { recursive: true, force: true });
      const ra = await restoreAndWait(s, tokens.get(a.tenantId)!, a.clusterId, a.backups[0]!.id, { components: ['files'] });
      expect(ra.status, JSON.stringify(ra.error)).toBe('completed');
      expect(await describeTree(path.join(a.dir, 'tree'))).toEqual(a.backups[0]!.tree);
      // Tenant 1: the database as of its first backup, over rows changed since.
      await sql(b.dbUrl, `DELETE FROM items WHERE id % 3 = 0`);
      const rb = await restoreAndWait(s, tokens.get(b.tenantId)!, b.clusterId, b.backups[0]!.id, { components: ['db'] });
      expect(rb.status, JSON.stringify(rb.error)).toBe('completed');
      expect(await tableText(b.dbUrl, 'items')).toBe(b.backups[0]!.table);
      // A tenant's key sees nothing of the other.
      expect((await s.request('GET', `/v1/clusters/${b.clusterId}/backups`, { token: tokens.get(a.tenantId)! })).status).toBe(404);
      // The recovered repository is a working one: verification passes, a new backup deduplicates
      // against the recovered chunks, and GC (no grace) keeps everything the recovered backups need.
      const v = await verifyAndWait(s, tokens.get(b.tenantId)!, b.clusterId, b.backups[1]!.id);
      expect(v.status, v.message ?? '').toBe('passed');
      const next = await backupNow(s, tokens.get(a.tenantId)!, a.clusterId);
      expect(next.stored_bytes).toBeLessThan(a.backups[0]!.stored / 10);
      for (const o of originals) await runGc(s, o.tenantId);
      await runGc(s, a.tenantId);
      await rm(path.join(a.dir, 'tree'), { recursive: true, force: true });
      const again = await restoreAndWait(s, tokens.get(a.tenantId)!, a.clusterId, a.backups[1]!.id, { components: ['files'] });
      expect(again.status, JSON.stringify(again.error)).toBe('completed');
      expect(await describeTree(path.join(a.dir, 'tree'))).toEqual(a.backups[1]!.tree);
      const v2 = await verifyAndWait(s, tokens.get(a.tenantId)!, a.clusterId, a.backups[0]!.id);
      expect(v2.status, v2.message ?? '').toBe('passed');
    } finally {
      await s.close();
    }
  });

  it('npm run rotate-key re-wraps the keys: a service with the new key restores an old backup, and recover with the new key works', async () => {
    // Signing secrets are encrypted like the components' secrets: a webhook's and a cluster's hooks secret.
    const [, tb] = originals as [Original, Original];
    const oldBox = createSecretBox(key1);
    await sql(cliDatabase, `INSERT INTO webhooks (id, tenant_id, url, events, secret_enc) VALUES (gen_random_uuid(), $1, 'https://hooks.example.com/w', '{backup.failed}', $2)`, [tb.tenantId, oldBox.encrypt('whsec_webhook')]);
    await sql(cliDatabase, `UPDATE clusters SET hooks_secret_enc = $1 WHERE id = $2`, [oldBox.encrypt('whsec_hooks'), tb.clusterId]);
    const rotated = await npmRun('rotate-key', { DATABASE_URL: cliDatabase, ENCRYPTION_KEY: key1.toString('base64'), NEW_ENCRYPTION_KEY: key2.toString('base64') });
    expect(rotated.stdout).toMatch(/rotated: 2 repositories re-wrapped, 4 secrets re-encrypted/);
    const newBox = createSecretBox(key2);
    const secrets = [
      (await sql(cliDatabase, `SELECT secret_enc FROM webhooks WHERE tenant_id = $1`, [tb.tenantId])).rows[0].secret_enc as string,
      (await sql(cliDatabase, `SELECT hooks_secret_enc FROM clusters WHERE id = $1`, [tb.clusterId])).rows[0].hooks_secret_enc as string,
    ];
    expect(secrets.map((v) => newBox.decrypt(v))).toEqual(['whsec_webhook', 'whsec_hooks']);
    expect(() => oldBox.decrypt(secrets[0]!)).toThrow();

    const s = await startStack({ env: envFor(key2, cliDatabase) });
    try {
      const [, b] = originals as [Original, Original];
      const token = tokens.get(b.tenantId)!;
      await rm(path.join(b.dir, 'tree'), { recursive: true, force: true });
      await sql(b.dbUrl, 'DROP TABLE items');
      // Both components of the old backup: the repository's keys and the database URL (a secret) open under the new key.
      const r = await restoreAndWait(s, token, b.clusterId, b.backups[1]!.id);
      expect(r.status, JSON.stringify(r.error)).toBe('completed');
      expect(await describeTree(path.join(b.dir, 'tree'))).toEqual(b.backups[1]!.tree);
      expect(await tableText(b.dbUrl, 'items')).toBe(b.backups[1]!.table);
    } finally {
      await s.close();
    }

    // The store's configs were re-wrapped too: the new key recovers, the old one no longer does.
    const url = await scratchDatabase({ migrated: true, create: true });
    const { report, db } = await recoverInProcess(url, key2);
    try {
      // Tenant 0 has the backup taken on the recovered service too.
      expect(report.tenants.map((t) => [t.id, t.backups]).sort()).toEqual(originals.map((o, i) => [o.tenantId, i === 0 ? 3 : 2]).sort());
    } finally {
      await db.$disconnect();
    }
    const stale = await scratchDatabase({ migrated: true, create: true });
    const db2 = createDb(stale, { poolSize: 2, connectTimeoutMs: 5000 });
    try {
      await expect(recoverFromStore({ db: db2, store: createStore(storeUrl), masterKey: key1, seal: sharedSealPool() })).rejects.toBeInstanceOf(WrongKeyError);
    } finally {
      await db2.$disconnect();
    }
  });
});

