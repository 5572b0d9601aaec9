import { createHash } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { getDriver } from '../../src/components/index.js';
import { createGcJob } from '../../src/modules/repository/repository.jobs.js';
import { packKey, packsPrefix, snapshotKey } from '../../src/repo/layout.js';
import { openSnapshot, type SnapshotRecord } from '../../src/repo/snapshot.js';
import type { Stack } from './stack.js';

/*
 * What tests look at in a tenant's repository (docs/repository.md): packs under
 * repos/<tenant>/packs/, snapshot records under repos/<tenant>/snapshots/<backup>, and the chunk
 * index in PostgreSQL. Both stores of a stack are file stores, so a test can read, damage or
 * remove their objects directly.
 */

export interface ArtifactRow {
  component: string;
  type: string;
  sha256: string;
  manifest: unknown;
  bytes: bigint;
  key: string;
}

async function collect(it: AsyncIterable<Buffer> | NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const b of it as AsyncIterable<Buffer>) parts.push(Buffer.isBuffer(b) ? b : Buffer.from(b));
  return Buffer.concat(parts);
}

export const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** The backup_artifacts row of one component. */
export async function artifactOf(s: Stack, backupId: string, component: string): Promise<ArtifactRow> {
  return s.rt.db.backupArtifact.findFirstOrThrow({ where: { backupId, component } }) as Promise<ArtifactRow>;
}

/** A component's manifest bytes, read back through the repository (every chunk verified, the whole checked against its sha256). */
export async function manifestOf(s: Stack, tenantId: string, a: ArtifactRow): Promise<Buffer> {
  return collect(s.rt.repo.manifestBytes(await s.rt.repo.source(tenantId), a));
}

/** The portable copy of a component (`exportArchive`): a tar of a directory, the pg_dump custom-format file of a database. */
export async function exportOf(s: Stack, tenantId: string, a: ArtifactRow): Promise<Buffer> {
  const src = await s.rt.repo.source(tenantId);
  return collect(await getDriver(a.type as 'directory' | 'postgres').exportArchive(s.rt.repo.manifestBytes(src, a), src));
}

/** The snapshot record of a backup in a store (by its root folder), or null when there is none. */
export async function snapshotRecordAt(s: Stack, root: string, tenantId: string, backupId: string): Promise<SnapshotRecord | null> {
  let blob: Buffer;
  try {
    blob = await readFile(path.join(root, snapshotKey(tenantId, backupId)));
  } catch {
    return null;
  }
  return openSnapshot(await s.rt.repo.repositories.keysOf(tenantId), backupId, blob);
}

/** Ids of the packs holding a chunk the backup references (the packs table). */
export async function packsOfBackup(s: Stack, backupId: string): Promise<string[]> {
  const r = await s.rt.db.$pool.query<{ id: string }>(
    'SELECT DISTINCT c.pack_id AS id FROM backup_chunks r JOIN chunks c ON c.tenant_id = r.tenant_id AND c.id = r.chunk_id WHERE r.backup_id = $1 ORDER BY 1',
    [backupId],
  );
  return r.rows.map((x) => x.id);
}

/** Ids of the packs that hold only chunks referenced by `backupIds` (none referenced by any other backup). */
export async function packsOnlyOf(s: Stack, backupIds: string[]): Promise<string[]> {
  const r = await s.rt.db.$pool.query<{ id: string }>(
    `SELECT p.id FROM packs p WHERE EXISTS (
        SELECT 1 FROM chunks c JOIN backup_chunks r ON r.tenant_id = c.tenant_id AND r.chunk_id = c.id WHERE c.pack_id = p.id AND r.backup_id = ANY($1::uuid[]))
      AND NOT EXISTS (
        SELECT 1 FROM chunks c JOIN backup_chunks r ON r.tenant_id = c.tenant_id AND r.chunk_id = c.id WHERE c.pack_id = p.id AND NOT (r.backup_id = ANY($1::uuid[])))
      ORDER BY 1`,
    [backupIds],
  );
  return r.rows.map((x) => x.id);
}

/** The chunks of one backup's packs, with where they sit. */
export async function chunksOfBackup(s: Stack, backupId: string): Promise<{ id: string; pack_id: string; pack_offset: number; length: number }[]> {
  const r = await s.rt.db.$pool.query<{ id: string; pack_id: string; pack_offset: number; length: number }>(
    'SELECT c.id, c.pack_id, c.pack_offset, c.length FROM backup_chunks r JOIN chunks c ON c.tenant_id = r.tenant_id AND c.id = r.chunk_id WHERE r.backup_id = $1 ORDER BY c.pack_id, c.pack_offset',
    [backupId],
  );
  return r.rows;
}

/** The file of a pack object in a store (by its root folder). */
export const packFile = (root: string, tenantId: string, packId: string) => path.join(root, packKey(tenantId, packId));

/**
 * Flips a byte in the middle of every chunk of `backupId` stored in the pack file (in the store at
 * `root`), so that each fails its authentication when read.
 */
export async function corruptChunksOf(s: Stack, root: string, tenantId: string, backupId: string): Promise<number> {
  const chunks = await chunksOfBackup(s, backupId);
  const byPack = new Map<string, typeof chunks>();
  for (const c of chunks) byPack.set(c.pack_id, [...(byPack.get(c.pack_id) ?? []), c]);
  for (const [pack, list] of byPack) {
    const file = packFile(root, tenantId, pack);
    const body = await readFile(file);
    for (const c of list) {
      const at = c.pack_offset + Math.floor(c.length / 2);
      body[at] = (body[at] as number) ^ 0xff;
    }
    await writeFile(file, body);
  }
  return chunks.length;
}

/** Pack ids whose objects exist in the store at `root`. */
export async function storedPacks(root: string, tenantId: string): Promise<string[]> {
  const dir = path.join(root, packsPrefix(tenantId));
  let names: string[];
  try {
    names = (await readdir(dir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name);
  } catch {
    return [];
  }
  return names.filter((n) => /^[0-9a-f]{64}$/.test(n)).sort();
}

/**
 * Runs the tenant's `gc` job with no grace period (as GC_GRACE_MS=0 would), twice, so that packs
 * it dooms are deleted by the second run. Only while nothing of the tenant is being backed up:
 * with no grace, a running backup's not yet registered upload is an orphan.
 */
export async function runGc(s: Stack, tenantId: string): Promise<void> {
  await runGcOnce(s, tenantId, 0);
  await new Promise((r) => setTimeout(r, 20));
  await runGcOnce(s, tenantId, 0);
}

/** One run of the tenant's `gc` job as the worker runs it, with `graceMs` (default: the stack's GC_GRACE_MS). */
export async function runGcOnce(s: Stack, tenantId: string, graceMs = s.rt.config.gcGraceMs): Promise<void> {
  const gc = createGcJob({
    db: s.rt.db,
    repo: s.rt.repo,
    settings: { gcGraceMs: graceMs, gcRepackThreshold: s.rt.config.gcRepackThreshold, verifySamplePercent: s.rt.config.verifySamplePercent },
    now: () => new Date(),
    log: s.rt.log,
  });
  await gc({ tenant_id: tenantId });
}

/** Packs in the store at `root` that no backup references any more (nothing there should be garbage after runGc). */
export async function unreferencedStoredPacks(s: Stack, root: string, tenantId: string): Promise<string[]> {
  const stored = await storedPacks(root, tenantId);
  const r = await s.rt.db.$pool.query<{ id: string }>(
    `SELECT DISTINCT c.pack_id AS id FROM chunks c JOIN backup_chunks r ON r.tenant_id = c.tenant_id AND r.chunk_id = c.id
     JOIN backups b ON b.id = r.backup_id WHERE c.tenant_id = $1 AND b.status <> 'failed'`,
    [tenantId],
  );
  const used = new Set(r.rows.map((x) => x.id));
  return stored.filter((p) => !used.has(p));
}

/** Reads (and so verifies) every chunk of a component's snapshot; answers how many bytes of data it holds. */
export async function readAllChunks(s: Stack, tenantId: string, a: ArtifactRow): Promise<number> {
  const src = await s.rt.repo.source(tenantId);
  let n = 0;
  if (a.type === 'directory') {
    for await (const e of s.rt.repo.entries(src, a)) if (e.chunks?.length) n += (await collect(src.read(e.chunks))).length;
  } else {
    n += (await collect(src.read((await s.rt.repo.streamOf(src, a)).chunks))).length;
  }
  return n;
}
