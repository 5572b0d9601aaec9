import { createHash, randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { lstat, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';

/** Writes `bytes` of random (incompressible) data to `file`, creating its folder. */
export async function writeRandom(file: string, bytes: number): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, randomBytes(bytes));
}

/** path -> sha256 of every regular file under `dir` (recursively); symlinks and folders by kind only. */
export async function digestTree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (abs: string, rel: string) => {
    for (const e of (await readdir(abs, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
      const a = path.join(abs, e.name);
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        out[`${r}/`] = 'dir';
        await walk(a, r);
      } else if (e.isFile()) {
        out[r] = createHash('sha256').update(await readFile(a)).digest('hex');
      } else {
        out[r] = `other:${(await lstat(a)).mode}`;
      }
    }
  };
  await walk(dir, '');
  return out;
}

/** Every file under the tenant's repository folder of a file store: pack objects by id, and temp files (dot-names) left beside them. */
export async function storeInventory(storageRoot: string, tenantId: string): Promise<{ packs: Map<string, Date>; snapshots: Set<string>; temps: string[] }> {
  const packs = new Map<string, Date>();
  const snapshots = new Set<string>();
  const temps: string[] = [];
  const repo = path.join(storageRoot, 'repos', tenantId);
  const walk = async (abs: string, rel: string) => {
    let entries;
    try {
      entries = await readdir(abs, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(path.join(abs, e.name), r);
      else if (e.name.startsWith('.')) temps.push(r);
      else if (r.startsWith('packs/')) packs.set(e.name, (await lstat(path.join(abs, e.name))).mtime);
      else if (r.startsWith('snapshots/')) snapshots.add(e.name);
    }
  };
  await walk(repo, '');
  return { packs, snapshots, temps };
}

export interface RepoCheck {
  /** pack objects in the store no packs row names */
  orphanObjects: string[];
  /** packs rows (any status) whose object is not in the store */
  missingObjects: string[];
  /** chunk rows pointing at a pack that is not live */
  chunksInDeadPacks: number;
  /** live packs none of whose chunks any backup references */
  unreferencedLive: string[];
  /** doomed packs doomed longer ago than the grace period */
  expiredDoomed: string[];
  /** references held by backups that are not completed (failed, running, queued) */
  refsOfUnfinished: number;
  /** references to chunk ids that have no chunk row (nowhere to read them from) */
  danglingRefs: number;
  /** snapshot records in the store of backups that are not completed */
  staleSnapshots: string[];
  /** completed backups without a snapshot record */
  missingSnapshots: string[];
  /** temp files (dot-names) under the tenant's folder of the store */
  temps: string[];
  counts: { live: number; doomed: number; objects: number; chunks: number; refs: number };
}

/**
 * The repository of one tenant against its store, after GC ran with nothing else writing:
 * what the GC protocol promises (docs/repository.md) in numbers, every list expected empty.
 */
export async function checkRepository(pool: pg.Pool, storageRoot: string, tenantId: string, graceMs: number): Promise<RepoCheck> {
  const inv = await storeInventory(storageRoot, tenantId);
  const rows = await pool.query<{ id: string; status: string; doomed_at: Date | null }>('SELECT id, status, doomed_at FROM packs WHERE tenant_id = $1', [tenantId]);
  const rowIds = new Set(rows.rows.map((r) => r.id));
  const q = async (sql: string) => (await pool.query(sql, [tenantId])).rows;
  const chunksInDead = await q(`SELECT count(*)::int AS n FROM chunks c JOIN packs p ON p.id = c.pack_id WHERE c.tenant_id = $1 AND p.status <> 'live'`);
  const unreferencedLive = await q(
    `SELECT p.id FROM packs p WHERE p.tenant_id = $1 AND p.status = 'live' AND NOT EXISTS (
       SELECT 1 FROM chunks c JOIN backup_chunks r ON r.tenant_id = c.tenant_id AND r.chunk_id = c.id WHERE c.pack_id = p.id)`,
  );
  const refsOfUnfinished = await q(`SELECT count(*)::int AS n FROM backup_chunks r JOIN backups b ON b.id = r.backup_id WHERE r.tenant_id = $1 AND b.status <> 'completed'`);
  const dangling = await q(`SELECT count(*)::int AS n FROM backup_chunks r WHERE r.tenant_id = $1 AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.tenant_id = r.tenant_id AND c.id = r.chunk_id)`);
  const completed = new Set((await q(`SELECT id::text FROM backups WHERE tenant_id = $1 AND status = 'completed'`)).map((r) => r.id as string));
  const chunkCount = await q('SELECT count(*)::int AS n FROM chunks WHERE tenant_id = $1');
  const refCount = await q('SELECT count(*)::int AS n FROM backup_chunks WHERE tenant_id = $1');
  const cutoff = Date.now() - graceMs;
  return {
    orphanObjects: [...inv.packs.keys()].filter((id) => !rowIds.has(id)),
    missingObjects: [...rowIds].filter((id) => !inv.packs.has(id)),
    chunksInDeadPacks: chunksInDead[0].n,
    unreferencedLive: unreferencedLive.map((r) => r.id),
    expiredDoomed: rows.rows.filter((r) => r.status === 'doomed' && r.doomed_at!.getTime() < cutoff).map((r) => r.id),
    refsOfUnfinished: refsOfUnfinished[0].n,
    danglingRefs: dangling[0].n,
    staleSnapshots: [...inv.snapshots].filter((id) => !completed.has(id)),
    missingSnapshots: [...completed].filter((id) => !inv.snapshots.has(id)),
    temps: inv.temps,
    counts: {
      live: rows.rows.filter((r) => r.status === 'live').length,
      doomed: rows.rows.filter((r) => r.status === 'doomed').length,
      objects: inv.packs.size,
      chunks: chunkCount[0].n,
      refs: refCount[0].n,
    },
  };
}

/** Everything of a RepoCheck that must be empty or zero (the counts aside). */
export function problemsOf(c: RepoCheck, opts: { allowTemps?: boolean } = {}) {
  const { counts: _counts, temps, ...rest } = c;
  return { ...rest, ...(opts.allowTemps ? {} : { temps }) };
}

export interface GcChild {
  proc: ChildProcess;
  out(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * collectGarbage of one tenant in a node process of its own (test/faults/gc-child.ts), so kill -9
 * hits GC itself. `pause` stops it (forever) at a chosen point, after printing `PAUSED <what>`:
 *   doom:N          before the N-th `UPDATE packs SET status = 'doomed'` (inside its transaction)
 *   put:N           after the N-th pack object GC uploads (a repack), before it is registered
 *   delete:N        after the N-th pack object GC deletes, before its row goes
 */
export function startGcChild(env: Record<string, string>): GcChild {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'test/faults/gc-child.ts'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (c) => (out += c));
  proc.stderr!.on('data', (c) => (out += c));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  return { proc, out: () => out, exited };
}
