/**
 * Helpers for the repository integration tests (test/repository.test.ts, test/recover.test.ts):
 * describing a directory tree exactly, building trees of random and compressible data, and
 * driving backups, restores, verification and GC through the real API and worker of a Stack.
 */
import { createHash, randomBytes } from 'node:crypto';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { expect } from 'vitest';
import { runGcOnce } from './repo.js';
import { waitFor, waitForBackup, type Stack } from './stack.js';

export const MiB = 1024 * 1024;

export interface TreeEntry {
  path: string;
  type: 'file' | 'directory' | 'symlink';
  /** Permission bits (mode & 0o7777). */
  mode: number;
  size: number;
  sha256?: string;
  link?: string;
  /** mtime to the microsecond (restores keep µs: libuv's utimes truncates ns); files and directories. */
  mtimeUs?: string;
}

/** Every entry below `root` (not root itself), sorted by path: type, mode, size, content hash, link target, mtime. */
export async function describeTree(root: string, opts: { mtimes?: boolean } = {}): Promise<TreeEntry[]> {
  const out: TreeEntry[] = [];
  async function walk(rel: string): Promise<void> {
    const names = (await readdir(path.join(root, rel))).sort();
    for (const name of names) {
      const r = rel ? `${rel}/${name}` : name;
      const abs = path.join(root, r);
      const st = await lstat(abs, { bigint: true });
      const base = { path: r, mode: Number(st.mode & 0o7777n) };
      const mtime = opts.mtimes === false ? {} : { mtimeUs: (st.mtimeNs / 1000n).toString() };
      if (st.isSymbolicLink()) out.push({ ...base, type: 'symlink', size: 0, link: await readlink(abs) });
      else if (st.isDirectory()) {
        out.push({ ...base, type: 'directory', size: 0, ...mtime });
        await walk(r);
      } else if (st.isFile()) {
        const bytes = await readFile(abs);
        out.push({ ...base, type: 'file', size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex'), ...mtime });
      }
    }
  }
  await walk('');
  return out;
}

/** Deterministic pseudo-random bytes (so failures reproduce): sha256 in counter mode from `seed`. */
export function pseudoRandom(bytes: number, seed: string): Buffer {
  const out = Buffer.allocUnsafe(bytes);
  for (let at = 0, i = 0; at < bytes; i++) {
    const block = createHash('sha256').update(`${seed}:${i}`).digest();
    at += block.copy(out, at);
  }
  return out;
}

/** Text-like, compressible bytes: lines of words drawn from a small vocabulary. */
export function compressible(bytes: number, seed: string): Buffer {
  const words = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel', 'india', 'juliet', 'kilo', 'lima'];
  const rnd = pseudoRandom(Math.ceil(bytes / 4) + 16, seed);
  const parts: string[] = [];
  let n = 0;
  for (let i = 0; n < bytes; i++) {
    const w = `${words[rnd[i % rnd.length]! % words.length]}${i % 17 === 0 ? '\n' : ' '}`;
    parts.push(w);
    n += w.length;
  }
  return Buffer.from(parts.join('')).subarray(0, bytes);
}

export const randomName = () => randomBytes(4).toString('hex');

/** A policy without a manual rate limit that keeps 10 manual backups (retention deletes none here), then a cluster with it. */
export async function createCluster(s: Stack, token: string, name: string, components: unknown[], extra: Record<string, unknown> = {}): Promise<string> {
  const p = await s.request('POST', '/v1/policies', { token, body: { name: `p-${name}-${randomName()}`, manual_rate_limit: null, manual_count: 10, max_backups: 20 } });
  expect(p.status, p.text).toBe(201);
  const c = await s.request('POST', '/v1/clusters', { token, body: { name, policy_id: p.body.id, components, ...extra } });
  expect(c.status, c.text).toBe(201);
  return c.body.id as string;
}

/** Takes a manual backup and waits for it to complete (fails the test otherwise); answers the backup as the API shows it. */
export async function backupNow(s: Stack, token: string, clusterId: string): Promise<any> {
  const res = await s.request('POST', `/v1/clusters/${clusterId}/backups`, { token });
  expect(res.status, res.text).toBe(202);
  const done = await waitForBackup(s, token, clusterId, res.body.id);
  expect(done.status, JSON.stringify(done.error)).toBe('completed');
  return done;
}

/** Starts a restore and waits for it to end (completed or failed); answers the restore. */
export async function restoreAndWait(s: Stack, token: string, clusterId: string, backupId: string, body: Record<string, unknown> = {}): Promise<any> {
  const res = await s.request('POST', `/v1/clusters/${clusterId}/backups/${backupId}/restore`, { token, body });
  expect(res.status, res.text).toBe(202);
  const target = (body.target_cluster_id as string | undefined) ?? clusterId;
  return waitFor(
    async () => {
      const r = await s.request('GET', `/v1/clusters/${target}/restores/${res.body.id}`, { token });
      return r.body?.status === 'completed' || r.body?.status === 'failed' ? r.body : null;
    },
    30_000,
    `restore ${res.body.id}`,
  );
}

/** POST .../verify and waits for the outcome; answers the backup's `verification`. */
export async function verifyAndWait(s: Stack, token: string, clusterId: string, backupId: string): Promise<{ status: string; message: string | null }> {
  const res = await s.request('POST', `/v1/clusters/${clusterId}/backups/${backupId}/verify`, { token });
  expect(res.status, res.text).toBe(202);
  return waitFor(
    async () => {
      const r = await s.request('GET', `/v1/clusters/${clusterId}/backups/${backupId}`, { token });
      const v = r.body?.verification;
      return v && (v.status === 'passed' || v.status === 'failed') ? v : null;
    },
    30_000,
    `verification of ${backupId}`,
  );
}

/** Deletes a backup through the API and waits until its row is gone. */
export async function deleteBackup(s: Stack, token: string, clusterId: string, backupId: string): Promise<void> {
  const res = await s.request('DELETE', `/v1/clusters/${clusterId}/backups/${backupId}`, { token });
  expect(res.status, res.text).toBe(202);
  await waitFor(async () => !(await s.rt.db.backup.findUnique({ where: { id: backupId } })), 20_000, `backup ${backupId} to be deleted`);
}

/** One run of the `gc` maintenance job of a tenant, as the worker runs it (settings from the stack's config). */
export const runGc = (s: Stack, tenantId: string): Promise<void> => runGcOnce(s, tenantId);

/** Rows of a query on the stack's own database. */
export async function q<T = any>(s: Stack, sql: string, params: unknown[] = []): Promise<T[]> {
  return (await s.rt.db.$pool.query(sql, params)).rows as T[];
}

/** A tenant database's table as text (COPY ... ORDER BY), for byte-for-byte comparison. */
export async function tableText(url: string, table: string, orderBy = 'id'): Promise<string> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const r = await c.query(`SELECT string_agg(t::text, E'\\n' ORDER BY ${orderBy}) AS all FROM ${table} t`);
    return (r.rows[0]?.all as string | null) ?? '';
  } finally {
    await c.end();
  }
}

export async function sql(url: string, text: string, params: unknown[] = []): Promise<pg.QueryResult> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await c.query(text, params);
  } finally {
    await c.end();
  }
}
