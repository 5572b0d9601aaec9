import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lookupChunks, lookupSql, reuseChunks } from '../src/repo/refs.js';
import { createTestDatabase } from './helpers/db.js';

/*
 * The reference protocol of refs.ts against a real PostgreSQL (docs/repository.md, "Why GC never
 * takes a chunk a backup relies on"): a backup's lookup finds a chunk only in a LIVE pack, holds
 * that pack's row FOR SHARE while it records its reference, and a GC that dooms the pack first
 * makes the chunk read as absent. Run in a never-analyzed database, as a new deployment's first
 * backup is, where the lookup must still probe by index.
 */

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: pg.Pool;
let tenantId: string;
let backupId: string;

beforeAll(async () => {
  db = await createTestDatabase();
  pool = new pg.Pool({ connectionString: db.url, max: 4 });
  tenantId = randomUUID();
  const clusterId = randomUUID();
  backupId = randomUUID();
  await pool.query('INSERT INTO tenants (id, name, data_dir) VALUES ($1, $2, $3)', [tenantId, 'refs', `refs-${tenantId.slice(0, 8)}`]);
  await pool.query(`INSERT INTO clusters (id, tenant_id, name, environment, region, backup_location, components) VALUES ($1, $2, 'c', 'development', 'r', 'same-region', '[]')`, [clusterId, tenantId]);
  await pool.query(`UPDATE clusters SET active_job_id = $1, active_job_kind = 'backup' WHERE id = $2`, [backupId, clusterId]);
  await pool.query(`INSERT INTO backups (id, tenant_id, cluster_id, trigger, status, started_at, components) VALUES ($1, $2, $3, 'manual', 'running', now(), '[]')`, [backupId, tenantId, clusterId]);
});
afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

const hex = () => randomBytes(32).toString('hex');

/** A live pack holding `n` new chunks; answers their ids. */
async function pack(n: number): Promise<{ packId: string; chunks: string[] }> {
  const packId = hex();
  const chunks = Array.from({ length: n }, hex);
  await pool.query(`INSERT INTO packs (id, tenant_id, bytes, chunk_count, status) VALUES ($1, $2, 1, $3, 'live')`, [packId, tenantId, n]);
  await pool.query(`INSERT INTO chunks (tenant_id, id, pack_id, pack_offset, length, raw_length) SELECT $1, u, $2, 0, 1, 1 FROM unnest($3::text[]) u`, [tenantId, packId, chunks]);
  return { packId, chunks };
}

const refsOf = async (ids: string[]) =>
  (await pool.query<{ chunk_id: string }>('SELECT chunk_id FROM backup_chunks WHERE backup_id = $1 AND chunk_id = ANY($2::text[])', [backupId, ids])).rows.map((r) => r.chunk_id).sort();

describe('chunk lookups (refs.ts)', () => {
  it('finds chunks in live packs and records references to exactly those; unknown ids and doomed packs read as absent', async () => {
    const a = await pack(3);
    const b = await pack(2);
    await pool.query(`UPDATE packs SET status = 'doomed' WHERE id = $1`, [b.packId]);
    const unknown = [hex(), hex()];
    const ids = [...a.chunks, ...b.chunks, ...unknown, a.chunks[0]!];
    const found = await lookupChunks(pool, tenantId, { backupId }, ids);
    expect([...found].sort()).toEqual([...a.chunks].sort());
    expect(await refsOf(ids)).toEqual([...a.chunks].sort());
    // without a holder (a repack) the same set, nothing recorded
    const c = await pack(2);
    expect([...(await reuseChunks(pool, tenantId, null, [...c.chunks, ...b.chunks]))].sort()).toEqual([...c.chunks].sort());
    expect(await refsOf(c.chunks)).toEqual([]);
  });

  it('waits for a GC that holds the pack FOR UPDATE: the chunk it dooms reads as absent, one it keeps is found', async () => {
    for (const gcDooms of [true, false]) {
      const p = await pack(2);
      const gc = await pool.connect();
      try {
        await gc.query('BEGIN');
        await gc.query('SELECT id FROM packs WHERE id = $1 FOR UPDATE', [p.packId]);
        if (gcDooms) await gc.query(`UPDATE packs SET status = 'doomed' WHERE id = $1`, [p.packId]);
        let settled = false;
        const lookup = lookupChunks(pool, tenantId, { backupId }, p.chunks).finally(() => (settled = true));
        await new Promise((r) => setTimeout(r, 300));
        expect(settled, 'the lookup waits on the pack row GC holds').toBe(false);
        await gc.query('COMMIT');
        const found = await lookup;
        expect([...found].sort()).toEqual(gcDooms ? [] : [...p.chunks].sort());
        expect(await refsOf(p.chunks)).toEqual(gcDooms ? [] : [...p.chunks].sort());
      } finally {
        gc.release();
      }
    }
  });

  it('probes by index in a never-analyzed repository, not by scanning the tenant', async () => {
    for (let i = 0; i < 20; i++) await pack(200);
    const probe = [...(await pack(5)).chunks, hex()];
    // the statement lookupChunks sends, explained (EXPLAIN without ANALYZE runs nothing)
    const { rows } = await pool.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${lookupSql({ backupId })}`, [tenantId, backupId, probe]);
    const plan = rows.map((r) => r['QUERY PLAN']).join('\n');
    expect(plan).toMatch(/Index Scan using chunks_pkey/);
    expect(plan).toMatch(/Index Scan using packs_pkey/);
    expect(plan).not.toMatch(/Seq Scan on (chunks|packs)|Bitmap Heap Scan on chunks/);
  });
});
