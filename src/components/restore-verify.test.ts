import { createHash, randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, readlink, realpath, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeStreamManifest, encodeStreamManifest } from '../repo/manifest.js';
import { MemoryRepo, fromArray } from '../repo/memory-repo.test-helper.js';
import { checkedBytes, ManifestProblem } from '../repo/service.js';
import type { ChunkSource } from '../repo/types.js';
import { directoryDriver } from './directory.js';
import { postgresDriver } from './postgres.js';
import { ArtifactChangedError } from './verify.js';

// "Verify exactly what you apply": a restore reads the manifest through a check of its recorded
// sha256 and size (as the service hands it over: repo/service.ts `manifestBytes`), every chunk
// through its own check, and a mismatch is found before the swap / COMMIT, so the target stays
// as it was.

async function collect(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

const digestOf = (buf: Buffer) => ({ sha256: createHash('sha256').update(buf).digest('hex'), bytes: buf.length });
const repo = new MemoryRepo({ chunkSize: 2048 });

/** Every entry under `dir` with its type, mode, mtime, inode and content hash. */
async function snapshot(dir: string): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  const visit = async (rel: string) => {
    const abs = path.join(dir, rel);
    const st = await lstat(abs);
    const entry: Record<string, unknown> = { mode: st.mode, mtimeMs: st.mtimeMs, ino: st.ino, size: st.size };
    if (st.isFile()) entry.sha256 = createHash('sha256').update(await readFile(abs)).digest('hex');
    if (st.isSymbolicLink()) entry.target = await readlink(abs);
    out[rel] = entry;
    if (st.isDirectory()) for (const name of (await readdir(abs)).sort()) await visit(rel ? `${rel}/${name}` : name);
  };
  await visit('');
  return out;
}

describe('directory restore verifies the bytes it extracts before the swap', () => {
  let base: string;
  let dataRoot: string;
  let original: Buffer; // manifest of the tree as backed up
  let other: Buffer; // manifest of another tree: what the store now serves instead

  beforeAll(async () => {
    base = await realpath(await mkdtemp(path.join(tmpdir(), 'restore-verify-')));
    dataRoot = path.join(base, 'data');
    const tree = path.join(dataRoot, 'apps/site');
    await mkdir(path.join(tree, 'sub'), { recursive: true });
    await writeFile(path.join(tree, 'index.html'), 'live\n');
    await writeFile(path.join(tree, 'sub/data.bin'), randomBytes(200_000));
    await symlink('index.html', path.join(tree, 'home'));
    await chmod(path.join(tree, 'sub'), 0o750);
    await utimes(path.join(tree, 'index.html'), new Date(1_700_000_000_000), new Date(1_700_000_000_000));
    original = await collect(directoryDriver.backup({ path: 'apps/site' }, { dataRoot, sink: repo, previous: null }).manifest);
    const donor = path.join(dataRoot, 'apps/donor');
    await mkdir(donor, { recursive: true });
    await writeFile(path.join(donor, 'index.html'), 'swapped by someone\n');
    other = await collect(directoryDriver.backup({ path: 'apps/donor' }, { dataRoot, sink: repo, previous: null }).manifest);
  });

  afterAll(() => rm(base, { recursive: true, force: true }));

  const restore = (manifest: Buffer[], recorded: { sha256: string; bytes: number }) =>
    directoryDriver.restore({ path: 'apps/site' }, { dataRoot, source: repo, manifest: checkedBytes(fromArray(manifest), recorded, 'component "files"') });

  it('refuses a manifest that no longer hashes to the recorded sha256: target untouched, no leftovers', async () => {
    const tree = path.join(dataRoot, 'apps/site');
    const before = await snapshot(tree);
    const siblings = (await readdir(path.join(dataRoot, 'apps'))).sort();
    // A well-formed manifest of another tree, whose chunks are all in the repository.
    const err = await restore([other], digestOf(original)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ManifestProblem);
    expect((err as Error).message).toBe('component "files": the manifest does not match its recorded sha256');
    expect(await snapshot(tree)).toEqual(before);
    expect((await readdir(path.join(dataRoot, 'apps'))).sort()).toEqual(siblings);
  });

  it('refuses a copy that has the right bytes plus more (size differs)', async () => {
    const tree = path.join(dataRoot, 'apps/site');
    const before = await snapshot(tree);
    const longer = Buffer.concat([original, Buffer.from(original.subarray(original.indexOf(10) + 1))]); // its entries twice
    const expected = { sha256: digestOf(longer).sha256, bytes: original.length }; // hash right, size wrong
    const err = await restore([longer], expected).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ManifestProblem);
    expect(await snapshot(tree)).toEqual(before);
  });

  it('checks every byte of the manifest it consumed, and applies when they match', async () => {
    await writeFile(path.join(dataRoot, 'apps/site/index.html'), 'changed since the backup\n');
    const halves = [original.subarray(0, 100), original.subarray(100)];
    await restore(halves, digestOf(original));
    expect(await readFile(path.join(dataRoot, 'apps/site/index.html'), 'utf8')).toBe('live\n');
    expect((await readdir(path.join(dataRoot, 'apps'))).filter((n) => n.startsWith('.'))).toEqual([]);
  });
});

describe('postgres restore commits only once the whole artifact matched', () => {
  // A throwaway pair of databases on the main server, as postgres.test.ts does.
  const SERVER = 'postgresql://postgres@127.0.0.1:5432';
  const suffix = randomBytes(4).toString('hex');
  const SRC = `bk_verify_src_${suffix}`;
  const DST = `bk_verify_dst_${suffix}`;
  const ctx = { dataRoot: tmpdir() };
  let admin: pg.Client;
  let manifest: Buffer; // stream manifest of the dump in `repo`
  let chunks: string[];

  const query = async (db: string, sql: string) => {
    const c = new pg.Client({ connectionString: `${SERVER}/${db}` });
    await c.connect();
    try {
      return (await c.query(sql)).rows;
    } finally {
      await c.end();
    }
  };
  const contents = async (db: string) => ({
    tables: await query(db, `SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' ORDER BY 1`),
    rows: await query(db, 'SELECT to_jsonb(t) AS row FROM items t ORDER BY id'),
  });

  beforeAll(async () => {
    admin = new pg.Client({ connectionString: `${SERVER}/postgres` });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${SRC}`);
    await admin.query(`CREATE DATABASE ${DST}`);
    await query(SRC, `CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items SELECT g, 'backed up ' || g FROM generate_series(1, 300) g;
                      CREATE TABLE extra (id int)`);
    await query(DST, `CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items VALUES (1, 'live data')`);
    manifest = await collect(postgresDriver.backup({ url: `${SERVER}/${SRC}` }, { ...ctx, sink: repo, previous: null }).manifest);
    chunks = (await decodeStreamManifest(fromArray([manifest]))).chunks;
    expect(chunks.length).toBeGreaterThan(2);
  });

  afterAll(async () => {
    for (const db of [SRC, DST]) await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    await admin.end();
  });

  it('rolls back a valid dump whose bytes are not the recorded ones: the database is unchanged', async () => {
    const before = await contents(DST);
    const ref = await decodeStreamManifest(fromArray([manifest]));
    // The chunks are all there and verify; the manifest recorded one byte more.
    const recorded = await collect(encodeStreamManifest({ chunks: ref.chunks, bytes: ref.bytes + 1 }));
    const err = await postgresDriver.restore({ url: `${SERVER}/${DST}` }, { ...ctx, source: repo, manifest: fromArray([recorded]) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ArtifactChangedError);
    expect((err as Error).message).toContain('nothing was restored');
    // It rejected only once psql was gone: the transaction is not left running (a retry from the
    // other copy could otherwise deadlock with it).
    expect(await query(DST, `SET lock_timeout = '2s'; SELECT count(*) FROM items`).then(() => 'read', (e: Error) => e.message)).toBe('read');
    expect(await contents(DST)).toEqual(before);
    expect(before.rows).toEqual([{ row: { id: 1, v: 'live data' } }]);
  });

  it('waits for the last chunk to verify before the COMMIT, and commits once it did', async () => {
    // A source that holds the dump's last chunk back until the database has been probed.
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const source: ChunkSource = {
      read(ids) {
        async function* gen(): AsyncGenerator<Buffer> {
          for (const [i, id] of ids.entries()) {
            if (i === ids.length - 1) await held;
            yield* repo.read([id]) as AsyncIterable<Buffer>;
          }
        }
        return Readable.from(gen(), { objectMode: false });
      },
    };
    let probedAt = 0;
    const probe = (async () => {
      // Most of the dump has been run: psql sits idle inside the transaction, waiting for the
      // rest. It holds the lock of the table it dropped, so nothing is committed yet.
      const idle = `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = '${DST}' AND state = 'idle in transaction'`;
      for (let i = 0; i < 200 && (await query('postgres', idle))[0].n !== 1; i++) await new Promise((r) => setTimeout(r, 50));
      const got = await query(DST, `SET lock_timeout = '200ms'; SELECT count(*)::int AS n FROM items`).then(() => 'read', (e: Error) => e.message);
      expect(got).toMatch(/lock timeout/);
      probedAt = Date.now();
      release();
    })();
    await postgresDriver.restore({ url: `${SERVER}/${DST}` }, { ...ctx, source, manifest: fromArray([manifest]) });
    await probe;
    expect(probedAt).toBeGreaterThan(0);
    expect(await contents(DST)).toEqual(await contents(SRC));
  });
});
