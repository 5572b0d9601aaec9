import type pg from 'pg';
import type { ChunkId } from './types.js';
import { inTransaction } from '../db/transaction.js';

/*
 * The reference protocol (docs/repository.md, "Why GC never takes a chunk a backup relies on"):
 *
 *   - A backup records a reference (backup_chunks; a stored WAL file: wal_chunks) to every chunk it relies on, in the same
 *     statement that finds the chunk in a LIVE pack and holds that pack's row FOR SHARE.
 *   - GC dooms a pack only while holding its row FOR UPDATE, and decides "unreferenced" in a
 *     statement that starts after it holds that lock.
 *
 * So either the backup's statement commits first (GC's later statement sees its references and
 * keeps the pack), or GC commits first (the backup's lock wait ends on a doomed pack, whose row no
 * longer matches `status = 'live'`: the chunk reads as absent and the backup stores it again).
 */

/**
 * Locks the live packs of `ids` FOR SHARE and records this backup's references to the chunks in
 * them, in one statement. Answers the ids found. Driven from the id list (an index probe per id,
 * then one per pack, in pack order so that lock order is the same as GC's), so the plan does not
 * depend on table statistics: a plain join of the list with `chunks` and `packs` got, in a young
 * repository never analyzed, a scan of every chunk of the tenant and every pack (180 ms per 90
 * ids with 28,000 chunks, against 1 ms: most of a first backup's SQL time). The `LIMIT 1` keeps
 * the planner from flattening the per-id probe back into such a join.
 */
/** The ids of $<idsParam> in live packs of tenant $1 (`live`), those packs' rows held FOR SHARE. */
const liveCte = (idsParam: number) => `found AS MATERIALIZED (
  SELECT c.id, c.pack_id FROM unnest($${idsParam}::text[]) AS u(id)
  CROSS JOIN LATERAL (SELECT c.id, c.pack_id FROM chunks c WHERE c.tenant_id = $1 AND c.id = u.id LIMIT 1) c
),
locked AS MATERIALIZED (
  SELECT p.id FROM (SELECT DISTINCT pack_id FROM found ORDER BY pack_id) f
  CROSS JOIN LATERAL (SELECT p.id FROM packs p WHERE p.id = f.pack_id AND p.status = 'live' FOR SHARE) p
),
live AS (SELECT found.id FROM found JOIN locked ON locked.id = found.pack_id)`;
const LIVE_CTE = liveCte(3);

/**
 * Who a reference belongs to: a backup (backup_chunks) or a stored WAL file (wal_chunks, SPEC
 * section 13); GC reads both through the chunk_refs view. Null: no references (a repack).
 */
export type RefHolder = { backupId: string } | { walSegmentId: string } | null;

/** The table and column of a holder's references (fixed literals: never data). */
function refTarget(holder: NonNullable<RefHolder>): { insert: string; id: string } {
  return 'backupId' in holder ? { insert: 'INSERT INTO backup_chunks (backup_id, tenant_id, chunk_id)', id: holder.backupId } : { insert: 'INSERT INTO wal_chunks (segment_id, tenant_id, chunk_id)', id: holder.walSegmentId };
}

const reuseSql = (insert: string) => `
WITH ${LIVE_CTE}, ins AS (
  ${insert}
  SELECT $2, $1, id FROM live
  ON CONFLICT DO NOTHING
)
SELECT id FROM live`;

/** Like REUSE_SQL without recording references: for repacking, which is not a backup. */
const LOCATE_LIVE_SQL = `WITH ${liveCte(2)} SELECT id FROM live`;

type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

/** Records `holder`'s references to those of `ids` that are in live packs; answers that set. Without a holder (repack), only locks and finds them. */
export async function reuseChunks(db: Queryable, tenantId: string, holder: RefHolder, ids: readonly ChunkId[]): Promise<Set<ChunkId>> {
  if (ids.length === 0) return new Set();
  const unique = [...new Set(ids)];
  if (holder === null) return new Set((await db.query<{ id: string }>(LOCATE_LIVE_SQL, [tenantId, unique])).rows.map((r) => r.id));
  const t = refTarget(holder);
  const res = await db.query<{ id: string }>(reuseSql(t.insert), [tenantId, t.id, unique]);
  return new Set(res.rows.map((r) => r.id));
}

/*
 * Commits of the writer's statements (references, pack registrations) are asynchronous
 * (synchronous_commit off for their transaction only): they are visible at once, which is all the
 * protocol above needs, and a crash can lose only a tail of them. WAL is one sequence: the
 * backup's completion, a synchronous commit, flushes every one before it, and a GC decision
 * committed after them flushes them too. So what a crash can lose belongs to a backup that did
 * not complete (its packs become orphans that GC sweeps past the grace period). Measured: a WAL
 * flush per statement was most of the time of an unchanged tree's backup. The lookup sets it
 * inside its one statement (set_config(..., true) lasts until that statement's commit, which
 * reads it), so it stays one round trip.
 */
const ASYNC_COMMIT = 'SET LOCAL synchronous_commit TO OFF';

/** The writer's lookup statement for `holder` ($1 tenant, $2 holder id, $3 ids); exported for the plan test. */
export const lookupSql = (holder: NonNullable<RefHolder>) => `
WITH async_commit AS (SELECT set_config('synchronous_commit', 'off', true) AS v),
${LIVE_CTE}, ins AS (
  ${refTarget(holder).insert}
  SELECT $2, $1, live.id FROM live, async_commit
  ON CONFLICT DO NOTHING
)
SELECT id FROM live`;

/** reuseChunks for the writer, outside any transaction: its commit is asynchronous (see above). */
export async function lookupChunks(pool: pg.Pool, tenantId: string, holder: RefHolder, ids: readonly ChunkId[]): Promise<Set<ChunkId>> {
  if (ids.length === 0) return new Set();
  if (holder === null) return reuseChunks(pool, tenantId, null, ids); // a read and row locks: nothing to commit
  const res = await pool.query<{ id: string }>(lookupSql(holder), [tenantId, refTarget(holder).id, [...new Set(ids)]]);
  return new Set(res.rows.map((r) => r.id));
}

export interface PackRecord {
  id: string;
  tenantId: string;
  bytes: number;
  entries: { id: ChunkId; offset: number; length: number; rawLength: number }[];
  /** The cluster whose backup stored it (usage attribution); null for repacks. */
  clusterId: string | null;
  /** 'pending' when a dual-region backup needs it copied. */
  secondaryStatus: 'pending' | null;
}

/**
 * Registers an uploaded pack, its chunks and this backup's references to them, in one
 * transaction. A chunk another pack already holds keeps that location (this pack's copy is
 * garbage to GC); should that other pack be doomed meanwhile, the row is taken over here.
 */
export async function registerPack(pool: pg.Pool, pack: PackRecord, holder: RefHolder): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await registerOnce(pool, pack, holder);
    } catch (err) {
      // A deadlock or serialization failure with a concurrent GC is retried: the transaction left nothing.
      const code = (err as { code?: string }).code;
      if (attempt >= 4 || (code !== '40P01' && code !== '40001')) throw err;
    }
  }
}

function registerOnce(pool: pg.Pool, pack: PackRecord, holder: RefHolder): Promise<void> {
  return inTransaction(pool, async (client) => {
    await client.query(ASYNC_COMMIT);
    await client.query(
      `INSERT INTO packs (id, tenant_id, bytes, chunk_count, status, secondary_status) VALUES ($1, $2, $3, $4, 'live', $5) ON CONFLICT (id) DO NOTHING`,
      [pack.id, pack.tenantId, pack.bytes, pack.entries.length, pack.secondaryStatus],
    );
    let todo = pack.entries;
    for (let attempt = 0; todo.length > 0; attempt++) {
      if (attempt >= 5) throw new Error('could not register the chunks of a pack: their locations kept being collected');
      await client.query(
        `INSERT INTO chunks (tenant_id, id, pack_id, pack_offset, length, raw_length, cluster_id)
         SELECT $1, u.id, $2, u.off, u.len, u.raw, $3 FROM unnest($4::text[], $5::int[], $6::int[], $7::int[]) AS u(id, off, len, raw)
         ON CONFLICT (tenant_id, id) DO NOTHING`,
        [pack.tenantId, pack.id, pack.clusterId, todo.map((e) => e.id), todo.map((e) => e.offset), todo.map((e) => e.length), todo.map((e) => e.rawLength)],
      );
      const found = await reuseChunks(client, pack.tenantId, holder, todo.map((e) => e.id));
      todo = todo.filter((e) => !found.has(e.id));
    }
  });
}
