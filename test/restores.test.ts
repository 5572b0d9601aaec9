import { createHash, randomUUID } from 'node:crypto';
import { chmod, mkdir, readFile, readdir, rm, stat, utimes, writeFile, lstat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, createTenant, startStack, waitFor, waitForBackup, type Stack } from './helpers/stack.js';
import { plantRestore } from './helpers/jobs.js';
import { createTenantDatabase, createTestDatabase } from './helpers/db.js';
import { artifactOf, corruptChunksOf, manifestOf, packFile, packsOfBackup, packsOnlyOf, runGc, sha256, snapshotRecordAt, storedPacks, unreferencedStoredPacks } from './helpers/repo.js';

let s: Stack;
let admin: string;
let tenantId: string;
// The tenant's folder, DATA_ROOT/<data_dir>: where its directory components live.
let home: string;
let operator: string;
let secondaryRoot: string;
let db1: Awaited<ReturnType<typeof createTenantDatabase>>;
let db2: Awaited<ReturnType<typeof createTenantDatabase>>;

/** Every entry under dir: type, mode, mtime (s), sha256 of content or link target. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const e of await readdir(dir, { recursive: true })) {
    const p = path.join(dir, String(e));
    const st = await lstat(p);
    const kind = st.isSymbolicLink() ? 'l' : st.isDirectory() ? 'd' : 'f';
    const content = st.isFile() ? createHash('sha256').update(await readFile(p)).digest('hex') : '';
    out[String(e)] = `${kind} ${(st.mode & 0o7777).toString(8)} ${st.isDirectory() ? '' : Math.floor(st.mtimeMs / 1000)} ${content}`;
  }
  return out;
}

async function dbContent(url: string): Promise<string> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const tables = (await c.query(`SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1`)).rows.map((r) => r.table_name as string);
    const parts = [`tables: ${tables.join(',')}`];
    for (const t of tables) parts.push(`${t}: ${JSON.stringify((await c.query(`SELECT * FROM ${pg.escapeIdentifier(t)} ORDER BY 1`)).rows)}`);
    return parts.join('\n');
  } finally {
    await c.end();
  }
}

async function sql(url: string, text: string) {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  await c.query(text);
  await c.end();
}

async function listFiles(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
}

beforeAll(async () => {
  secondaryRoot = await mkdtemp(path.join(tmpdir(), 'bk-secondary-'));
  s = await startStack({ env: { STORAGE_SECONDARY_URL: pathToFileURL(secondaryRoot).href } });
  const t = await createTenant(s);
  home = t.dir;
  admin = t.adminToken;
  tenantId = t.tenantId;
  operator = await createKey(s, admin, 'operator');
  db1 = await createTenantDatabase();
  db2 = await createTenantDatabase();
  for (const d of [db1, db2]) {
    await sql(d.url, `CREATE TABLE accounts (id int primary key, owner text not null, balance numeric not null, meta jsonb);
      INSERT INTO accounts SELECT g, 'owner-' || g, g * 10.5, jsonb_build_object('n', g) FROM generate_series(1, 200) g;
      CREATE TABLE audit (id serial primary key, account int references accounts(id), note text);
      INSERT INTO audit (account, note) SELECT g, 'created' FROM generate_series(1, 50) g;`);
  }
});
afterAll(async () => {
  await s.close();
  await db1.drop();
  await db2.drop();
  await rm(secondaryRoot, { recursive: true, force: true });
});

async function makeTree(rel: string) {
  const root = path.join(home, rel);
  await mkdir(path.join(root, 'sub', 'deep'), { recursive: true });
  // Contents of its own (the tree's name in every file): the repository deduplicates equal data
  // across clusters, and tests that damage a tree's chunks must not damage another's.
  await writeFile(path.join(root, 'a.txt'), 'alpha\n'.repeat(100) + rel);
  await writeFile(path.join(root, 'sub', 'b.bin'), Buffer.concat([Buffer.from(Array.from({ length: 5000 }, (_, i) => i % 251)), Buffer.from(rel)]));
  await writeFile(path.join(root, 'sub', 'deep', 'c.json'), JSON.stringify({ c: 1, rel }));
  await writeFile(path.join(root, 'script.sh'), `#!/bin/sh\necho ${rel}\n`);
  await chmod(path.join(root, 'script.sh'), 0o750);
  await utimes(path.join(root, 'a.txt'), new Date('2020-01-02T03:04:05Z'), new Date('2020-01-02T03:04:05Z'));
  return root;
}

async function cluster(name: string, components: unknown[], extra: Record<string, unknown> = {}) {
  const p = await s.request('POST', '/v1/policies', { token: admin, body: { name: `p-${name}`, manual_rate_limit: null } });
  const c = await s.request('POST', '/v1/clusters', { token: admin, body: { name, policy_id: p.body.id, components, ...extra } });
  expect(c.status, c.text).toBe(201);
  return c.body.id as string;
}

async function backupOf(clusterId: string) {
  const r = await s.request('POST', `/v1/clusters/${clusterId}/backups`, { token: operator });
  expect(r.status, r.text).toBe(202);
  const b = await waitForBackup(s, operator, clusterId, r.body.id);
  expect(b.status, JSON.stringify(b.error)).toBe('completed');
  return b;
}

async function restore(clusterId: string, backupId: string, body?: unknown) {
  const r = await s.request('POST', `/v1/clusters/${clusterId}/backups/${backupId}/restore`, { token: operator, body });
  expect(r.status, r.text).toBe(202);
  expect(r.headers.location).toBe(`/v1/clusters/${r.body.cluster_id}/restores/${r.body.id}`);
  return waitFor(
    async () => {
      const g = await s.request('GET', r.headers.location as string, { token: operator });
      return ['completed', 'failed'].includes(g.body.status) ? g.body : null;
    },
    60_000,
    'restore to finish',
  );
}

describe('restore', () => {
  it('brings a directory and a database back exactly as they were at backup time', async () => {
    const root = await makeTree('tree1');
    const id = await cluster('full', [
      { name: 'files', type: 'directory', config: { path: 'tree1' } },
      { name: 'db', type: 'postgres', config: { url: db1.url } },
    ]);
    const before = await snapshot(root);
    const dbBefore = await dbContent(db1.url);
    const b = await backupOf(id);

    // Change everything: edit, delete, add, chmod; update, delete, add a table.
    await writeFile(path.join(root, 'a.txt'), 'changed');
    await rm(path.join(root, 'sub', 'b.bin'));
    await writeFile(path.join(root, 'new.txt'), 'added later');
    await mkdir(path.join(root, 'newdir'));
    await chmod(path.join(root, 'script.sh'), 0o600);
    await sql(db1.url, `UPDATE accounts SET balance = 0 WHERE id < 50; DELETE FROM audit WHERE id > 10; INSERT INTO accounts VALUES (999, 'late', 1, null);`);
    expect(await snapshot(root)).not.toEqual(before);
    expect(await dbContent(db1.url)).not.toEqual(dbBefore);

    const r = await restore(id, b.id);
    expect(r.status, JSON.stringify(r.error)).toBe('completed');
    expect(r.components.sort()).toEqual(['db', 'files']);
    expect(await snapshot(root)).toEqual(before);
    expect(await dbContent(db1.url)).toEqual(dbBefore);
    const c = await s.request('GET', `/v1/clusters/${id}`, { token: operator });
    expect(c.body.status).toBe('active');
    // Nothing was left beside the target.
    expect((await readdir(home)).filter((n) => n.startsWith('.') || n.includes('tree1') && n !== 'tree1')).toEqual([]);
  });

  it('drops tables created after the backup, so the database equals the backup', async () => {
    const d = await createTenantDatabase();
    try {
      await sql(d.url, `CREATE TABLE t (id int primary key); INSERT INTO t VALUES (1), (2);`);
      const id = await cluster('pgonly', [{ name: 'db', type: 'postgres', config: { url: d.url } }]);
      const before = await dbContent(d.url);
      const b = await backupOf(id);
      await sql(d.url, `CREATE TABLE created_later (x int); INSERT INTO t VALUES (3);`);
      const r = await restore(id, b.id);
      expect(r.status, JSON.stringify(r.error)).toBe('completed');
      expect(await dbContent(d.url)).toEqual(before);
    } finally {
      await d.drop();
    }
  });

  it('restores a subset of components into another cluster and leaves the rest untouched', async () => {
    await makeTree('src-tree');
    const targetRoot = path.join(home, 'dst-tree');
    await mkdir(targetRoot, { recursive: true });
    await writeFile(path.join(targetRoot, 'old.txt'), 'target data');
    const src = await cluster('src', [
      { name: 'files', type: 'directory', config: { path: 'src-tree' } },
      { name: 'db', type: 'postgres', config: { url: db1.url } },
    ]);
    const dst = await cluster('dst', [
      { name: 'files', type: 'directory', config: { path: 'dst-tree' } },
      { name: 'db', type: 'postgres', config: { url: db2.url } },
    ]);
    const srcTree = await snapshot(path.join(home, 'src-tree'));
    await sql(db2.url, `INSERT INTO accounts VALUES (5000, 'only-in-target', 1, null)`);
    const db2Before = await dbContent(db2.url);
    const b = await backupOf(src);
    const r = await restore(src, b.id, { target_cluster_id: dst, components: ['files'] });
    expect(r.status, JSON.stringify(r.error)).toBe('completed');
    expect(r).toMatchObject({ source_cluster_id: src, cluster_id: dst, components: ['files'] });
    expect(await snapshot(targetRoot)).toEqual(srcTree);
    expect(await dbContent(db2.url)).toEqual(db2Before); // the other component is untouched
    // Both clusters list it.
    for (const c of [src, dst]) {
      const list = await s.request('GET', `/v1/clusters/${c}/restores`, { token: operator });
      expect(list.body.items.map((x: { id: string }) => x.id)).toContain(r.id);
    }
  });

  it('refuses a corrupted artifact, naming the integrity problem and the component, and leaves the target as it was', async () => {
    const root = await makeTree('corrupt');
    const id = await cluster('corrupt', [{ name: 'files', type: 'directory', config: { path: 'corrupt' } }]);
    const b = await backupOf(id);
    await writeFile(path.join(root, 'a.txt'), 'edited after the backup');
    const current = await snapshot(root);
    // A flipped byte inside every chunk of the backup, in the pack objects of the store.
    expect(await corruptChunksOf(s, s.storageRoot, tenantId, b.id)).toBeGreaterThan(0);
    const r = await restore(id, b.id);
    expect(r.status).toBe('failed');
    expect(r.error.component).toBe('files');
    expect(r.error.message).toMatch(/component "files".*integrity/);
    expect(await snapshot(root)).toEqual(current);
    expect((await s.request('GET', `/v1/clusters/${id}`, { token: operator })).body.status).toBe('active');
    // verify reports the same without restoring.
    const v = await s.request('POST', `/v1/clusters/${id}/backups/${b.id}/verify`, { token: operator });
    expect(v.status).toBe(202);
    const verified = await waitFor(async () => {
      const g = await s.request('GET', `/v1/clusters/${id}/backups/${b.id}`, { token: operator });
      return ['passed', 'failed'].includes(g.body.verification?.status) ? g.body : null;
    });
    expect(verified.verification.status).toBe('failed');
    expect(verified.verification.message).toMatch(/component "files": integrity check failed/);
  });

  // A restore drops everything in its target database first: it must never be the service's own.
  it("refuses the service's own database: at the API under any name, and in the worker should a stored URL point there", async () => {
    const own = new URL(s.databaseUrl);
    for (const host of ['127.0.0.1', 'localhost']) {
      const url = `postgresql://postgres@${host}:${own.port || 5432}${own.pathname}`;
      const res = await s.request('POST', '/v1/clusters', { token: admin, body: { name: `own-${host}`, components: [{ name: 'db', type: 'postgres', config: { url } }] } });
      expect(res.status, res.text).toBe(422);
      expect(res.body.errors).toEqual([{ path: 'body.components.0.config.url', message: "that is the backup service's own database" }]);
    }
    const d = await createTenantDatabase();
    await sql(d.url, 'CREATE TABLE t (id int); INSERT INTO t VALUES (1)');
    const id = await cluster('own-db', [{ name: 'db', type: 'postgres', config: { url: d.url } }]);
    const b = await backupOf(id);
    // Behind the API's back (an old row, an edited database): the worker checks again.
    const tenantsBefore = await s.rt.db.tenant.count();
    const row = await s.rt.db.cluster.findUniqueOrThrow({ where: { id } });
    const components = (row.components as { name: string; type: string; config: Record<string, string> }[]).map((c) => ({
      ...c,
      config: { url_encrypted: s.rt.box.encrypt(s.databaseUrl), url_masked: 'postgresql://***' },
    }));
    await s.rt.db.cluster.update({ where: { id }, data: { components } });
    const r = await restore(id, b.id);
    expect(r.status).toBe('failed');
    expect(r.error).toMatchObject({ component: 'db', message: expect.stringContaining("that is the backup service's own database") });
    expect(await s.rt.db.tenant.count()).toBe(tenantsBefore);
    const backup = await s.request('POST', `/v1/clusters/${id}/backups`, { token: operator });
    const failed = await waitForBackup(s, operator, id, backup.body.id);
    expect(failed.status).toBe('failed');
    expect(failed.error.message).toContain("that is the backup service's own database");
    await d.drop();
  });

  // Tenant SQL (functions, CHECK constraints, triggers) runs wherever a restore loads it, as the
  // URL's user: on the service's own server, any database would do to run it as a superuser.
  it("refuses every other database on the service's own server: at the API under any name, and in the worker for a URL edited behind its back", async () => {
    const victim = await createTestDatabase({ empty: true }); // on the service's own server
    const source = await createTenantDatabase();
    const pwned = path.join(tmpdir(), `bk-pwned-${victim.name}`);
    try {
      await sql(victim.url, `CREATE TABLE marker (id int primary key, note text); INSERT INTO marker VALUES (1, 'the service server''s own data')`);
      const victimBefore = await dbContent(victim.url);
      const own = new URL(s.databaseUrl);
      const port = own.port || '5432';
      for (const host of ['127.0.0.1', 'localhost', '[::1]', '127.0.0.2']) {
        const url = `postgresql://postgres@${host}:${port}/${victim.name}`;
        const res = await s.request('POST', '/v1/clusters', { token: admin, body: { name: `own-server-${host}`, components: [{ name: 'db', type: 'postgres', config: { url } }] } });
        expect(res.status, res.text).toBe(422);
        expect(res.body.errors).toEqual([{ path: 'body.components.0.config.url', message: "that is the backup service's own database server" }]);
      }
      // A tenant's backup whose CHECK constraint writes a file wherever its rows are loaded.
      await sql(source.url, `CREATE FUNCTION touch() RETURNS boolean LANGUAGE plpgsql AS $$
          BEGIN EXECUTE format('COPY (SELECT 1) TO %L', '${path.join(tmpdir(), 'bk-pwned-')}' || current_database()); RETURN true; END $$;
        CREATE TABLE t (id int CHECK (touch())); INSERT INTO t VALUES (1);`);
      await stat(path.join(tmpdir(), `bk-pwned-${source.name}`)); // it does write where its rows go
      const id = await cluster('own-server', [{ name: 'db', type: 'postgres', config: { url: source.url } }]);
      const b = await backupOf(id);
      // Behind the API's back: the stored URL now names the other database, encrypted with the stack's key.
      const components = [{ name: 'db', type: 'postgres', config: { url_encrypted: s.rt.box.encrypt(`postgresql://postgres@127.0.0.1:${port}/${victim.name}`), url_masked: 'postgresql://***' } }];
      const c = new pg.Client({ connectionString: s.databaseUrl });
      await c.connect();
      try {
        expect((await c.query('UPDATE clusters SET components = $1::jsonb WHERE id = $2', [JSON.stringify(components), id])).rowCount).toBe(1);
      } finally {
        await c.end();
      }
      const r = await restore(id, b.id);
      expect(r.status).toBe('failed');
      expect(r.error).toMatchObject({ component: 'db', message: expect.stringContaining("that is the backup service's own database server") });
      expect(await dbContent(victim.url)).toEqual(victimBefore);
      await expect(stat(pwned)).rejects.toThrow(/ENOENT/);
      const backup = await s.request('POST', `/v1/clusters/${id}/backups`, { token: operator });
      const failed = await waitForBackup(s, operator, id, backup.body.id);
      expect(failed.status).toBe('failed');
      expect(failed.error.message).toContain("that is the backup service's own database server");
    } finally {
      await victim.drop();
      await source.drop();
      await rm(pwned, { force: true });
      await rm(path.join(tmpdir(), `bk-pwned-${source.name}`), { force: true });
    }
  });

  it('verify passes for an intact backup', async () => {
    await makeTree('intact');
    const id = await cluster('intact', [{ name: 'files', type: 'directory', config: { path: 'intact' } }]);
    const b = await backupOf(id);
    await s.request('POST', `/v1/clusters/${id}/backups/${b.id}/verify`, { token: operator });
    const verified = await waitFor(async () => {
      const g = await s.request('GET', `/v1/clusters/${id}/backups/${b.id}`, { token: operator });
      return g.body.verification?.status === 'passed' ? g.body : null;
    });
    expect(verified.verification.checked_at).not.toBeNull();
  });

  it('validates the request: unknown components 422, foreign target 422, unfinished backup 409', async () => {
    await makeTree('val');
    const id = await cluster('val', [{ name: 'files', type: 'directory', config: { path: 'val' } }]);
    const b = await backupOf(id);
    const unknown = await s.request('POST', `/v1/clusters/${id}/backups/${b.id}/restore`, { token: operator, body: { components: ['files', 'nope'] } });
    expect(unknown.status).toBe(422);
    expect(unknown.body.errors).toEqual([{ path: 'body.components.1', message: 'the backup has no component "nope"' }]);
    const other = await createTenant(s);
    await mkdir(path.join(other.dir, 'val2'), { recursive: true });
    const foreign = await s.request('POST', '/v1/clusters', { token: other.adminToken, body: { name: 'f', components: [{ name: 'files', type: 'directory', config: { path: 'val2' } }] } });
    const cross = await s.request('POST', `/v1/clusters/${id}/backups/${b.id}/restore`, { token: operator, body: { target_cluster_id: foreign.body.id } });
    expect(cross.status).toBe(422);
    const c = await s.rt.db.cluster.findUniqueOrThrow({ where: { id } });
    const failed = await s.rt.db.backup.create({ data: { id: randomUUID(), tenantId: c.tenantId, clusterId: id, trigger: 'manual', status: 'failed', components: [], errorMessage: 'x' } });
    expect((await s.request('POST', `/v1/clusters/${id}/backups/${failed.id}/restore`, { token: operator })).status).toBe(409);
    const viewer = await createKey(s, admin, 'viewer');
    expect((await s.request('POST', `/v1/clusters/${id}/backups/${b.id}/restore`, { token: viewer })).status).toBe(403);
  });

  it('a restoring cluster takes no backups, and the backup it reads is kept and cannot be deleted', async () => {
    await makeTree('busy');
    const id = await cluster('busy-r', [{ name: 'files', type: 'directory', config: { path: 'busy' } }]);
    const b = await backupOf(id);
    const c = await s.rt.db.cluster.findUniqueOrThrow({ where: { id } });
    // A restore some worker is running right now.
    const r = await plantRestore(s.rt, { id: randomUUID(), tenantId: c.tenantId, backupId: b.id, sourceClusterId: id, clusterId: id, components: ['files'], status: 'running' });
    await s.rt.db.cluster.update({ where: { id }, data: { status: 'restoring' } });
    expect((await s.request('GET', `/v1/clusters/${id}`, { token: operator })).body.status).toBe('restoring');
    expect((await s.request('POST', `/v1/clusters/${id}/backups`, { token: operator })).status).toBe(409);
    expect((await s.request('POST', `/v1/clusters/${id}/backups/${b.id}/restore`, { token: operator })).status).toBe(409);
    expect((await s.request('DELETE', `/v1/clusters/${id}/backups/${b.id}`, { token: operator })).status).toBe(409);
    const ret = await s.request('GET', `/v1/clusters/${id}/retention`, { token: operator });
    expect(ret.body.items.find((i: { backup_id: string }) => i.backup_id === b.id).reasons).toContain('in use');
    await s.rt.db.restore.update({ where: { id: r.id }, data: { status: 'completed' } });
    await s.rt.db.cluster.update({ where: { id }, data: { status: 'active' } });
  });
});

describe('dual-region', () => {
  it('copies artifacts to the secondary store, falls back to it, and deletes from both', async () => {
    const root = await makeTree('dual');
    const id = await cluster('dual', [{ name: 'files', type: 'directory', config: { path: 'dual' } }], { backup_location: 'dual-region' });
    const before = await snapshot(root);
    const b = await backupOf(id);
    const replicated = await waitFor(async () => {
      const g = await s.request('GET', `/v1/clusters/${id}/backups/${b.id}`, { token: operator });
      const locs = g.body.artifacts[0].locations;
      return locs.length === 2 && locs.every((l: { status: string }) => l.status === 'present') && g.body.replication?.status === 'replicated' ? g.body : null;
    });
    const [primary, secondary] = replicated.artifacts[0].locations;
    expect(primary.store).toBe('primary');
    expect(secondary.store).toBe('secondary');
    // Every pack the backup relies on, and its snapshot record, are in the secondary byte for byte.
    const packs = await packsOfBackup(s, b.id);
    expect(packs.length).toBeGreaterThan(0);
    expect(await packsOnlyOf(s, [b.id])).toEqual(packs); // its data is its own (see makeTree)
    for (const p of packs) expect((await readFile(packFile(secondaryRoot, tenantId, p))).equals(await readFile(packFile(s.storageRoot, tenantId, p)))).toBe(true);
    expect(fileURLToPath(primary.url)).toBe(path.join(s.storageRoot, `repos/${tenantId}/snapshots/${b.id}`));
    expect(fileURLToPath(secondary.url)).toBe(path.join(secondaryRoot, `repos/${tenantId}/snapshots/${b.id}`));
    expect((await readFile(fileURLToPath(secondary.url))).equals(await readFile(fileURLToPath(primary.url)))).toBe(true);
    expect((await snapshotRecordAt(s, secondaryRoot, tenantId, b.id))?.components.map((c) => c.sha256)).toEqual([replicated.artifacts[0].sha256]);

    // The primary copy is lost: the restore uses the secondary one, and the manifest still reads back to its sha256.
    for (const p of packs) await rm(packFile(s.storageRoot, tenantId, p));
    await writeFile(path.join(root, 'a.txt'), 'changed');
    const r = await restore(id, b.id);
    expect(r.status, JSON.stringify(r.error)).toBe('completed');
    expect(await snapshot(root)).toEqual(before);
    expect(sha256(await manifestOf(s, tenantId, await artifactOf(s, b.id, 'files')))).toBe(replicated.artifacts[0].sha256);
    // Corrupt too: both copies bad -> refused with both problems named.
    for (const p of packs) await writeFile(packFile(secondaryRoot, tenantId, p), 'garbage');
    const r2 = await restore(id, b.id);
    expect(r2.status).toBe('failed');
    expect(r2.error.component).toBe('files');
    expect(r2.error.message).toMatch(/integrity.*primary copy: .*; secondary copy: /);

    const del = await s.request('DELETE', `/v1/clusters/${id}/backups/${b.id}`, { token: operator });
    expect(del.status).toBe(202);
    await waitFor(async () => !(await s.rt.db.backup.findUnique({ where: { id: b.id } })), 10_000, 'backup deleted');
    await runGc(s, tenantId);
    for (const root2 of [s.storageRoot, secondaryRoot]) {
      expect((await listFiles(root2)).filter((f) => f.includes(b.id))).toEqual([]);
      expect((await storedPacks(root2, tenantId)).filter((p) => packs.includes(p))).toEqual([]);
      expect(await unreferencedStoredPacks(s, root2, tenantId)).toEqual([]);
    }
    expect(await s.rt.db.pack.count({ where: { id: { in: packs } } })).toBe(0);
  });
});

describe('cluster deletion', () => {
  it('deletes every backup and artifact in every store, then the cluster', async () => {
    await makeTree('gone');
    const id = await cluster('gone', [{ name: 'files', type: 'directory', config: { path: 'gone' } }], { backup_location: 'dual-region' });
    const b1 = await backupOf(id);
    const b2 = await backupOf(id);
    for (const b of [b1, b2])
      await waitFor(async () => (await s.request('GET', `/v1/clusters/${id}/backups/${b.id}`, { token: operator })).body.replication?.status === 'replicated', 10_000, 'replication');
    // The packs that hold this cluster's data alone, in both stores.
    const own = await packsOnlyOf(s, [b1.id, b2.id]);
    expect(own.length).toBeGreaterThan(0);
    for (const root2 of [s.storageRoot, secondaryRoot]) expect((await storedPacks(root2, tenantId)).filter((p) => own.includes(p))).toEqual(own);
    const del = await s.request('DELETE', `/v1/clusters/${id}`, { token: admin });
    expect(del.status).toBe(202);
    await waitFor(async () => !(await s.rt.db.cluster.findUnique({ where: { id } })), 15_000, 'cluster deleted');
    expect(await s.rt.db.backup.count({ where: { clusterId: id } })).toBe(0);
    await runGc(s, tenantId);
    for (const root2 of [s.storageRoot, secondaryRoot]) {
      expect((await listFiles(root2)).filter((f) => f.includes(id) || f.includes(b1.id) || f.includes(b2.id))).toEqual([]);
      expect((await storedPacks(root2, tenantId)).filter((p) => own.includes(p))).toEqual([]);
      expect(await unreferencedStoredPacks(s, root2, tenantId)).toEqual([]);
    }
    expect(await s.rt.db.pack.count({ where: { id: { in: own } } })).toBe(0);
    expect((await s.request('GET', `/v1/clusters/${id}`, { token: admin })).status).toBe(404);
  });
});
