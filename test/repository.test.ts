/**
 * The repository end to end (SPEC section 8, docs/repository.md): real PostgreSQL, Redis, API and
 * BullMQ worker, a file store (plus a second file store as the secondary region), and s3rver.
 */
import { randomBytes } from 'node:crypto';
import { appendFile, chmod, cp, lstat, mkdir, open, readdir, readFile, rename, rm, symlink, truncate, unlink, utimes, writeFile } from 'node:fs/promises';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectGarbage } from '../src/repo/gc.js';
import { packKey, repoPrefix } from '../src/repo/layout.js';
import { S3_TEST_CREDENTIALS, startS3TestServer, type S3TestServer } from '../src/storage/s3-test-server.js';
import { createTenantDatabase } from './helpers/db.js';
import {
  backupNow,
  compressible,
  createCluster,
  deleteBackup,
  describeTree,
  MiB,
  pseudoRandom,
  q,
  restoreAndWait,
  runGc,
  sql,
  tableText,
  verifyAndWait,
} from './helpers/repo-tree.js';
import { createTenant, startStack, waitFor, waitForBackup, type Stack } from './helpers/stack.js';

let s: Stack;
let secondaryRoot: string;

const REPO_ENV = { PACK_TARGET_BYTES: String(MiB), GC_GRACE_MS: '0', GC_REPACK_THRESHOLD: '0.3' };

beforeAll(async () => {
  secondaryRoot = await mkdtemp(path.join(tmpdir(), 'bk-secondary-'));
  s = await startStack({ env: { ...REPO_ENV, STORAGE_SECONDARY_URL: pathToFileURL(secondaryRoot).href } });
});
afterAll(async () => {
  await s?.close();
  await rm(secondaryRoot, { recursive: true, force: true });
});

/** A query on the service's database (the stack of this file). */
const db = <T = any>(text: string, params: unknown[] = []) => q<T>(s, text, params);

const files = (p: string) => [{ name: 'files', type: 'directory', config: { path: p } }];

/** Every object key below `root` (a file store's root), relative to it. */
async function storedKeys(root: string, prefix = 'repos/'): Promise<string[]> {
  const base = path.join(root, prefix);
  const entries = await readdir(base, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => path.relative(root, path.join(e.parentPath, e.name)).split(path.sep).join('/')).sort();
}

const packFiles = async (root: string, tenantId: string) => (await storedKeys(root, `${repoPrefix(tenantId)}packs/`)).map((k) => k.split('/').pop()!).sort();

/** The first version of the tree: text, random and compressible data, modes, symlinks, an empty file and directory, a read-only directory. */
async function buildTree(root: string): Promise<void> {
  await mkdir(path.join(root, 'docs'), { recursive: true });
  await mkdir(path.join(root, 'data', 'bin'), { recursive: true });
  await mkdir(path.join(root, 'empty-dir'));
  await mkdir(path.join(root, 'ro'));
  await writeFile(path.join(root, 'docs', 'readme.txt'), 'Read me first.\n'.repeat(40));
  await writeFile(path.join(root, 'docs', 'notes.md'), compressible(300 * 1024, 'notes'));
  await writeFile(path.join(root, 'data', 'random.bin'), pseudoRandom(4 * MiB + 12345, 'random-1'));
  await writeFile(path.join(root, 'data', 'text.log'), compressible(MiB + 777, 'log-1'));
  await writeFile(path.join(root, 'data', 'bin', 'tool'), '#!/bin/sh\necho tool\n');
  await chmod(path.join(root, 'data', 'bin', 'tool'), 0o755);
  await writeFile(path.join(root, 'secret.txt'), 'hush');
  await chmod(path.join(root, 'secret.txt'), 0o600);
  await writeFile(path.join(root, 'empty.txt'), '');
  await writeFile(path.join(root, 'ro', 'fixed.txt'), 'cannot touch this');
  await chmod(path.join(root, 'ro'), 0o555);
  await symlink('docs/readme.txt', path.join(root, 'link-to-readme'));
  await symlink('data', path.join(root, 'data-link'));
}

/** Edits in place, adds, deletes, changes a mode and retargets a symlink. */
async function changeTree2(root: string): Promise<void> {
  await writeFile(path.join(root, 'docs', 'readme.txt'), 'Read me first. Edited.\n'.repeat(41));
  const fh = await open(path.join(root, 'data', 'random.bin'), 'r+');
  await fh.write(pseudoRandom(100, 'patch'), 0, 100, 2 * MiB);
  await fh.close();
  await writeFile(path.join(root, 'data', 'new.bin'), pseudoRandom(2 * MiB, 'new-1'));
  await rm(path.join(root, 'docs', 'notes.md'));
  await chmod(path.join(root, 'secret.txt'), 0o640);
  await writeFile(path.join(root, 'docs', 'other.txt'), 'the other document');
  await unlink(path.join(root, 'link-to-readme'));
  await symlink('docs/other.txt', path.join(root, 'link-to-readme'));
}

/** Appends, patches again, deletes a directory and what the last change added, adds a deep directory, renames a file, replaces a file by a symlink. */
async function changeTree3(root: string): Promise<void> {
  await appendFile(path.join(root, 'data', 'text.log'), compressible(64 * 1024, 'log-2'));
  await rm(path.join(root, 'data', 'bin'), { recursive: true });
  await mkdir(path.join(root, 'a', 'b', 'c'), { recursive: true });
  await writeFile(path.join(root, 'a', 'b', 'c', 'deep.txt'), 'deep down');
  const fh = await open(path.join(root, 'data', 'random.bin'), 'r+');
  await fh.write(pseudoRandom(100, 'patch-2'), 0, 100, 2 * MiB);
  await fh.close();
  await rm(path.join(root, 'data', 'new.bin'));
  await rename(path.join(root, 'docs', 'other.txt'), path.join(root, 'docs', 'other-renamed.txt'));
  await rm(path.join(root, 'empty.txt'));
  await symlink('secret.txt', path.join(root, 'empty.txt'));
}

describe('successive backups of a changing tree, then GC', () => {
  let tenantId: string;
  let token: string;
  let home: string;
  let source: string;
  let mirror: string;
  const backups: { id: string; tree: Awaited<ReturnType<typeof describeTree>>; stored: number }[] = [];

  beforeAll(async () => {
    const t = await createTenant(s);
    tenantId = t.tenantId;
    token = t.adminToken;
    home = t.dir;
    source = path.join(home, 'tree');
    mirror = path.join(home, 'mirror');
  });

  it('each of three backups restores byte-identical to its own time', async () => {
    await buildTree(source);
    const cid = await createCluster(s, token, 'changing', files('tree'));
    await mkdir(mirror);
    const mid = await createCluster(s, token, 'mirror', files('mirror'));
    for (const change of [null, changeTree2, changeTree3]) {
      if (change) await change(source);
      const tree = await describeTree(source);
      const b = await backupNow(s, token, cid);
      expect(b.size_bytes).toBe(tree.filter((e) => e.type === 'file').reduce((n, e) => n + e.size, 0));
      expect(b.stored_bytes).toBeGreaterThan(0);
      expect(b.artifacts[0]).toMatchObject({ component: 'files', type: 'directory', bytes: b.size_bytes, stored_bytes: b.stored_bytes });
      expect(await describeTree(source)).toEqual(tree); // the backup changed nothing
      backups.push({ id: b.id, tree, stored: b.stored_bytes });
    }
    // Later backups store only what changed: new.bin (2 MiB), the chunk(s) of random.bin around the patch, small files, the manifest.
    expect(backups[1]!.stored).toBeLessThan(backups[0]!.stored);
    expect(backups[2]!.stored).toBeLessThan(backups[0]!.stored * 0.75);
    // Several packs (PACK_TARGET_BYTES is 1 MiB).
    expect((await db('SELECT count(*)::int AS n FROM packs WHERE tenant_id = $1', [tenantId]))[0].n).toBeGreaterThan(3);

    for (const b of backups) {
      const r = await restoreAndWait(s, token, cid, b.id, { target_cluster_id: mid });
      expect(r.status, JSON.stringify(r.error)).toBe('completed');
      expect(await describeTree(mirror)).toEqual(b.tree);
    }
  });

  it('after deleting the middle backup and GC, the others restore and verify; packs nobody references are gone', async () => {
    expect(backups).toHaveLength(3);
    const [b1, b2, b3] = backups as [(typeof backups)[0], (typeof backups)[0], (typeof backups)[0]];
    const cid = (await s.rt.db.backup.findUniqueOrThrow({ where: { id: b1.id } })).clusterId;
    const mid = (await s.rt.db.cluster.findFirstOrThrow({ where: { tenantId, name: 'mirror' } })).id;
    const packsOf = async (ids: string[]) =>
      (
        await db<{ pack_id: string }>(
          `SELECT DISTINCT c.pack_id FROM backup_chunks r JOIN chunks c ON c.tenant_id = r.tenant_id AND c.id = r.chunk_id WHERE r.backup_id = ANY($1::uuid[])`,
          [ids],
        )
      ).map((r) => r.pack_id);
    const kept = new Set(await packsOf([b1.id, b3.id]));
    const packBytes = async () => Number((await db('SELECT COALESCE(sum(bytes), 0)::text AS n FROM packs WHERE tenant_id = $1', [tenantId]))[0].n);
    const beforeBytes = await packBytes();
    const beforePacks = new Set((await db<{ id: string }>('SELECT id FROM packs WHERE tenant_id = $1', [tenantId])).map((r) => r.id));
    const onlyB2 = (await packsOf([b2.id])).filter((p) => !kept.has(p));
    const chunksOnlyB2 = await db<{ id: string }>(
      `SELECT chunk_id AS id FROM backup_chunks WHERE backup_id = $1 EXCEPT SELECT chunk_id FROM backup_chunks WHERE backup_id = ANY($2::uuid[])`,
      [b2.id, [b1.id, b3.id]],
    );
    expect(chunksOnlyB2.length).toBeGreaterThan(0); // new.bin, b2's version of the patched chunk of random.bin, its manifest

    const deletedAt = new Date();
    await deleteBackup(s, token, cid, b2.id);
    // The deletion triggers the worker's gc job: it runs and clears the request.
    await waitFor(
      async () => {
        const r = await s.rt.db.repository.findUniqueOrThrow({ where: { tenantId } });
        return r.gcRanAt !== null && r.gcRanAt >= new Date(deletedAt.getTime() - 1000) && r.gcRequestedAt === null;
      },
      20_000,
      'the gc job to run',
    );
    // Packs doomed by a run (unreferenced, or repacked) are deleted by the first run after GC_GRACE_MS (0 here), as the reconciler would enqueue it.
    await runGc(s, tenantId);

    const rows = await db<{ id: string; status: string; secondary_status: string | null }>('SELECT id, status, secondary_status FROM packs WHERE tenant_id = $1', [tenantId]);
    expect(rows.every((r) => r.status === 'live')).toBe(true);
    const live = new Set(rows.map((r) => r.id));
    for (const p of onlyB2) expect(live.has(p), `pack ${p} only b2 used`).toBe(false);
    // The store holds exactly the packs the table knows, and each of them holds a referenced chunk.
    expect(await packFiles(s.storageRoot, tenantId)).toEqual([...live].sort());
    for (const p of onlyB2) expect(await packFiles(secondaryRoot, tenantId)).not.toContain(p);
    const idle = await db(
      `SELECT p.id FROM packs p WHERE p.tenant_id = $1 AND NOT EXISTS (
         SELECT 1 FROM chunks c JOIN backup_chunks r ON r.tenant_id = c.tenant_id AND r.chunk_id = c.id WHERE c.pack_id = p.id)`,
      [tenantId],
    );
    expect(idle).toEqual([]);
    // What stays is no more garbage than GC_REPACK_THRESHOLD allows: a live pack holding any unreferenced chunk has at least 70% of its bytes referenced.
    const packs = await db<{ id: string; bytes: string; chunk_count: number; live: string; live_chunks: number }>(
      `SELECT p.id, p.bytes::text, p.chunk_count,
         COALESCE(sum(c.length) FILTER (WHERE EXISTS (SELECT 1 FROM backup_chunks r WHERE r.tenant_id = c.tenant_id AND r.chunk_id = c.id)), 0)::text AS live,
         (count(c.id) FILTER (WHERE EXISTS (SELECT 1 FROM backup_chunks r WHERE r.tenant_id = c.tenant_id AND r.chunk_id = c.id)))::int AS live_chunks
       FROM packs p LEFT JOIN chunks c ON c.pack_id = p.id WHERE p.tenant_id = $1 GROUP BY p.id`,
      [tenantId],
    );
    for (const p of packs) if (p.live_chunks < p.chunk_count) expect(Number(p.live), `pack ${p.id}: ${JSON.stringify(p)}`).toBeGreaterThanOrEqual(0.7 * Number(p.bytes));
    // GC did reclaim: some packs are gone, and the store holds fewer bytes.
    expect([...beforePacks].filter((p) => !live.has(p)).length).toBeGreaterThan(0);
    expect(await packBytes()).toBeLessThan(beforeBytes);
    // Every chunk only the deleted backup had is either gone or sits in a pack GC judged worth keeping (checked above); none is referenced.
    expect(await db('SELECT chunk_id FROM backup_chunks WHERE backup_id = $1', [b2.id])).toEqual([]);

    for (const b of [b1, b3]) {
      const r = await restoreAndWait(s, token, cid, b.id, { target_cluster_id: mid });
      expect(r.status, JSON.stringify(r.error)).toBe('completed');
      expect(await describeTree(mirror)).toEqual(b.tree);
      const v = await verifyAndWait(s, token, cid, b.id);
      expect(v.status, v.message ?? '').toBe('passed');
    }
  });

  it('GC converges: another run with nothing deleted dooms, repacks and deletes nothing', async () => {
    const before = (await db<{ id: string }>('SELECT id FROM packs WHERE tenant_id = $1 ORDER BY id', [tenantId])).map((r) => r.id);
    await runGc(s, tenantId);
    await runGc(s, tenantId);
    const after = (await db<{ id: string }>('SELECT id FROM packs WHERE tenant_id = $1 ORDER BY id', [tenantId])).map((r) => r.id);
    expect(after).toEqual(before);
  });
});

describe('incremental and deduplicated', () => {
  it('a second backup of an unchanged tree stores under 1% of the first and reads no file', async () => {
    const t = await createTenant(s);
    const root = path.join(t.dir, 'same');
    await mkdir(path.join(root, 'sub'), { recursive: true });
    const names: string[] = [];
    for (let i = 0; i < 6; i++) {
      const name = i % 2 ? `sub/f${i}.bin` : `f${i}.txt`;
      await writeFile(path.join(root, name), i % 2 ? pseudoRandom(400 * 1024 + i, `u${i}`) : compressible(300 * 1024 + i, `u${i}`));
      names.push(name);
    }
    // The observable of "not read": atime. The file system is mounted relatime, which updates atime
    // on a read only when the old atime is not newer than mtime; with mtime a year ahead every
    // read moves atime (and reads change nothing else: size, mtime, ctime and inode stay).
    const future = new Date(Date.now() + 365 * 24 * 3600_000);
    const past = new Date(Date.now() - 30 * 24 * 3600_000);
    for (const n of names) await utimes(path.join(root, n), past, future);
    const atimes = async () => Promise.all(names.map(async (n) => (await lstat(path.join(root, n), { bigint: true })).atimeNs));
    const initial = await atimes();

    const cid = await createCluster(s, t.adminToken, 'same', files('same'));
    const first = await backupNow(s, t.adminToken, cid);
    const afterFirst = await atimes();
    // The signal works: the first backup read every file, and that moved each atime.
    afterFirst.forEach((a, i) => expect(a, names[i]).toBeGreaterThan(initial[i]!));
    const second = await backupNow(s, t.adminToken, cid);
    expect(second.size_bytes).toBe(first.size_bytes);
    expect(first.stored_bytes).toBeGreaterThan(MiB);
    expect(second.stored_bytes).toBeLessThan(first.stored_bytes / 100);
    // ... and the second read none.
    expect(await atimes()).toEqual(afterFirst);
    // It is still a full snapshot: it restores the whole tree.
    await mkdir(path.join(t.dir, 'same-mirror'));
    const m = await createCluster(s, t.adminToken, 'same-mirror', files('same-mirror'));
    const tree = await describeTree(root);
    const r = await restoreAndWait(s, t.adminToken, cid, second.id, { target_cluster_id: m });
    expect(r.status, JSON.stringify(r.error)).toBe('completed');
    expect(await describeTree(path.join(t.dir, 'same-mirror'))).toEqual(tree);
  });

  it('the same data in two clusters of one tenant is stored once', async () => {
    const t = await createTenant(s);
    const a = path.join(t.dir, 'shared-a');
    await mkdir(path.join(a, 'x'), { recursive: true });
    await writeFile(path.join(a, 'big.bin'), pseudoRandom(2 * MiB, 'shared'));
    await writeFile(path.join(a, 'x', 'text.txt'), compressible(MiB, 'shared'));
    await cp(a, path.join(t.dir, 'shared-b'), { recursive: true });
    const ca = await createCluster(s, t.adminToken, 'a', files('shared-a'));
    const cb = await createCluster(s, t.adminToken, 'b', files('shared-b'));
    const ba = await backupNow(s, t.adminToken, ca);
    const bb = await backupNow(s, t.adminToken, cb);
    expect(bb.size_bytes).toBe(ba.size_bytes);
    // Only the manifest is new (other inodes and times): well under 1%.
    expect(bb.stored_bytes).toBeLessThan(ba.stored_bytes / 100);
    const usage = await s.request('GET', '/v1/usage', { token: t.adminToken });
    if (usage.status !== 404) {
      expect(usage.status, usage.text).toBe(200);
      const byId = new Map<string, { logical_bytes: number; stored_bytes: number }>(usage.body.clusters.map((c: { cluster_id: string }) => [c.cluster_id, c]));
      expect(byId.get(ca)!.logical_bytes).toBe(ba.size_bytes);
      expect(byId.get(cb)!.logical_bytes).toBe(bb.size_bytes);
      // Shared chunks count for the cluster that stored them first.
      expect(byId.get(cb)!.stored_bytes).toBeLessThan(byId.get(ca)!.stored_bytes / 100);
      expect(usage.body.logical_bytes).toBe(ba.size_bytes + bb.size_bytes);
      expect(usage.body.stored_bytes).toBeLessThan(ba.stored_bytes * 1.05);
    }
  });

  it('two tenants backing up the same data share no chunk id, no pack and no prefix', async () => {
    const tenants = [await createTenant(s), await createTenant(s)];
    const seen: { tenantId: string; stored: number }[] = [];
    for (const t of tenants) {
      const root = path.join(t.dir, 'same-data');
      await mkdir(root, { recursive: true });
      await writeFile(path.join(root, 'big.bin'), pseudoRandom(2 * MiB, 'cross-tenant'));
      await writeFile(path.join(root, 'text.txt'), compressible(MiB, 'cross-tenant'));
      const cid = await createCluster(s, t.adminToken, 'c', files('same-data'));
      const b = await backupNow(s, t.adminToken, cid);
      seen.push({ tenantId: t.tenantId, stored: b.stored_bytes });
    }
    // The second tenant stored it all again.
    expect(seen[1]!.stored).toBeGreaterThan(seen[0]!.stored * 0.9);
    const [x, y] = seen.map((t) => t.tenantId) as [string, string];
    const chunkIds = async (tenant: string) => (await db<{ id: string }>('SELECT id FROM chunks WHERE tenant_id = $1', [tenant])).map((r) => r.id);
    const cx = await chunkIds(x);
    const cy = new Set(await chunkIds(y));
    expect(cx.length).toBeGreaterThan(2);
    expect(cx.filter((id) => cy.has(id))).toEqual([]);
    // No chunk row points at another tenant's pack, no reference names another tenant's chunk.
    expect(await db('SELECT c.id FROM chunks c JOIN packs p ON p.id = c.pack_id WHERE c.tenant_id <> p.tenant_id')).toEqual([]);
    expect(await db('SELECT r.chunk_id FROM backup_chunks r JOIN backups b ON b.id = r.backup_id WHERE r.tenant_id <> b.tenant_id')).toEqual([]);
    for (const tenant of [x, y]) {
      const other = tenant === x ? y : x;
      const packs = (await db<{ id: string }>('SELECT id FROM packs WHERE tenant_id = $1 ORDER BY id', [tenant])).map((r) => r.id);
      expect(packs.length).toBeGreaterThan(0);
      expect(await packFiles(s.storageRoot, tenant)).toEqual(packs);
      // Its objects are all under its own prefix; none of its packs is under the other's.
      const keys = await storedKeys(s.storageRoot, repoPrefix(tenant));
      expect(keys.every((k) => k.startsWith(repoPrefix(tenant)))).toBe(true);
      expect(keys).toContain(`${repoPrefix(tenant)}config`);
      const otherKeys = new Set(await storedKeys(s.storageRoot, repoPrefix(other)));
      for (const p of packs) expect(otherKeys.has(packKey(other, p))).toBe(false);
    }
    const px = new Set((await db<{ id: string }>('SELECT id FROM packs WHERE tenant_id = $1', [x])).map((r) => r.id));
    const py = (await db<{ id: string }>('SELECT id FROM packs WHERE tenant_id = $1', [y])).map((r) => r.id);
    expect(py.filter((p) => px.has(p))).toEqual([]);
  });
});

describe('postgres component', () => {
  let src: Awaited<ReturnType<typeof createTenantDatabase>>;
  let fresh: Awaited<ReturnType<typeof createTenantDatabase>>;
  beforeAll(async () => {
    src = await createTenantDatabase();
    fresh = await createTenantDatabase();
  });
  afterAll(async () => {
    await src?.drop();
    await fresh?.drop();
  });

  it('five backups with ~1% of rows updated between each: later ones store far less; the last restores into a fresh database', async () => {
    const ROWS = 60_000;
    await sql(src.url, 'CREATE TABLE events (id int primary key, kind text not null, payload text not null, n bigint not null)');
    await sql(
      src.url,
      `INSERT INTO events SELECT g, 'kind-' || (g % 13), md5(g::text) || repeat(substr(md5((g * 7)::text), 1, 8), 12), g * 31 FROM generate_series(1, $1) g`,
      [ROWS],
    );
    await sql(src.url, 'CREATE TABLE tags (id int primary key, label text)');
    await sql(src.url, `INSERT INTO tags SELECT g, 'tag ' || g FROM generate_series(1, 2000) g`);
    const t = await createTenant(s);
    const cid = await createCluster(s, t.adminToken, 'pg', [{ name: 'db', type: 'postgres', config: { url: src.url } }]);
    const stored: number[] = [];
    for (let i = 0; i < 5; i++) {
      if (i > 0) {
        // ~1% of the rows: a range of recent ones, as an application's updates usually are.
        const from = 10_000 * i;
        await sql(src.url, `UPDATE events SET payload = md5(payload) || ' v${i}', n = n + 1 WHERE id > $1 AND id <= $2`, [from, from + ROWS / 100]);
      }
      const b = await backupNow(s, t.adminToken, cid);
      stored.push(b.stored_bytes);
    }
    const first = stored[0]!;
    expect(first).toBeGreaterThan(MiB);
    for (const n of stored.slice(1)) expect(n, JSON.stringify(stored)).toBeLessThan(first * 0.6);
    expect(stored.slice(1).reduce((a, b) => a + b, 0), JSON.stringify(stored)).toBeLessThan(first * 2);

    const target = await createCluster(s, t.adminToken, 'pg-fresh', [{ name: 'db', type: 'postgres', config: { url: fresh.url } }]);
    const last = (await s.request('GET', `/v1/clusters/${cid}/backups?limit=1`, { token: t.adminToken })).body.items[0];
    const r = await restoreAndWait(s, t.adminToken, cid, last.id, { target_cluster_id: target });
    expect(r.status, JSON.stringify(r.error)).toBe('completed');
    expect(await tableText(fresh.url, 'events')).toBe(await tableText(src.url, 'events'));
    expect(await tableText(fresh.url, 'tags')).toBe(await tableText(src.url, 'tags'));
  });
});

describe('integrity', () => {
  let t: Awaited<ReturnType<typeof createTenant>>;
  let cid: string;
  let mid: string;
  let backup: any;
  let tree: Awaited<ReturnType<typeof describeTree>>;

  beforeAll(async () => {
    t = await createTenant(s);
    await buildTree(path.join(t.dir, 'guarded'));
    tree = await describeTree(path.join(t.dir, 'guarded'));
    cid = await createCluster(s, t.adminToken, 'guarded', files('guarded'));
    await mkdir(path.join(t.dir, 'target'));
    mid = await createCluster(s, t.adminToken, 'guarded-target', files('target'));
    backup = await backupNow(s, t.adminToken, cid);
    // The target holds something else; a failed restore must leave it so.
    await mkdir(path.join(t.dir, 'target', 'keep'), { recursive: true });
    await writeFile(path.join(t.dir, 'target', 'keep', 'me.txt'), 'precious');
  });

  /** The pack holding the backup's largest chunk, and that chunk's place in it. */
  async function victim(backupId: string) {
    const [c] = await db<{ pack_id: string; pack_offset: number; length: number }>(
      `SELECT c.pack_id, c.pack_offset, c.length FROM backup_chunks r JOIN chunks c ON c.tenant_id = r.tenant_id AND c.id = r.chunk_id
       WHERE r.backup_id = $1 ORDER BY c.length DESC, c.id LIMIT 1`,
      [backupId],
    );
    return { ...c!, file: path.join(s.storageRoot, packKey(t.tenantId, c!.pack_id)) };
  }

  const damages: [string, (v: Awaited<ReturnType<typeof victim>>) => Promise<void>][] = [
    [
      'one flipped bit',
      async (v) => {
        const bytes = await readFile(v.file);
        bytes[v.pack_offset + Math.floor(v.length / 2)]! ^= 0x10;
        await writeFile(v.file, bytes);
      },
    ],
    ['a truncated pack', async (v) => truncate(v.file, v.pack_offset + Math.floor(v.length / 2))],
    ['a deleted pack', async (v) => unlink(v.file)],
  ];

  it.each(damages)('%s: verify fails naming the component and "integrity"; a restore fails the same way and leaves the target untouched', async (_what, damage) => {
    const v = await victim(backup.id);
    const original = await readFile(v.file);
    const targetBefore = await describeTree(path.join(t.dir, 'target'));
    await damage(v);
    try {
      const verification = await verifyAndWait(s, t.adminToken, cid, backup.id);
      expect(verification.status).toBe('failed');
      expect(verification.message).toMatch(/component "files"/);
      expect(verification.message).toMatch(/integrity/);
      const r = await restoreAndWait(s, t.adminToken, cid, backup.id, { target_cluster_id: mid });
      expect(r.status).toBe('failed');
      expect(r.error.component).toBe('files');
      expect(r.error.message).toMatch(/component "files"/);
      expect(r.error.message).toMatch(/integrity/);
      expect(await describeTree(path.join(t.dir, 'target'))).toEqual(targetBefore);
      // Nothing of the failed restore is left beside the target either.
      expect((await readdir(t.dir)).filter((n) => n.includes('target') && n !== 'target')).toEqual([]);
    } finally {
      await writeFile(v.file, original);
    }
    // Repaired, it verifies and restores again.
    expect((await verifyAndWait(s, t.adminToken, cid, backup.id)).status).toBe('passed');
  });

  it('the repaired backup restores', async () => {
    const r = await restoreAndWait(s, t.adminToken, cid, backup.id, { target_cluster_id: mid });
    expect(r.status, JSON.stringify(r.error)).toBe('completed');
    expect(await describeTree(path.join(t.dir, 'target'))).toEqual(tree);
  });

  it('dual-region: with the primary copy of a pack damaged or gone, a restore reads that pack from the secondary', async () => {
    const root = path.join(t.dir, 'two-regions');
    await buildTree(root);
    const dual = await createCluster(s, t.adminToken, 'dual', files('two-regions'), { backup_location: 'dual-region' });
    await mkdir(path.join(t.dir, 'dual-out'));
    const target = await createCluster(s, t.adminToken, 'dual-target', files('dual-out'), { backup_location: 'dual-region' });
    const b = await backupNow(s, t.adminToken, dual);
    const replicated = await waitFor(
      async () => {
        const r = await s.request('GET', `/v1/clusters/${dual}/backups/${b.id}`, { token: t.adminToken });
        return r.body.replication?.status === 'replicated' ? r.body : null;
      },
      20_000,
      'replication',
    );
    expect(replicated.artifacts[0].locations.map((l: { store: string; status: string }) => `${l.store}:${l.status}`)).toEqual(['primary:present', 'secondary:present']);
    const packs = await db<{ id: string; secondary_status: string }>(
      `SELECT DISTINCT p.id, p.secondary_status FROM backup_chunks r JOIN chunks c ON c.tenant_id = r.tenant_id AND c.id = r.chunk_id JOIN packs p ON p.id = c.pack_id WHERE r.backup_id = $1`,
      [b.id],
    );
    expect(packs.every((p) => p.secondary_status === 'present')).toBe(true);
    for (const p of packs) {
      const [copy, orig] = await Promise.all([secondaryRoot, s.storageRoot].map((root) => readFile(path.join(root, packKey(t.tenantId, p.id)))));
      expect(copy!.equals(orig!), `secondary copy of ${p.id}`).toBe(true);
    }
    const tree2 = await describeTree(root);
    const v = await victim(b.id);
    const original = await readFile(v.file);
    try {
      for (const damage of damages) {
        await writeFile(v.file, original);
        await damage[1](v);
        const logBefore = s.logs().length;
        const r = await restoreAndWait(s, t.adminToken, dual, b.id, { target_cluster_id: target });
        expect(r.status, `${damage[0]}: ${JSON.stringify(r.error)}`).toBe('completed');
        expect(await describeTree(path.join(t.dir, 'dual-out'))).toEqual(tree2);
        const fallback = s.logs().slice(logBefore);
        expect(fallback).toContain('reading the secondary');
        expect(fallback).toContain(v.pack_id);
        // Verification re-reads every location, so it still reports the damaged primary copy.
        const ver = await verifyAndWait(s, t.adminToken, dual, b.id);
        expect(ver.status).toBe('failed');
        expect(ver.message).toMatch(/primary copy of pack/);
      }
    } finally {
      await writeFile(v.file, original);
    }
  });
});

describe('on S3 (s3rver)', () => {
  let server: S3TestServer;
  let s3: Stack;
  const saved: Record<string, string | undefined> = {};
  const S3_ENV = ['S3_ENDPOINT', 'S3_ACCESS_KEY_ID', 'S3_SECRET_ACCESS_KEY'] as const;

  beforeAll(async () => {
    server = await startS3TestServer(['repo-bucket']);
    // The S3 store takes its endpoint and credentials from the process environment (never from the URL).
    for (const k of S3_ENV) saved[k] = process.env[k];
    process.env.S3_ENDPOINT = server.endpoint;
    process.env.S3_ACCESS_KEY_ID = S3_TEST_CREDENTIALS.accessKeyId;
    process.env.S3_SECRET_ACCESS_KEY = S3_TEST_CREDENTIALS.secretAccessKey;
    s3 = await startStack({ env: { ...REPO_ENV, STORAGE_URL: `s3://repo-bucket/svc-${randomBytes(3).toString('hex')}` } });
  }, 60_000);
  afterAll(async () => {
    await s3?.close();
    await server?.close();
    for (const k of S3_ENV) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  });

  it('successive backups restore byte-identically; a partial restore replaces only the paths named', async () => {
    const t = await createTenant(s3);
    const root = path.join(t.dir, 'tree');
    await buildTree(root);
    const cid = await createCluster(s3, t.adminToken, 'on-s3', files('tree'));
    await mkdir(path.join(t.dir, 'mirror'));
    const mid = await createCluster(s3, t.adminToken, 'on-s3-mirror', files('mirror'));
    const b1 = await backupNow(s3, t.adminToken, cid);
    const tree1 = await describeTree(root);
    await changeTree2(root);
    const tree2 = await describeTree(root);
    const b2 = await backupNow(s3, t.adminToken, cid);
    expect(b2.stored_bytes).toBeLessThan(b1.stored_bytes);
    expect(b1.artifacts[0].location).toMatch(/^s3:\/\/repo-bucket\//);
    for (const [b, tree] of [
      [b1, tree1],
      [b2, tree2],
    ] as const) {
      const r = await restoreAndWait(s3, t.adminToken, cid, b.id, { target_cluster_id: mid });
      expect(r.status, JSON.stringify(r.error)).toBe('completed');
      expect(await describeTree(path.join(t.dir, 'mirror'))).toEqual(tree);
    }
    // Now the mirror is as of b2; put back two paths as of b1, leave everything else (and an extra file) alone.
    const mirror = path.join(t.dir, 'mirror');
    await writeFile(path.join(mirror, 'extra.txt'), 'not in any backup');
    const before = await describeTree(mirror);
    const r = await restoreAndWait(s3, t.adminToken, cid, b1.id, { target_cluster_id: mid, paths: ['docs', 'data/random.bin'] });
    expect(r.status, JSON.stringify(r.error)).toBe('completed');
    const after = await describeTree(mirror);
    const inPaths = (p: string) => p === 'docs' || p.startsWith('docs/') || p === 'data/random.bin';
    expect(after.filter((e) => inPaths(e.path))).toEqual(tree1.filter((e) => inPaths(e.path)));
    // 'data' itself is a parent of a restored path: its mtime may move; everything else is as it was.
    const rest = (list: typeof after) => list.filter((e) => !inPaths(e.path)).map((e) => (e.path === 'data' ? { ...e, mtimeUs: undefined } : e));
    expect(rest(after)).toEqual(rest(before));
  });
});

describe('GC racing backups (no repository lock)', () => {
  let g: Stack;
  beforeAll(async () => {
    // A grace period longer than the test: doomed packs stay in the store, so only the protocol (not luck with timing) keeps backups whole.
    g = await startStack({ env: { PACK_TARGET_BYTES: String(MiB), GC_GRACE_MS: '600000', GC_REPACK_THRESHOLD: '0.3' } });
  });
  afterAll(async () => {
    await g?.close();
  });

  it('backups reusing the chunks of a backup being deleted and collected stay complete and restorable', async () => {
    const t = await createTenant(g);
    for (const name of ['one', 'two']) {
      const root = path.join(t.dir, name);
      await mkdir(path.join(root, 'd'), { recursive: true });
      for (let i = 0; i < 8; i++) await writeFile(path.join(root, 'd', `f${i}.bin`), i % 2 ? pseudoRandom(300 * 1024 + i, `race${i}`) : compressible(400 * 1024 + i, `race${i}`));
    }
    const c1 = await createCluster(g, t.adminToken, 'one', files('one'));
    const c2 = await createCluster(g, t.adminToken, 'two', files('two'));
    let previous = await backupNow(g, t.adminToken, c1);
    let stop = false;
    const gcRuns = (async () => {
      let n = 0;
      while (!stop) {
        await collectGarbage({
          pool: g.rt.db.$pool,
          primary: g.rt.repo.primary,
          secondary: null,
          seal: g.rt.repo.seal,
          keys: await g.rt.repo.repositories.keysOf(t.tenantId),
          tenantId: t.tenantId,
          graceMs: 600_000,
          repackThreshold: 0.3,
          packTargetBytes: MiB,
          now: () => new Date(),
        });
        n++;
      }
      return n;
    })();
    const kept: { id: string; cluster: string }[] = [];
    try {
      for (let round = 0; round < 4; round++) {
        // The other cluster backs up the same data (every chunk exists: all reused) while the only backup holding them goes.
        const cluster = round % 2 ? c1 : c2;
        const other = round % 2 ? c2 : c1;
        const started = await g.request('POST', `/v1/clusters/${cluster}/backups`, { token: t.adminToken });
        expect(started.status, started.text).toBe(202);
        await deleteBackup(g, t.adminToken, other, previous.id);
        const done = await waitForBackup(g, t.adminToken, cluster, started.body.id);
        expect(done.status, JSON.stringify(done.error)).toBe('completed');
        previous = done;
        kept.push({ id: done.id, cluster });
      }
    } finally {
      stop = true;
    }
    expect(await gcRuns).toBeGreaterThan(0);
    // GC had work meanwhile: what only the deleted backups held (their manifests) was doomed.
    expect((await q(g, `SELECT count(*)::int AS n FROM packs WHERE tenant_id = $1 AND status = 'doomed'`, [t.tenantId]))[0].n).toBeGreaterThan(0);
    // Every reference of a completed backup is to a chunk located in a live pack.
    const broken = await q(
      g,
      `SELECT r.backup_id, r.chunk_id, p.status FROM backup_chunks r JOIN backups b ON b.id = r.backup_id
       LEFT JOIN chunks c ON c.tenant_id = r.tenant_id AND c.id = r.chunk_id LEFT JOIN packs p ON p.id = c.pack_id
       WHERE b.tenant_id = $1 AND b.status = 'completed' AND (p.id IS NULL OR p.status <> 'live')`,
      [t.tenantId],
    );
    expect(broken).toEqual([]);
    const last = kept[kept.length - 1]!;
    const v = await verifyAndWait(g, t.adminToken, last.cluster, last.id);
    expect(v.status, v.message ?? '').toBe('passed');
    await mkdir(path.join(t.dir, 'out'));
    const out = await createCluster(g, t.adminToken, 'out', files('out'));
    const r = await restoreAndWait(g, t.adminToken, last.cluster, last.id, { target_cluster_id: out });
    expect(r.status, JSON.stringify(r.error)).toBe('completed');
    expect(await describeTree(path.join(t.dir, 'out'))).toEqual(await describeTree(path.join(t.dir, last.cluster === c1 ? 'one' : 'two')));
  });
});
