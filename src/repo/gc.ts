import type pg from 'pg';
import type { Logger } from 'pino';
import type { ArtifactStore } from '../storage/types.js';
import { packIdOf, packKey, packsPrefix, repoPrefix, snapshotsPrefix } from './layout.js';
import { PackBuilder } from './pack.js';
import type { SealPool } from './seal-pool.js';
import type { TenantKeys } from './types.js';
import { inTransaction } from '../db/transaction.js';

export interface GcOptions {
  pool: pg.Pool;
  primary: ArtifactStore;
  secondary: ArtifactStore | null;
  seal: SealPool;
  keys: TenantKeys;
  tenantId: string;
  /** Unreferenced packs and orphan uploads older than this are deleted. */
  graceMs: number;
  /** A live pack is repacked when more than this share of its bytes is unreferenced (0..1). */
  repackThreshold: number;
  packTargetBytes: number;
  now: () => Date;
  log?: Pick<Logger, 'info' | 'warn'>;
  signal?: AbortSignal;
}

export interface GcReport {
  droppedRefs: number;
  doomed: number;
  repacked: number;
  deleted: number;
  orphans: number;
  staleSnapshots: number;
}

/** Chunks of `packId` some backup references. */
const REFERENCED_OF_PACK = `
SELECT c.id, c.pack_offset, c.length, c.raw_length FROM chunks c
WHERE c.pack_id = $1 AND EXISTS (SELECT 1 FROM chunk_refs r WHERE r.tenant_id = c.tenant_id AND r.chunk_id = c.id)`;

/**
 * Garbage collection of one tenant's repository, without a repository lock (docs/repository.md):
 * backups of the tenant keep running. Every step is idempotent, so a crash anywhere is resumed by
 * running it again.
 *
 *  1. drop the references of failed backups;
 *  2. doom each live pack none of whose chunks is referenced: under the pack row's FOR UPDATE,
 *     re-checked in a statement begun after the lock (refs.ts explains why a backup about to
 *     reuse a chunk of it either is seen or sees the pack doomed);
 *  3. repack live packs that are mostly garbage: copy their referenced sealed chunks into new
 *     packs, then, under FOR UPDATE of the old packs, re-point the chunks and doom the old ones;
 *  4. delete doomed packs older than the grace period from every store, then their rows;
 *  5. delete orphan uploads (pack objects no row names, e.g. of a worker killed mid-backup; the
 *     stores' temp files and incomplete multipart uploads of writes killed mid-way) and snapshot
 *     records of backups that never completed, once older than the grace period.
 */
export async function collectGarbage(o: GcOptions): Promise<GcReport> {
  const { pool, tenantId } = o;
  const report: GcReport = { droppedRefs: 0, doomed: 0, repacked: 0, deleted: 0, orphans: 0, staleSnapshots: 0 };
  const cutoff = new Date(o.now().getTime() - o.graceMs);

  // 1. references of failed backups protect nothing anyone can restore
  const dropped = await pool.query(
    `DELETE FROM backup_chunks r USING backups b WHERE r.backup_id = b.id AND b.tenant_id = $1 AND b.status = 'failed'`,
    [tenantId],
  );
  report.droppedRefs = dropped.rowCount ?? 0;

  // 2. doom unreferenced packs
  const candidates = await pool.query<{ id: string }>(
    `SELECT p.id FROM packs p WHERE p.tenant_id = $1 AND p.status = 'live' AND NOT EXISTS (
       SELECT 1 FROM chunks c JOIN chunk_refs r ON r.tenant_id = c.tenant_id AND r.chunk_id = c.id WHERE c.pack_id = p.id)`,
    [tenantId],
  );
  for (const { id } of candidates.rows) {
    o.signal?.throwIfAborted();
    const doomed = await inTransaction(pool, async (c) => {
      const locked = await c.query(`SELECT 1 FROM packs WHERE id = $1 AND status = 'live' FOR UPDATE`, [id]);
      if (locked.rowCount === 0) return false;
      // A new statement, so a new snapshot: it sees every reference committed by whoever held the pack FOR SHARE.
      const used = await c.query(`SELECT 1 FROM chunks c JOIN chunk_refs r ON r.tenant_id = c.tenant_id AND r.chunk_id = c.id WHERE c.pack_id = $1 LIMIT 1`, [id]);
      if ((used.rowCount ?? 0) > 0) return false;
      await c.query('DELETE FROM chunks WHERE pack_id = $1', [id]);
      await c.query(`UPDATE packs SET status = 'doomed', doomed_at = now() WHERE id = $1`, [id]);
      return true;
    });
    if (doomed) report.doomed++;
  }

  // 3. repack packs that are mostly garbage
  if (o.repackThreshold < 1) report.repacked = await repack(o);

  // 4. delete doomed packs past the grace period
  const expired = await pool.query<{ id: string }>(`SELECT id FROM packs WHERE tenant_id = $1 AND status = 'doomed' AND doomed_at < $2`, [tenantId, cutoff]);
  for (const { id } of expired.rows) {
    o.signal?.throwIfAborted();
    for (const s of [o.secondary, o.primary]) if (s) await s.delete(packKey(tenantId, id));
    await pool.query(`DELETE FROM packs WHERE id = $1 AND status = 'doomed'`, [id]);
    report.deleted++;
  }

  // 5. orphans in the stores
  for (const store of [o.primary, o.secondary]) {
    if (!store) continue;
    // temp files / incomplete multipart uploads of writes killed mid-way
    report.orphans += await store.sweepTemps(repoPrefix(tenantId), cutoff);
    const batch: { key: string; id: string }[] = [];
    const sweep = async () => {
      const known = await pool.query<{ id: string }>('SELECT id FROM packs WHERE id = ANY($1::text[])', [batch.map((b) => b.id)]);
      const has = new Set(known.rows.map((r) => r.id));
      for (const b of batch) {
        if (has.has(b.id)) continue;
        await store.delete(b.key);
        report.orphans++;
      }
      batch.length = 0;
    };
    for await (const obj of store.list(packsPrefix(tenantId))) {
      const id = packIdOf(tenantId, obj.key);
      if (!id || obj.modifiedAt >= cutoff) continue;
      batch.push({ key: obj.key, id });
      if (batch.length >= 500) await sweep();
    }
    if (batch.length) await sweep();
    const snaps: { key: string; id: string }[] = [];
    for await (const obj of store.list(snapshotsPrefix(tenantId))) {
      const id = obj.key.slice(snapshotsPrefix(tenantId).length);
      if (/^[0-9a-f-]{36}$/.test(id) && obj.modifiedAt < cutoff) snaps.push({ key: obj.key, id });
    }
    for (let i = 0; i < snaps.length; i += 500) {
      const part = snaps.slice(i, i + 500);
      const alive = await pool.query<{ id: string }>(`SELECT id::text FROM backups WHERE id = ANY($1::uuid[]) AND status IN ('completed', 'deleting')`, [part.map((s) => s.id)]);
      const keep = new Set(alive.rows.map((r) => r.id));
      for (const s of part) {
        if (keep.has(s.id)) continue;
        await store.delete(s.key);
        report.staleSnapshots++;
      }
    }
  }
  if (report.doomed || report.repacked || report.deleted || report.orphans) o.log?.info({ tenant_id: tenantId, ...report }, 'repository garbage collected');
  return report;
}

/**
 * Step 3: survivors of mostly-garbage packs are copied (sealed, as they are) into full new packs.
 * A pack qualifies only if some of its chunks really are garbage (fewer referenced chunks than it
 * holds): its trailer and footer count in its bytes, so a small pack whose chunks are all
 * referenced can look "mostly garbage" by bytes alone, and would be rewritten, identical, by
 * every run.
 */
async function repack(o: GcOptions): Promise<number> {
  const { pool, tenantId } = o;
  const sparse = await pool.query<{ id: string; bytes: string; live: string; live_chunks: number; chunk_count: number }>(
    `SELECT p.id, p.bytes::text, p.chunk_count,
       COALESCE(sum(c.length) FILTER (WHERE EXISTS (SELECT 1 FROM chunk_refs r WHERE r.tenant_id = c.tenant_id AND r.chunk_id = c.id)), 0)::text AS live,
       (count(c.id) FILTER (WHERE EXISTS (SELECT 1 FROM chunk_refs r WHERE r.tenant_id = c.tenant_id AND r.chunk_id = c.id)))::int AS live_chunks
     FROM packs p LEFT JOIN chunks c ON c.pack_id = p.id
     WHERE p.tenant_id = $1 AND p.status = 'live' GROUP BY p.id, p.bytes, p.chunk_count`,
    [tenantId],
  );
  const todo = sparse.rows.filter(
    (r) => Number(r.live) > 0 && r.live_chunks < r.chunk_count && Number(r.live) < (1 - o.repackThreshold) * Number(r.bytes),
  );
  let repacked = 0;
  let group: typeof todo = [];
  let groupBytes = 0;
  const runGroup = async () => {
    if (group.length === 0) return;
    repacked += await repackGroup(o, group.map((g) => g.id));
    group = [];
    groupBytes = 0;
  };
  for (const p of todo) {
    o.signal?.throwIfAborted();
    group.push(p);
    groupBytes += Number(p.live);
    if (groupBytes >= o.packTargetBytes) await runGroup();
  }
  await runGroup();
  return repacked;
}

async function repackGroup(o: GcOptions, oldPacks: string[]): Promise<number> {
  const { pool, tenantId } = o;
  const builder = new PackBuilder();
  const copied = new Map<string, Set<string>>(); // old pack -> chunk ids copied
  for (const old of oldPacks) {
    const rows = await pool.query<{ id: string; pack_offset: number; length: number; raw_length: number }>(REFERENCED_OF_PACK, [old]);
    const ids = new Set<string>();
    for (const r of rows.rows) {
      const blob = await o.primary.getRange(packKey(tenantId, old), r.pack_offset, r.pack_offset + r.length);
      await o.seal.open(o.keys, [{ id: r.id, blob }]); // never copy a damaged chunk as if it were good
      builder.add(r.id, blob, r.raw_length);
      ids.add(r.id);
    }
    copied.set(old, ids);
  }
  if (builder.count === 0) return 0;
  const packed = builder.finish(o.keys.dataKey);
  await o.primary.putBuffer(packKey(tenantId, packed.packId), packed.body, { sha256: packed.packId });
  // Survivors that had a copy in the secondary keep one.
  const onSecondary = await pool.query(`SELECT 1 FROM packs WHERE id = ANY($1::text[]) AND secondary_status = 'present' LIMIT 1`, [oldPacks]);
  let secondaryStatus: string | null = null;
  if (o.secondary && (onSecondary.rowCount ?? 0) > 0) {
    await o.secondary.putBuffer(packKey(tenantId, packed.packId), packed.body, { sha256: packed.packId });
    secondaryStatus = 'present';
  }
  return inTransaction(pool, async (c) => {
    await c.query(`INSERT INTO packs (id, tenant_id, bytes, chunk_count, status, secondary_status) VALUES ($1, $2, $3, $4, 'live', $5) ON CONFLICT (id) DO NOTHING`, [
      packed.packId,
      tenantId,
      packed.body.length,
      packed.entries.length,
      secondaryStatus,
    ]);
    const entries = new Map(packed.entries.map((e) => [e.id, e]));
    let done = 0;
    for (const old of [...oldPacks].sort()) {
      const locked = await c.query(`SELECT 1 FROM packs WHERE id = $1 AND status = 'live' FOR UPDATE`, [old]);
      if (locked.rowCount === 0) continue;
      const now = await c.query<{ id: string }>(REFERENCED_OF_PACK, [old]);
      const ids = copied.get(old)!;
      if (now.rows.some((r) => !ids.has(r.id))) continue; // referenced since: leave this one for a later run
      for (const id of ids) {
        const e = entries.get(id)!;
        await c.query('UPDATE chunks SET pack_id = $1, pack_offset = $2, length = $3 WHERE tenant_id = $4 AND id = $5 AND pack_id = $6', [packed.packId, e.offset, e.length, tenantId, id, old]);
      }
      await c.query('DELETE FROM chunks WHERE pack_id = $1', [old]);
      await c.query(`UPDATE packs SET status = 'doomed', doomed_at = now() WHERE id = $1`, [old]);
      done++;
    }
    if (done === 0) await c.query(`UPDATE packs SET status = 'doomed', doomed_at = now() WHERE id = $1`, [packed.packId]);
    return done;
  });
}
