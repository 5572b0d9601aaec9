// Issue 9: every tenant's directory components live in its own folder, DATA_ROOT/<data_dir>/.
// Another tenant's folder can be neither named, nor reached through a symlink, nor probed: a
// foreign path answers exactly what a missing one answers, in the API and in the worker.
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MIGRATIONS_DIR, migrate, readMigrations } from '../src/db/migrate.js';
import { createTestDatabase } from './helpers/db.js';
import { ADMIN_TOKEN, createKey, createTenant, startStack, waitFor, waitForBackup, type Stack } from './helpers/stack.js';

const NEUTRAL = "no such directory in this tenant's folder";

let s: Stack;
let a: Awaited<ReturnType<typeof createTenant>>;
let b: Awaited<ReturnType<typeof createTenant>>;
let bOperator: string;
let aDir: string; // A's data_dir, the folder name B would have to guess

/** Every file and directory under `root` with its content: what "A's data is unchanged" compares. */
async function snapshot(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const e of await readdir(root, { withFileTypes: true, recursive: true })) {
    const p = path.join(e.parentPath, e.name);
    const rel = path.relative(root, p);
    if (e.isSymbolicLink()) out[rel] = 'link';
    else if (e.isDirectory()) out[rel] = 'dir';
    else out[rel] = await readFile(p, 'utf8');
  }
  return out;
}

const dirComponent = (p: string) => ({ name: 'files', type: 'directory', config: { path: p } });

async function policy(token: string) {
  const p = await s.request('POST', '/v1/policies', { token, body: { name: `p-${randomBytes(3).toString('hex')}`, manual_rate_limit: null } });
  expect(p.status, p.text).toBe(201);
  return p.body.id as string;
}

async function cluster(token: string, p: string) {
  return s.request('POST', '/v1/clusters', { token, body: { name: `c-${randomBytes(4).toString('hex')}`, policy_id: await policy(token), components: [dirComponent(p)] } });
}

async function backup(token: string, clusterId: string) {
  const r = await s.request('POST', `/v1/clusters/${clusterId}/backups`, { token });
  expect(r.status, r.text).toBe(202);
  return waitForBackup(s, token, clusterId, r.body.id);
}

async function restore(token: string, clusterId: string, backupId: string) {
  const r = await s.request('POST', `/v1/clusters/${clusterId}/backups/${backupId}/restore`, { token });
  expect(r.status, r.text).toBe(202);
  return waitFor(
    async () => {
      const g = await s.request('GET', r.headers.location as string, { token });
      return ['completed', 'failed'].includes(g.body.status) ? g.body : null;
    },
    30_000,
    'restore to finish',
  );
}

/** Points a stored directory component somewhere else, behind the API's back. */
async function editStoredPath(clusterId: string, p: string) {
  await s.rt.db.cluster.update({ where: { id: clusterId }, data: { components: [{ name: 'files', type: 'directory', config: { path: p } }] } });
}

beforeAll(async () => {
  s = await startStack();
  a = await createTenant(s);
  b = await createTenant(s);
  bOperator = await createKey(s, b.adminToken, 'operator');
  aDir = path.basename(a.dir);
  // A's tree, and a tree only A has.
  await mkdir(path.join(a.dir, 'site', 'nested'), { recursive: true });
  await writeFile(path.join(a.dir, 'site', 'index.html'), 'tenant A, precious');
  await writeFile(path.join(a.dir, 'site', 'nested', 'data.txt'), 'A data');
  await mkdir(path.join(a.dir, 'only-in-a'), { recursive: true });
  // B's own tree of the same name, and symlinks from B's folder into A's.
  await mkdir(path.join(b.dir, 'site'), { recursive: true });
  await writeFile(path.join(b.dir, 'site', 'index.html'), 'tenant B');
  await symlink(path.join(a.dir, 'site'), path.join(b.dir, 'to-a-absolute'));
  await symlink(`../${aDir}/site`, path.join(b.dir, 'to-a-relative'));
  await symlink(path.join(a.dir, 'no-such-tree'), path.join(b.dir, 'to-a-missing'));
  await mkdir(path.join(b.dir, 'deep'), { recursive: true });
  await symlink(`../../${aDir}`, path.join(b.dir, 'deep', 'a-root'));
});
afterAll(async () => s.close());

describe('tenant folders', () => {
  it('gives every tenant its own folder, named by its id unless the operator names it', async () => {
    const list = await s.request('GET', '/v1/tenants?limit=100', { token: ADMIN_TOKEN });
    const byId = new Map(list.body.items.map((t: { id: string; data_dir: string }) => [t.id, t.data_dir]));
    expect(byId.get(a.tenantId)).toBe(a.tenantId);
    expect(byId.get(b.tenantId)).toBe(b.tenantId);
    expect(a.dir).toBe(path.join(s.dataRoot, a.tenantId));
    expect((await stat(a.dir)).isDirectory()).toBe(true); // made at creation
  });

  it('takes a custom data_dir, shows it, makes the folder and resolves the tenant\'s paths inside it', async () => {
    const res = await s.request('POST', '/v1/tenants', { token: ADMIN_TOKEN, body: { name: 'custom-folder', data_dir: 'acme-files' } });
    expect(res.status, res.text).toBe(201);
    expect(res.body.tenant).toMatchObject({ name: 'custom-folder', data_dir: 'acme-files' });
    expect((await stat(path.join(s.dataRoot, 'acme-files'))).isDirectory()).toBe(true);
    const token = res.body.api_key.token as string;
    await mkdir(path.join(s.dataRoot, 'acme-files', 'web'), { recursive: true });
    expect((await cluster(token, 'web')).status).toBe(201);
    // `acme-files/web` from DATA_ROOT's point of view is not a path of this tenant.
    expect((await cluster(token, 'acme-files/web')).body.errors).toEqual([{ path: 'body.components.0.config.path', message: NEUTRAL }]);
  });

  it('answers 409 for a data_dir another tenant has, and creates nothing', async () => {
    const before = (await s.rt.db.tenant.count());
    const clash = await s.request('POST', '/v1/tenants', { token: ADMIN_TOKEN, body: { name: 'thief', data_dir: aDir } });
    expect(clash.status, clash.text).toBe(409);
    expect(clash.body.detail).toMatch(/folder/);
    expect(await s.rt.db.tenant.count()).toBe(before);
    expect(await s.rt.db.tenant.findFirst({ where: { name: 'thief' } })).toBeNull();
    // Someone else's default (an id) is just as taken.
    expect((await s.request('POST', '/v1/tenants', { token: ADMIN_TOKEN, body: { name: 'thief2', data_dir: b.tenantId } })).status).toBe(409);
    // A name clash is still told as a name clash.
    await s.request('POST', '/v1/tenants', { token: ADMIN_TOKEN, body: { name: 'twice', data_dir: 'twice-1' } });
    const again = await s.request('POST', '/v1/tenants', { token: ADMIN_TOKEN, body: { name: 'twice', data_dir: 'twice-2' } });
    expect(again.status).toBe(409);
    expect(again.body.detail).toMatch(/named "twice"/);
  });

  it.each(['..', '.', '../x', 'a/b', '/abs', 'a\u0000b', '', '.hidden', '-x', 'Upper', 'with space', 'x'.repeat(65), 'ü', 'a\\b'])(
    'refuses the data_dir %j with 422 and creates nothing',
    async (dataDir) => {
      const name = `bad-${randomBytes(3).toString('hex')}`;
      const res = await s.request('POST', '/v1/tenants', { token: ADMIN_TOKEN, body: { name, data_dir: dataDir } });
      expect(res.status, res.text).toBe(422);
      expect(res.body.errors.map((e: { path: string }) => e.path)).toEqual(['body.data_dir']);
      expect(await s.rt.db.tenant.findFirst({ where: { name } })).toBeNull();
    },
  );

  it('refuses a data_dir that DATA_ROOT already holds as a symlink or a file (422), leaving it alone', async () => {
    await symlink(a.dir, path.join(s.dataRoot, 'alias-of-a'));
    await writeFile(path.join(s.dataRoot, 'a-file'), 'x');
    for (const dataDir of ['alias-of-a', 'a-file']) {
      const res = await s.request('POST', '/v1/tenants', { token: ADMIN_TOKEN, body: { name: `n-${dataDir}`, data_dir: dataDir } });
      expect(res.status, res.text).toBe(422);
      expect(JSON.stringify(res.body)).not.toContain(s.dataRoot);
    }
    expect((await lstat(path.join(s.dataRoot, 'alias-of-a'))).isSymbolicLink()).toBe(true);
  });

  it('the database refuses an unsafe data_dir too', async () => {
    await expect(s.rt.db.$executeRawUnsafe(`INSERT INTO tenants (id, name, data_dir) VALUES (gen_random_uuid(), 'raw', '..')`)).rejects.toThrow(/tenants_data_dir_check/);
    await expect(s.rt.db.$executeRawUnsafe(`INSERT INTO tenants (id, name, data_dir) VALUES (gen_random_uuid(), 'raw2', $1)`, aDir)).rejects.toThrow();
  });
});

describe('another tenant\'s directories, in the API', () => {
  // Each is either a way into A's folder or a path only A has; all must read like a path that is nowhere.
  const foreign = () => [
    `${aDir}/site`, // A's folder named from DATA_ROOT (201 on the old code)
    'only-in-a', // exists only in A's folder
    'to-a-absolute', // symlink in B's folder to A's tree
    'to-a-relative',
    'to-a-relative/nested',
    'deep/a-root/site',
    'to-a-missing', // symlink to a path A does not have: must not read differently
  ];

  it('answers every foreign path with the same 422 as a missing one, naming no server path', async () => {
    const aBefore = await snapshot(a.dir);
    const missing = await cluster(b.adminToken, 'nowhere/at-all');
    expect(missing.status).toBe(422);
    expect(missing.body.errors).toEqual([{ path: 'body.components.0.config.path', message: NEUTRAL }]);
    for (const p of foreign()) {
      const res = await cluster(b.adminToken, p);
      expect(res.status, p).toBe(422);
      expect({ detail: res.body.detail, errors: res.body.errors }, p).toEqual({ detail: missing.body.detail, errors: missing.body.errors });
      expect(res.text, p).not.toContain(s.dataRoot);
    }
    expect(await snapshot(a.dir)).toEqual(aBefore);
  });

  it('answers `..` into A\'s folder exactly like `..` into nothing', async () => {
    const into = await cluster(b.adminToken, `../${aDir}/site`);
    const nothing = await cluster(b.adminToken, '../no-such-tenant/site');
    expect(into.status).toBe(422);
    expect({ detail: into.body.detail, errors: into.body.errors }).toEqual({ detail: nothing.body.detail, errors: nothing.body.errors });
  });

  it('refuses the same paths when a cluster is changed (PATCH)', async () => {
    const own = await cluster(b.adminToken, 'site');
    expect(own.status, own.text).toBe(201);
    for (const p of [...foreign(), 'nowhere/at-all']) {
      const res = await s.request('PATCH', `/v1/clusters/${own.body.id}`, { token: b.adminToken, body: { components: [dirComponent(p)] } });
      expect(res.status, p).toBe(422);
      expect(res.body.errors, p).toEqual([{ path: 'body.components.0.config.path', message: NEUTRAL }]);
    }
  });

  it('lets A use its own paths', async () => {
    expect((await cluster(a.adminToken, 'site')).status).toBe(201);
    expect((await cluster(a.adminToken, 'only-in-a')).status).toBe(201);
  });
});

describe('another tenant\'s directories, in the worker', () => {
  it('restores B\'s backup into B\'s tree of the same name, never into A\'s (the reported attack)', async () => {
    const aBefore = await snapshot(a.dir);
    const c = await cluster(b.adminToken, 'site');
    expect(c.status, c.text).toBe(201);
    const done = await backup(bOperator, c.body.id);
    expect(done.status, JSON.stringify(done.error)).toBe('completed');
    await writeFile(path.join(b.dir, 'site', 'index.html'), 'changed by B');
    const r = await restore(bOperator, c.body.id, done.id);
    expect(r.status, JSON.stringify(r.error)).toBe('completed');
    expect(await readFile(path.join(b.dir, 'site', 'index.html'), 'utf8')).toBe('tenant B');
    expect(await snapshot(a.dir)).toEqual(aBefore);
  });

  it('refuses backups of a stored path edited behind the API\'s back, with the neutral message', async () => {
    const c = await cluster(b.adminToken, 'site');
    expect(c.status, c.text).toBe(201);
    const messages: string[] = [];
    for (const p of [`${aDir}/site`, `../${aDir}/site`, 'to-a-absolute', 'to-a-relative', 'deep/a-root/site', 'only-in-a', 'to-a-missing', 'nowhere/at-all']) {
      await editStoredPath(c.body.id, p);
      const done = await backup(bOperator, c.body.id);
      expect(done.status, p).toBe('failed');
      expect(done.error.component, p).toBe('files');
      expect(done.error.message, p).not.toContain(s.dataRoot);
      expect(done.artifacts ?? [], p).toEqual([]);
      if (!p.startsWith('..')) messages.push(done.error.message.replace(p, '<path>'));
    }
    // Foreign and missing read alike.
    expect(new Set(messages)).toEqual(new Set([`${NEUTRAL}: <path>`]));
  });

  it('refuses restores into a stored path edited behind the API\'s back, leaving A\'s data as it was', async () => {
    const aBefore = await snapshot(a.dir);
    const c = await cluster(b.adminToken, 'site');
    const done = await backup(bOperator, c.body.id);
    expect(done.status, JSON.stringify(done.error)).toBe('completed');
    for (const p of [`${aDir}/site`, `${aDir}/fresh`, `../${aDir}/site`, `../${aDir}/fresh`, 'to-a-absolute', 'to-a-relative/nested', 'deep/a-root/site', 'deep/a-root/new-tree']) {
      await editStoredPath(c.body.id, p);
      const r = await restore(bOperator, c.body.id, done.id);
      expect(r.status, p).toBe('failed');
      expect(JSON.stringify(r.error), p).not.toContain(s.dataRoot);
      expect(await snapshot(a.dir), p).toEqual(aBefore);
    }
    // What the worker answers for a foreign target is what it answers for a missing parent.
    await editStoredPath(c.body.id, 'to-a-absolute');
    const foreignTarget = await restore(bOperator, c.body.id, done.id);
    await editStoredPath(c.body.id, 'nowhere/at-all');
    const missingParent = await restore(bOperator, c.body.id, done.id);
    // (A restore's message names the component it failed on.)
    expect(foreignTarget.error).toMatchObject({ component: 'files' });
    expect(foreignTarget.error.message.replace('to-a-absolute', '<path>')).toBe(`component "files": ${NEUTRAL}: <path>`);
    expect(missingParent.error.message.replace('nowhere', '<path>')).toBe(`component "files": ${NEUTRAL}: <path>`);
    expect(await readdir(s.dataRoot)).not.toContain('fresh');
    await expect(lstat(path.join(b.dir, aDir))).rejects.toThrow(); // nothing made for it in B's folder either
  });

  it('makes a tenant folder that went missing again, empty, instead of reading anything else', async () => {
    const t = await createTenant(s);
    await mkdir(path.join(t.dir, 'x'), { recursive: true });
    const c = await cluster(t.adminToken, 'x');
    expect(c.status, c.text).toBe(201);
    await rm(t.dir, { recursive: true, force: true });
    const done = await backup(t.adminToken, c.body.id);
    expect(done.status).toBe('failed');
    expect(done.error.message).toBe(`${NEUTRAL}: x`);
    expect((await stat(t.dir)).isDirectory()).toBe(true);
  });
});

describe('migration 20261202001000_tenant_data_dir', () => {
  it('gives existing tenants their id as their folder', async () => {
    const db = await createTestDatabase({ empty: true });
    const dir = await mkdtemp(path.join(s.storageRoot, '..', 'migrations-'));
    try {
      const all = await readMigrations();
      const { cp } = await import('node:fs/promises');
      for (const m of all.filter((m) => m.name < '20261202001000_tenant_data_dir')) await cp(path.join(MIGRATIONS_DIR, m.name), path.join(dir, m.name), { recursive: true });
      await migrate(db.url, dir);
      const c = new pg.Client({ connectionString: db.url });
      await c.connect();
      try {
        const ids = ['00000000-0000-4000-8000-00000000000a', '00000000-0000-4000-8000-00000000000b'];
        for (const [i, id] of ids.entries()) await c.query(`INSERT INTO tenants (id, name) VALUES ($1, $2)`, [id, `old-${i}`]);
        await migrate(db.url);
        const { rows } = await c.query(`SELECT id::text, data_dir FROM tenants ORDER BY id`);
        expect(rows).toEqual(ids.map((id) => ({ id, data_dir: id })));
        const col = await c.query(`SELECT is_nullable FROM information_schema.columns WHERE table_name = 'tenants' AND column_name = 'data_dir'`);
        expect(col.rows).toEqual([{ is_nullable: 'NO' }]);
      } finally {
        await c.end();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
      await db.drop();
    }
  });
});
