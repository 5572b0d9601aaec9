import { randomUUID } from 'node:crypto';
import { execFile } from 'node:child_process';
import { cp, lstat, mkdir, mkdtemp, open, readFile, readdir, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, createTenant, startStack, waitFor, waitForBackup, type Stack } from './helpers/stack.js';
import { plantBackup } from './helpers/jobs.js';
import { createTenantDatabase } from './helpers/db.js';
import { packKey } from '../src/repo/layout.js';

const run = promisify(execFile);
const METRICS_TOKEN = 'metrics-token-0123456789abcdef';

let s: Stack;
let tenantId: string;
let home: string;
let admin: string;
let operator: string;
let viewer: string;
let clusterId: string;
let backup: any;
let tmp: string;

/** The source tree: compressible files, a nested directory, an empty one, a symlink. */
async function makeTree(root: string) {
  await mkdir(path.join(root, 'sub', 'deeper'), { recursive: true });
  await mkdir(path.join(root, 'empty'));
  await writeFile(path.join(root, 'a.txt'), 'alpha\n');
  await writeFile(path.join(root, 'b.txt'), 'the quick brown fox jumps over the lazy dog\n'.repeat(40_000));
  await writeFile(path.join(root, 'sub', 'c.txt'), 'charlie\n'.repeat(1000));
  await writeFile(path.join(root, 'sub', 'd.txt'), 'delta\n');
  await writeFile(path.join(root, 'sub', 'deeper', 'e.txt'), 'echo\n');
  await symlink('a.txt', path.join(root, 'link'));
}

/** Every entry below `root`, as path -> file bytes | symlink target | 'dir'. */
async function snapshot(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const e of await readdir(root, { withFileTypes: true, recursive: true })) {
    const full = path.join(e.parentPath, e.name);
    const rel = path.relative(root, full);
    const st = await lstat(full);
    if (st.isSymbolicLink()) out.set(rel, `-> ${await readlink(full)}`);
    else if (st.isDirectory()) out.set(rel, 'dir');
    else out.set(rel, (await readFile(full)).toString('base64'));
  }
  return out;
}

async function policyAndCluster(name: string, components: unknown[]) {
  const p = await s.request('POST', '/v1/policies', { token: admin, body: { name: `p-${name}`, manual_rate_limit: null } });
  expect(p.status, p.text).toBe(201);
  const c = await s.request('POST', '/v1/clusters', { token: admin, body: { name, policy_id: p.body.id, components } });
  expect(c.status, c.text).toBe(201);
  return c.body.id as string;
}

async function backUp(id: string) {
  const r = await s.request('POST', `/v1/clusters/${id}/backups`, { token: operator });
  expect(r.status, r.text).toBe(202);
  const done = await waitForBackup(s, operator, id, r.body.id);
  expect(done.status, JSON.stringify(done.error)).toBe('completed');
  return done;
}

const files = (q: string, token = viewer, b = backup.id, c = clusterId) => s.request('GET', `/v1/clusters/${c}/backups/${b}/files?${q}`, { token });

function expectProblem(r: { status: number; headers: Record<string, unknown>; body: any }, status: number) {
  expect(r.status, JSON.stringify(r.body)).toBe(status);
  expect(String(r.headers['content-type'])).toContain('application/problem+json');
  expect(r.body).toMatchObject({ status, type: expect.any(String), title: expect.any(String), detail: expect.any(String) });
  expect(JSON.stringify(r.body)).not.toMatch(/at .*\.ts:\d+/); // never a stack trace
}

/** All names of a directory, one page of `limit` at a time. */
async function listAll(q: string, limit: number) {
  const names: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const r = await files(`${q}&limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    expect(r.status, r.text).toBe(200);
    expect(r.body.items.length).toBeLessThanOrEqual(limit);
    names.push(...r.body.items.map((i: { name: string }) => i.name));
    cursor = r.body.next_cursor;
    pages++;
  } while (cursor && pages < 50);
  return { names, pages };
}

beforeAll(async () => {
  s = await startStack({ env: { METRICS_TOKEN } });
  const t = await createTenant(s);
  tenantId = t.tenantId;
  home = t.dir;
  admin = t.adminToken;
  operator = await createKey(s, admin, 'operator');
  viewer = await createKey(s, admin, 'viewer');
  tmp = await mkdtemp(path.join(tmpdir(), 'bk-repo-api-'));
  await makeTree(path.join(home, 'site'));
  // The same data for a second cluster (usage: identical data is stored once).
  await cp(path.join(home, 'site'), path.join(home, 'site2'), { recursive: true, verbatimSymlinks: true });
  clusterId = await policyAndCluster('one', [{ name: 'files', type: 'directory', config: { path: 'site' } }]);
  backup = await backUp(clusterId);
}, 60_000);
afterAll(async () => {
  await s?.close();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('browse', () => {
  it('lists the component root: names in order, types, sizes, modes, mtimes, link targets', async () => {
    const r = await files('component=files');
    expect(r.status, r.text).toBe(200);
    expect(r.body.next_cursor).toBeNull();
    expect(r.body.items.map((i: { name: string }) => i.name)).toEqual(['a.txt', 'b.txt', 'empty', 'link', 'sub']);
    const byName = Object.fromEntries(r.body.items.map((i: { name: string }) => [i.name, i]));
    const st = await lstat(path.join(home, 'site', 'a.txt'));
    expect(byName['a.txt']).toEqual({ name: 'a.txt', type: 'file', size: 6, mode: st.mode & 0o7777, mtime: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/) });
    // mtime from mtime_ns: the same instant as on disk, to the nanosecond
    const ns = (await lstat(path.join(home, 'site', 'a.txt'), { bigint: true })).mtimeNs;
    const [secs, frac] = byName['a.txt'].mtime.slice(0, -1).split('.');
    expect(BigInt(Date.parse(`${secs}Z`)) * 1_000_000n + BigInt(frac)).toBe(ns);
    expect(byName['sub']).toMatchObject({ type: 'directory', size: 0 });
    expect(byName['link']).toMatchObject({ type: 'symlink', link_target: 'a.txt' });
    expect(byName['b.txt'].size).toBe((await lstat(path.join(home, 'site', 'b.txt'))).size);
    expect(byName['b.txt']).not.toHaveProperty('link_target');
  });

  it('lists a subdirectory, and an empty one', async () => {
    const r = await files('component=files&path=sub');
    expect(r.status, r.text).toBe(200);
    expect(r.body.items.map((i: { name: string; type: string }) => [i.name, i.type])).toEqual([
      ['c.txt', 'file'],
      ['d.txt', 'file'],
      ['deeper', 'directory'],
    ]);
    expect((await files('component=files&path=sub/deeper')).body.items.map((i: { name: string }) => i.name)).toEqual(['e.txt']);
    const empty = await files('component=files&path=empty');
    expect(empty.status).toBe(200);
    expect(empty.body).toEqual({ items: [], next_cursor: null });
    // path '' is the root too
    expect((await files('component=files&path=')).body.items).toHaveLength(5);
  });

  it('pages with limit and cursor, like every list', async () => {
    const root = await listAll('component=files', 1);
    expect(root.names).toEqual(['a.txt', 'b.txt', 'empty', 'link', 'sub']);
    expect(root.pages).toBe(5);
    const two = await listAll('component=files', 2);
    expect(two.names).toEqual(root.names);
    expect(two.pages).toBe(3);
    expect((await listAll('component=files&path=sub', 1)).names).toEqual(['c.txt', 'd.txt', 'deeper']);
    // a cursor of another directory, or garbage, is refused
    const first = await files('component=files&limit=1');
    expectProblem(await files(`component=files&path=sub&cursor=${encodeURIComponent(first.body.next_cursor)}`), 422);
    expectProblem(await files('component=files&cursor=not-a-cursor'), 422);
  });

  it('refuses bad paths with 422, answers 404 for what is not there, 409 for a backup not completed', async () => {
    for (const bad of ['..', 'sub/..', '../site', '/etc', '/', 'sub//c.txt', 'sub/', './sub']) {
      const r = await files(`component=files&path=${encodeURIComponent(bad)}`);
      expectProblem(r, 422);
      expect(r.body.errors[0].path).toBe('querystring.path');
    }
    expectProblem(await files(`component=files&path=${encodeURIComponent('a\0b')}`), 422);
    const missing = await files('component=files&path=nope');
    expectProblem(missing, 404);
    expect(missing.body.detail).toContain('nope');
    expectProblem(await files('component=files&path=sub/nope'), 404);
    expectProblem(await files('component=files&path=a.txt/x'), 404);
    const file = await files('component=files&path=a.txt');
    expectProblem(file, 404);
    expect(file.body.detail).toContain('not a directory');
    expectProblem(await files('component=files&path=link'), 404);
    const unknown = await files('component=zzz');
    expectProblem(unknown, 404);
    expect(unknown.body.detail).toContain('zzz');
    // component may be omitted when the backup has exactly one directory component
    expect((await files('path=sub')).body.items.map((i: { name: string }) => i.name)).toEqual(['c.txt', 'd.txt', 'deeper']);
    expectProblem(await files('component=files', viewer, randomUUID()), 404);
    const failed = await plantBackup(s.rt, { id: randomUUID(), tenantId, clusterId, trigger: 'manual', status: 'failed', components: [], errorMessage: 'planted' });
    expectProblem(await files('component=files', viewer, failed.id), 409);
    // another tenant sees nothing
    const other = await createTenant(s);
    expectProblem(await files('component=files', other.adminToken), 404);
    expect((await files('component=files', 'not-a-token')).status).toBe(401);
  });
});

describe('export', () => {
  it('streams a tar that extracts to the very same tree', async () => {
    const res = await s.app.inject({ method: 'GET', url: `/v1/clusters/${clusterId}/backups/${backup.id}/components/files/archive`, headers: { authorization: `Bearer ${operator}` } });
    expect(res.statusCode, res.body.slice(0, 300)).toBe(200);
    expect(res.headers['content-type']).toBe('application/x-tar');
    expect(res.headers['content-disposition']).toBe(`attachment; filename="one-${backup.id}-files.tar"`);
    const tarFile = path.join(tmp, 'files.tar');
    await writeFile(tarFile, res.rawPayload);
    const out = path.join(tmp, 'extracted');
    await mkdir(out);
    await run('tar', ['-xf', tarFile, '-C', out]);
    expect(await snapshot(out)).toEqual(await snapshot(path.join(home, 'site')));
    // modes and mtimes travel too
    for (const name of ['a.txt', 'sub/c.txt']) {
      const [a, b] = await Promise.all([lstat(path.join(out, name)), lstat(path.join(home, 'site', name))]);
      expect(a.mode).toBe(b.mode);
      expect(Math.floor(a.mtimeMs / 1000)).toBe(Math.floor(b.mtimeMs / 1000));
    }
  });

  it('answers problems before the first byte: 403 viewer, 404 unknown component or backup, 409 not completed', async () => {
    const url = (c: string, b = backup.id) => `/v1/clusters/${clusterId}/backups/${b}/components/${c}/archive`;
    expectProblem(await s.request('GET', url('files'), { token: viewer }), 403);
    expectProblem(await s.request('GET', url('zzz'), { token: operator }), 404);
    expectProblem(await s.request('GET', url('files', randomUUID()), { token: operator }), 404);
    const failed = await plantBackup(s.rt, { id: randomUUID(), tenantId, clusterId, trigger: 'manual', status: 'failed', components: [], errorMessage: 'planted' });
    expectProblem(await s.request('GET', url('files', failed.id), { token: operator }), 409);
    // another tenant's operator: 404, exactly like a backup that does not exist
    const other = await createTenant(s);
    const foreign = await s.request('GET', url('files'), { token: await createKey(s, other.adminToken, 'operator') });
    expectProblem(foreign, 404);
    expect(foreign.body.detail).toBe('backup not found');
  });
});

describe('usage and metrics', () => {
  let one: any;
  it('counts logical bytes of completed backups and stored bytes after compression', async () => {
    const r = await s.request('GET', '/v1/usage', { token: viewer });
    expect(r.status, r.text).toBe(200);
    one = r.body.clusters.find((c: { cluster_id: string }) => c.cluster_id === clusterId);
    expect(one).toMatchObject({ name: 'one', logical_bytes: backup.size_bytes });
    expect(backup.size_bytes).toBeGreaterThan(1_000_000);
    expect(one.stored_bytes).toBeGreaterThan(0);
    expect(one.stored_bytes).toBeLessThan(one.logical_bytes / 10); // very compressible
    expect(r.body.logical_bytes).toBe(backup.size_bytes);
    expect(r.body.stored_bytes).toBe(one.stored_bytes);
    expect(backup.stored_bytes).toBeGreaterThan(0);
    expect(backup.artifacts[0].stored_bytes).toBeGreaterThan(0);
  });

  it('a second cluster with the same data appears with zeros, then adds (almost) nothing to stored bytes', async () => {
    const two = await policyAndCluster('two', [{ name: 'files', type: 'directory', config: { path: 'site2' } }]);
    const before = await s.request('GET', '/v1/usage', { token: viewer });
    expect(before.body.clusters.find((c: { cluster_id: string }) => c.cluster_id === two)).toEqual({ cluster_id: two, name: 'two', logical_bytes: 0, stored_bytes: 0 });
    const b2 = await backUp(two);
    expect(b2.size_bytes).toBe(backup.size_bytes);
    const after = await s.request('GET', '/v1/usage', { token: viewer });
    const c2 = after.body.clusters.find((c: { cluster_id: string }) => c.cluster_id === two);
    expect(c2.logical_bytes).toBe(b2.size_bytes);
    // only its manifest (other inodes and times) is new: a few KiB at most
    expect(c2.stored_bytes).toBeLessThan(16 * 1024);
    expect(after.body.stored_bytes - before.body.stored_bytes).toBe(c2.stored_bytes);
    expect(after.body.logical_bytes).toBe(backup.size_bytes + b2.size_bytes);
    expect(after.body.clusters.find((c: { cluster_id: string }) => c.cluster_id === clusterId).stored_bytes).toBe(one.stored_bytes);
    // another tenant's usage is its own
    const other = await createTenant(s);
    expect((await s.request('GET', '/v1/usage', { token: other.adminToken })).body).toEqual({ logical_bytes: 0, stored_bytes: 0, clusters: [] });
    expect((await s.request('GET', '/v1/usage')).status).toBe(401);
  });

  it('/metrics exports the bytes of each tenant\'s live packs', async () => {
    const r = await s.request('GET', '/metrics', { token: METRICS_TOKEN });
    expect(r.status).toBe(200);
    const m = new RegExp(`^backup_repository_stored_bytes\\{tenant_id="${tenantId}"\\} (\\d+)$`, 'm').exec(r.text);
    expect(m, r.text.split('\n').filter((l) => l.includes('stored_bytes')).join('\n')).not.toBeNull();
    const rows = await s.rt.db.$queryRaw<{ n: number }[]>`SELECT sum(bytes)::float8 AS n FROM packs WHERE tenant_id = ${tenantId}::uuid AND status = 'live'`;
    const n = rows[0]!.n;
    expect(Number(m![1])).toBe(n);
    expect(n).toBeGreaterThan(0);
  });
});

describe('partial restore', () => {
  const restore = (body: unknown, b = backup.id) => s.request('POST', `/v1/clusters/${clusterId}/backups/${b}/restore`, { token: operator, body });

  it('refuses bad paths (422 naming the path) and paths not in the backup (404 naming the first missing)', async () => {
    for (const bad of ['../x', '/etc/passwd', '', 'sub//c.txt', 'sub/', '.', 'sub/../a.txt']) {
      const r = await restore({ paths: ['a.txt', bad] });
      expectProblem(r, 422);
      expect(r.body.errors[0]).toMatchObject({ path: 'body.paths.1', message: expect.stringContaining(JSON.stringify(bad)) });
    }
    expectProblem(await restore({ paths: ['a\0b'] }), 422);
    expectProblem(await restore({ paths: Array.from({ length: 101 }, (_, i) => `f${i}`) }), 422);
    expectProblem(await restore({ paths: [] }), 422);
    const missing = await restore({ paths: ['a.txt', 'sub/nope.txt', 'zzz'] });
    expectProblem(missing, 404);
    expect(missing.body.detail).toContain('"sub/nope.txt"');
    expectProblem(await restore({ paths: ['a.txt/x'] }), 404);
    const failed = await plantBackup(s.rt, { id: randomUUID(), tenantId, clusterId, trigger: 'manual', status: 'failed', components: [], errorMessage: 'planted' });
    expectProblem(await restore({ paths: ['a.txt'] }, failed.id), 409);
    // nothing was queued by any of these
    expect((await s.request('GET', `/v1/clusters/${clusterId}/restores`, { token: viewer })).body.items).toEqual([]);
  });

  it('replaces only the paths named: a file and a directory come back, the rest stays as it is', async () => {
    const site = path.join(home, 'site');
    const original = await snapshot(site);
    await writeFile(path.join(site, 'a.txt'), 'changed a\n');
    await writeFile(path.join(site, 'sub', 'c.txt'), 'changed c\n');
    await writeFile(path.join(site, 'sub', 'new.txt'), 'new in sub\n');
    await rm(path.join(site, 'sub', 'deeper'), { recursive: true });
    await writeFile(path.join(site, 'b.txt'), 'changed b, outside the paths\n');
    await writeFile(path.join(site, 'extra.txt'), 'new at the root\n');
    const r = await restore({ paths: ['a.txt', 'sub'] });
    expect(r.status, r.text).toBe(202);
    expect(r.body.paths).toEqual(['a.txt', 'sub']);
    expect(r.body.components).toEqual(['files']);
    const done = await waitFor(
      async () => {
        const g = await s.request('GET', `/v1/clusters/${clusterId}/restores/${r.body.id}`, { token: viewer });
        return ['completed', 'failed'].includes(g.body.status) ? g.body : null;
      },
      30_000,
      'restore',
    );
    expect(done.status, JSON.stringify(done.error)).toBe('completed');
    expect(done.paths).toEqual(['a.txt', 'sub']);
    const now = await snapshot(site);
    expect(await readFile(path.join(site, 'a.txt'), 'utf8')).toBe('alpha\n');
    for (const [p, v] of original) if (p === 'a.txt' || p.startsWith('sub')) expect(now.get(p), p).toBe(v);
    expect(now.has('sub/new.txt')).toBe(false); // the directory was replaced as a whole
    expect(await readFile(path.join(site, 'b.txt'), 'utf8')).toBe('changed b, outside the paths\n');
    expect(await readFile(path.join(site, 'extra.txt'), 'utf8')).toBe('new at the root\n');
    expect(now.get('link')).toBe(original.get('link'));
    const list = await s.request('GET', `/v1/clusters/${clusterId}/restores`, { token: viewer });
    expect(list.body.items[0].paths).toEqual(['a.txt', 'sub']);
    // a whole restore shows paths: null, and brings back the rest
    const whole = await restore({});
    expect(whole.status, whole.text).toBe(202);
    expect(whole.body.paths).toBeNull();
    await waitFor(async () => (await s.request('GET', `/v1/clusters/${clusterId}/restores/${whole.body.id}`, { token: viewer })).body.status === 'completed', 30_000, 'whole restore');
    expect(await snapshot(site)).toEqual(original);
  });
});

describe('a cluster with a database', () => {
  let mixed: string;
  let b: any;
  let seeded: Awaited<ReturnType<typeof createTenantDatabase>>;
  beforeAll(async () => {
    seeded = await createTenantDatabase();
    const c = new pg.Client({ connectionString: seeded.url });
    await c.connect();
    await c.query('CREATE TABLE t (id int primary key, v text)');
    await c.query(`INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g`);
    await c.end();
    await makeTree(path.join(home, 'site3'));
    mixed = await policyAndCluster('mixed', [
      { name: 'files', type: 'directory', config: { path: 'site3' } },
      { name: 'db', type: 'postgres', config: { url: seeded.url } },
    ]);
    b = await backUp(mixed);
  }, 60_000);
  afterAll(async () => {
    await seeded?.drop();
  });

  it('browsing a postgres component is 422; its archive is a pg_dump file pg_restore reads', async () => {
    expectProblem(await files('component=db', viewer, b.id, mixed), 422);
    expect((await files('component=files', viewer, b.id, mixed)).body.items).toHaveLength(5);
    expect((await files('', viewer, b.id, mixed)).body.items).toHaveLength(5); // its only directory component
    const res = await s.app.inject({ method: 'GET', url: `/v1/clusters/${mixed}/backups/${b.id}/components/db/archive`, headers: { authorization: `Bearer ${operator}` } });
    expect(res.statusCode, res.body.slice(0, 300)).toBe(200);
    expect(res.headers['content-type']).toBe('application/octet-stream');
    expect(res.headers['content-disposition']).toBe(`attachment; filename="mixed-${b.id}-db.pgdump"`);
    expect(res.rawPayload.subarray(0, 5).toString()).toBe('PGDMP');
    const dump = path.join(tmp, 'db.pgdump');
    await writeFile(dump, res.rawPayload);
    const { stdout } = await run('pg_restore', ['--list', dump]);
    expect(stdout).toMatch(/TABLE public t /);
  });

  it('paths need exactly one directory component (422)', async () => {
    const restore = (body: unknown) => s.request('POST', `/v1/clusters/${mixed}/backups/${b.id}/restore`, { token: operator, body });
    const two = await restore({ paths: ['a.txt'] });
    expectProblem(two, 422);
    expect(two.body.errors[0].path).toBe('body.paths');
    expectProblem(await restore({ paths: ['a.txt'], components: ['files', 'db'] }), 422);
    expectProblem(await restore({ paths: ['a.txt'], components: ['db'] }), 422);
    expectProblem(await restore({ paths: ['nope'], components: ['files'] }), 404);
  });

  it('a chunk damaged in the store: browse answers an integrity problem, an archive cut off mid-stream is never complete', async () => {
    // Damage the last chunk of the big file: the archive has begun by the time it is read.
    const entries: any[] = [];
    const artifact = await s.rt.db.backupArtifact.findFirstOrThrow({ where: { backupId: b.id, component: 'files' } });
    for await (const e of s.rt.repo.entries(await s.rt.repo.source(tenantId), artifact)) entries.push(e);
    const big = entries.find((e) => e.path === 'b.txt');
    const chunkId = big.chunks.at(-1);
    const [chunk] = await s.rt.db.$queryRaw<{ pack_id: string; pack_offset: number; length: number }[]>`
      SELECT pack_id, pack_offset, length FROM chunks WHERE tenant_id = ${tenantId}::uuid AND id = ${chunkId}`;
    const restoreByte = await flip(path.join(s.storageRoot, packKey(tenantId, chunk!.pack_id)), chunk!.pack_offset + Math.floor(chunk!.length / 2));
    try {
      // over a real socket: the client sees a transfer cut off, not a short complete file
      await s.app.listen({ port: 0, host: '127.0.0.1' });
      const port = (s.app.server.address() as AddressInfo).port;
      const outcome = await new Promise<{ status: number; bytes: number; error: string | null; complete: boolean }>((resolve) => {
        const req = httpRequest({ host: '127.0.0.1', port, path: `/v1/clusters/${mixed}/backups/${b.id}/components/files/archive`, headers: { authorization: `Bearer ${operator}` } }, (res) => {
          let bytes = 0;
          res.on('data', (d: Buffer) => (bytes += d.length));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, error: null, complete: res.complete }));
          res.on('error', (err) => resolve({ status: res.statusCode ?? 0, bytes, error: err.message, complete: res.complete }));
          res.on('aborted', () => resolve({ status: res.statusCode ?? 0, bytes, error: 'aborted', complete: false }));
        });
        req.on('error', (err) => resolve({ status: 0, bytes: 0, error: err.message, complete: false }));
        req.end();
      });
      expect(outcome.status).toBe(200);
      expect(outcome.complete).toBe(false);
      expect(outcome.error).not.toBeNull();
      // browsing reads the manifest only, which is intact; restoring that file checks its chunks first
      expect((await files('component=files', viewer, b.id, mixed)).status).toBe(200);
      expect(s.logs()).toContain('IntegrityError');
    } finally {
      await restoreByte();
    }
    // A damaged manifest chunk: browsing answers an integrity problem naming the component, nothing internal.
    const manifestChunk = (artifact.manifest as { chunks: string[] }).chunks[0]!;
    const [mc] = await s.rt.db.$queryRaw<{ pack_id: string; pack_offset: number; length: number }[]>`
      SELECT pack_id, pack_offset, length FROM chunks WHERE tenant_id = ${tenantId}::uuid AND id = ${manifestChunk}`;
    const restoreManifest = await flip(path.join(s.storageRoot, packKey(tenantId, mc!.pack_id)), mc!.pack_offset + Math.floor(mc!.length / 2));
    try {
      const r = await files('component=files', viewer, b.id, mixed);
      expectProblem(r, 500);
      expect(r.body.type).toBe('/problems/integrity-error');
      expect(r.body.detail).toContain('"files"');
      expect(r.body.detail).not.toContain(mc!.pack_id);
      const a = await s.request('GET', `/v1/clusters/${mixed}/backups/${b.id}/components/files/archive`, { token: operator });
      expectProblem(a, 500);
      expect(a.headers['content-disposition']).toBeUndefined();
      const p = await s.request('POST', `/v1/clusters/${mixed}/backups/${b.id}/restore`, { token: operator, body: { components: ['files'], paths: ['a.txt'] } });
      expectProblem(p, 500);
      expect(p.body.type).toBe('/problems/integrity-error');
    } finally {
      await restoreManifest();
    }
    expect((await files('component=files', viewer, b.id, mixed)).status).toBe(200);
  });
});

/** Flips one byte of a file; returns what flips it back. */
async function flip(file: string, at: number): Promise<() => Promise<void>> {
  const once = async () => {
    const fh = await open(file, 'r+');
    const byte = Buffer.alloc(1);
    await fh.read(byte, 0, 1, at);
    byte[0] = byte[0]! ^ 0xff;
    await fh.write(byte, 0, 1, at);
    await fh.close();
  };
  await once();
  return once;
}
