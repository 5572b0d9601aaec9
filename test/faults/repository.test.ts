import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { stat, utimes } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it, inject } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/lib/logger.js';
import { createRuntime, type Runtime } from '../../src/runtime.js';
import { collectGarbage, type GcOptions, type GcReport } from '../../src/repo/gc.js';
import { createBackupDeleter } from '../../src/modules/backups/backups.jobs.js';
import { createRepoWriter } from '../../src/repo/writer.js';
import { createChunkSource } from '../../src/repo/reader.js';
import { packKey } from '../../src/repo/layout.js';
import type { ArtifactStore } from '../../src/storage/types.js';
import { createTestDatabase } from '../helpers/db.js';
import { freePort, http, kill, serviceSet, waitUntil, type Service } from './procs.js';
import { checkRepository, digestTree, problemsOf, startGcChild, writeRandom, type GcChild } from './repo-procs.js';

// The repository's GC protocol (docs/repository.md, "Garbage collection without a repository
// lock") under kill -9: of a worker in the middle of a backup while GC runs, and of GC itself.

const ADMIN = 'repo-fault-platform-token-0123';
const GRACE_MS = 2000;
const MiB = 1024 * 1024;

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let base: string;
let storageRoot: string;
let dataRoot: string;
let env: Record<string, string>;
let api: Service;
let rt: Runtime;
const children: GcChild[] = [];

const procs = serviceSet(() => env);
const service = procs.start;
const worker = () => service({ ROLES: 'worker' });


const sql = async <T = any>(text: string, params: unknown[] = []) => (await rt.db.$pool.query(text, params)).rows as T[];

interface Tenant {
  id: string;
  token: string;
  dir: string;
}

async function tenant(name: string): Promise<Tenant> {
  const t = await http(api.port, 'POST', '/v1/tenants', ADMIN, { name, data_dir: name });
  expect(t.status, t.text).toBe(201);
  const dir = path.join(dataRoot, name);
  await mkdir(dir, { recursive: true });
  return { id: t.body.tenant.id, token: t.body.api_key.token, dir };
}

async function cluster(t: Tenant, name: string, dir: string): Promise<string> {
  const p = await http(api.port, 'POST', '/v1/policies', t.token, { name: `p-${name}`, manual_rate_limit: null, schedule: [], max_backups: 100, manual_count: 100 });
  expect(p.status, p.text).toBe(201);
  await mkdir(path.join(t.dir, dir), { recursive: true });
  const c = await http(api.port, 'POST', '/v1/clusters', t.token, { name, policy_id: p.body.id, components: [{ name: 'files', type: 'directory', config: { path: dir } }] });
  expect(c.status, c.text).toBe(201);
  return c.body.id as string;
}

const getBackup = async (t: Tenant, clusterId: string, id: string) => (await http(api.port, 'GET', `/v1/clusters/${clusterId}/backups/${id}`, t.token)).body;

async function startBackup(t: Tenant, clusterId: string): Promise<string> {
  const b = await http(api.port, 'POST', `/v1/clusters/${clusterId}/backups`, t.token);
  expect(b.status, b.text).toBe(202);
  return b.body.id as string;
}

async function finished(t: Tenant, clusterId: string, id: string, timeoutMs = 90_000) {
  return waitUntil(async () => {
    const b = await getBackup(t, clusterId, id);
    return b.status === 'completed' || b.status === 'failed' ? b : null;
  }, timeoutMs, `backup ${id} to finish`);
}

async function backup(t: Tenant, clusterId: string): Promise<string> {
  const id = await startBackup(t, clusterId);
  const b = await finished(t, clusterId, id);
  expect(b.status, JSON.stringify(b.error)).toBe('completed');
  return id;
}

async function deleteBackup(t: Tenant, clusterId: string, id: string) {
  const d = await http(api.port, 'DELETE', `/v1/clusters/${clusterId}/backups/${id}`, t.token);
  expect(d.status, d.text).toBe(202);
}

/** POST verify, then its outcome. */
async function verify(t: Tenant, clusterId: string, id: string) {
  const v = await http(api.port, 'POST', `/v1/clusters/${clusterId}/backups/${id}/verify`, t.token);
  expect(v.status, v.text).toBe(202);
  return waitUntil(async () => {
    const b = await getBackup(t, clusterId, id);
    return b.verification && ['passed', 'failed'].includes(b.verification.status) ? b.verification : null;
  }, 120_000, `verification of ${id}`);
}

/** Restores backup `id` of `from` into cluster `into` (its component "files" at `intoDir`) and answers the restored tree's digest. */
async function restoreDigest(t: Tenant, from: string, id: string, into: string, intoDir: string) {
  const r = await http(api.port, 'POST', `/v1/clusters/${from}/backups/${id}/restore`, t.token, { target_cluster_id: into });
  expect(r.status, r.text).toBe(202);
  const done = await waitUntil(async () => {
    const x = (await http(api.port, 'GET', `/v1/clusters/${into}/restores/${r.body.id}`, t.token)).body;
    return x.status === 'completed' || x.status === 'failed' ? x : null;
  }, 120_000, `restore of ${id}`);
  expect(done.status, JSON.stringify(done.error)).toBe('completed');
  return digestTree(path.join(t.dir, intoDir));
}

function gcOptions(tenantId: string, over: Partial<GcOptions> = {}): GcOptions {
  return {
    pool: rt.db.$pool,
    primary: rt.store,
    secondary: null,
    seal: rt.repo.seal,
    keys: undefined as never, // filled by gc()
    tenantId,
    graceMs: GRACE_MS,
    repackThreshold: 0.5,
    packTargetBytes: MiB,
    now: () => new Date(),
    ...over,
  };
}
async function gc(tenantId: string, over: Partial<GcOptions> = {}): Promise<GcReport> {
  return collectGarbage({ ...gcOptions(tenantId, over), keys: await rt.repo.repositories.keysOf(tenantId) });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

beforeAll(async () => {
  db = await createTestDatabase();
  base = await mkdtemp(path.join(tmpdir(), 'bk-repo-faults-'));
  dataRoot = path.join(base, 'sources');
  storageRoot = path.join(base, 'artifacts');
  await mkdir(dataRoot, { recursive: true });
  await mkdir(storageRoot, { recursive: true });
  env = {
    DATABASE_URL: db.url,
    REDIS_URL: inject('redisUrl'),
    ADMIN_TOKEN: ADMIN,
    DATA_ROOT: dataRoot,
    STORAGE_URL: pathToFileURL(storageRoot).href,
    ENCRYPTION_KEY: randomBytes(32).toString('base64'),
    QUEUE_PREFIX: `bkrepofault-${randomBytes(4).toString('hex')}`,
    WORKER_LEASE_MS: '4000',
    RECONCILE_INTERVAL_MS: '1000',
    SHUTDOWN_GRACE_MS: '2000',
    DB_CONNECT_TIMEOUT_MS: '2000',
    PACK_TARGET_BYTES: String(MiB),
    GC_GRACE_MS: String(GRACE_MS),
    RATE_LIMIT_MAX: '100000',
  };
  api = service({ ROLES: 'api,scheduler' }, await freePort());
  await waitUntil(async () => (await http(api.port, 'GET', '/healthz')).status === 200, 30_000, 'service to listen');
  // The test's own view of the same database, store and queues (GC in-process, direct queries).
  rt = createRuntime(loadConfig({ ...env, DB_POOL_SIZE: '30' }, base), createLogger('silent'));
});

afterAll(async () => {
  for (const c of children) await kill(c);
  await procs.killAll();
  await rt?.close();
  await db?.drop().catch(() => {});
  await rm(base, { recursive: true, force: true });
});

describe('repository GC under faults', () => {
  it('kill -9 of a worker mid-backup while GC runs: completed backups verify and restore, no orphans after GC', async () => {
    const t00 = Date.now();
    const phase = (what: string) => console.log(`[repo-fault] +${secs(Date.now() - t00)} ${what}`);
    const t = await tenant('gc-kill-worker');
    const src = await cluster(t, 'src', 'tree');
    const dst = await cluster(t, 'dst', 'restored');
    const tree = path.join(t.dir, 'tree');
    const file = (i: number) => path.join(tree, `d${i % 4}`, `f${String(i).padStart(2, '0')}.bin`);
    const N = 32;
    for (let i = 0; i < N; i++) await writeRandom(file(i), MiB + i * 997);
    await writeRandom(path.join(tree, 'small.txt'), 1000);
    let w = worker();
    const expected = new Map<string, Record<string, string>>();
    const b1 = await backup(t, src);
    expected.set(b1, await digestTree(tree));
    for (let i = 0; i < 20; i++) await writeRandom(file(i), MiB + 512 * i); // half of the tree changes
    const b2 = await backup(t, src);
    expected.set(b2, await digestTree(tree));
    for (let i = 20; i < 28; i++) await writeRandom(file(i), MiB - 300 * i);
    const b3 = await backup(t, src);
    expected.set(b3, await digestTree(tree));
    phase('3 backups done');
    // Deleting b1 gives GC work: the packs of the 20 files only b1 had are unreferenced.
    await deleteBackup(t, src, b1);
    expected.delete(b1);
    await waitUntil(async () => (await sql('SELECT 1 FROM backups WHERE id = $1', [b1])).length === 0, 30_000, 'b1 deleted');

    // b4: a 41 MiB tree, 29 MiB of it new (11 unchanged files to reuse), while GC loops in this process and the gc job is queued for the worker.
    for (let i = 0; i < N; i += 1) if (i % 3 !== 0) await writeRandom(file(i), MiB + 4096 + i);
    for (let i = 0; i < 8; i++) await writeRandom(path.join(tree, 'new', `n${i}.bin`), MiB);
    const v4 = await digestTree(tree);
    const gcReports: GcReport[] = [];
    let stopGc = false;
    const gcLoop = (async () => {
      while (!stopGc) {
        gcReports.push(await gc(t.id));
        await sleep(20);
      }
    })();
    const b4 = await startBackup(t, src);
    await rt.queues.add('maintenance', 'gc', { tenant_id: t.id }, t.id).catch(() => {});
    await waitUntil(async () => (await sql('SELECT started_at FROM backups WHERE id = $1 AND status = $2', [b4, 'running'])).length === 1, 30_000, 'b4 running');
    // b3 goes while b4 runs: b4 reuses unchanged files of b3 (f21, f24, f27 only b3 had) as GC dooms what b3 alone held.
    await deleteBackup(t, src, b3);
    expected.delete(b3);
    // Polled fast: the backup must be caught running, with packs of its own registered (and more to come).
    let atKill: { status: string; refs: number; own: number } | undefined;
    for (const until = Date.now() + 60_000; Date.now() < until; await sleep(25)) {
      // packs b4 registered itself: chunks it references that were created since it started
      const [row] = await sql<{ status: string; refs: number; own: number }>(
        `SELECT b.status, (SELECT count(*)::int FROM backup_chunks r WHERE r.backup_id = b.id) AS refs,
                (SELECT count(DISTINCT c.pack_id)::int FROM backup_chunks r JOIN chunks c ON c.tenant_id = r.tenant_id AND c.id = r.chunk_id
                 WHERE r.backup_id = b.id AND c.created_at >= b.started_at) AS own
         FROM backups b WHERE b.id = $1`,
        [b4],
      );
      if (row?.status !== 'running') throw new Error(`b4 is ${row?.status} before it could be killed mid-way`);
      if (row.own >= 3) {
        atKill = row;
        break;
      }
    }
    if (!atKill) throw new Error('b4 registered no packs of its own within 60 s');
    const killed = await kill(w);
    const tKill = Date.now();
    console.log(`[repo-fault] worker killed mid-backup (${atKill.own} packs of its own registered, ${atKill.refs} references recorded); signal ${killed.signal}`);
    expect(killed.signal).toBe('SIGKILL');
    w = worker();
    const b4done = await finished(t, src, b4, 90_000);
    console.log(`[repo-fault] killed backup ended ${b4done.status} after ${secs(Date.now() - tKill)}: ${b4done.error?.message ?? ''}`);
    if (b4done.status === 'failed') expect(b4done.error.message).toMatch(/worker lost/);
    else expect(b4done.status).toBe('completed');
    if (b4done.status === 'completed') expected.set(b4, v4);
    // The same tree again, while GC still loops: it reuses what survived of b4 or stores it again.
    const b5 = await backup(t, src);
    expected.set(b5, v4);
    stopGc = true;
    await gcLoop;
    const sum = (k: keyof GcReport) => gcReports.reduce((a, r) => a + r[k], 0);
    console.log(`[repo-fault] ${gcReports.length} GC runs in this process during the backups: doomed ${sum('doomed')}, repacked ${sum('repacked')}, deleted ${sum('deleted')}, orphans ${sum('orphans')}`);
    expect(sum('doomed') + sum('deleted')).toBeGreaterThan(0);

    phase('b5 done');
    for (const id of expected.keys()) expect(await verify(t, src, id), id).toMatchObject({ status: 'passed' });
    phase('verified');

    // The check below is of a quiet repository: every backup of the tenant has ended and every
    // deletion asked for (b3's, whose job the killed worker may have held) has finished: a job the
    // killed worker held is retried or reconciled by the new one. Then the worker stops.
    await waitUntil(
      async () => (await sql(`SELECT id FROM backups WHERE tenant_id = $1 AND status IN ('queued', 'running', 'deleting')`, [t.id])).length === 0,
      90_000,
      'every backup of the tenant ended and every deletion finished',
    );
    expect(await sql('SELECT 1 FROM backups WHERE id = $1', [b3])).toEqual([]);
    phase('every backup ended, every deletion done');
    // Nothing else runs GC now (the worker stopped): two runs, each past the grace period.
    await kill(w, 'SIGTERM');
    await sleep(GRACE_MS + 200);
    const r1 = await gc(t.id);
    await sleep(GRACE_MS + 200);
    const r2 = await gc(t.id);
    console.log(`[repo-fault] final GC: ${JSON.stringify(r1)} then ${JSON.stringify(r2)}`);
    const check = await checkRepository(rt.db.$pool, storageRoot, t.id, GRACE_MS);
    console.log(`[repo-fault] repository after GC: ${JSON.stringify(check.counts)}; temp files left by the killed upload: ${JSON.stringify(check.temps)}`);
    // A pack upload cut by kill -9 leaves its temp file: GC removes it once past the grace period.
    expect(problemsOf(check)).toEqual({
      temps: [],
      orphanObjects: [],
      missingObjects: [],
      chunksInDeadPacks: 0,
      unreferencedLive: [],
      expiredDoomed: [],
      refsOfUnfinished: 0,
      danglingRefs: 0,
      staleSnapshots: [],
      missingSnapshots: [],
    });

    phase('checked');
    w = worker();
    for (const [id, digest] of expected) {
      expect(await verify(t, src, id), id).toMatchObject({ status: 'passed' });
      expect(await restoreDigest(t, src, id, dst, 'restored'), `restore of ${id}`).toEqual(digest);
    }
    phase('verified and restored');
    await kill(w, 'SIGTERM');
  });

  it('kill -9 of GC at three points (mid-doom, repack uploaded but unregistered, pack deleted but its row not): re-runs complete, the kept backup verifies and restores, no orphans', async () => {
    const t = await tenant('gc-kill-gc');
    const src = await cluster(t, 'src', 'tree');
    const dst = await cluster(t, 'dst', 'restored');
    const tree = path.join(t.dir, 'tree');
    const file = (i: number) => path.join(tree, 'a', `f${String(i).padStart(3, '0')}`);
    const KiB64 = 64 * 1024;
    // 200 small files (one chunk each), so a 1 MiB pack holds ~16 of them: deletions leave packs partly garbage (repacked) or wholly (doomed).
    for (let i = 0; i < 200; i++) await writeRandom(file(i), KiB64 + i);
    let w = worker();
    const a = await backup(t, src);
    for (let i = 1; i < 200; i += 2) await writeRandom(file(i), KiB64 + 7 * i);
    for (let i = 0; i < 100; i++) await writeRandom(path.join(tree, 'b-only', `g${String(i).padStart(3, '0')}`), KiB64);
    const b = await backup(t, src);
    await rm(path.join(tree, 'b-only'), { recursive: true });
    for (let i = 0; i < 200; i += 3) await writeRandom(file(i), KiB64 + 11 * i);
    const c = await backup(t, src);
    for (let i = 0; i < 200; i += 5) await writeRandom(file(i), KiB64 + 13 * i);
    const d = await backup(t, src);
    const expectedD = await digestTree(tree);
    // No worker from here on: GC runs only in the child process below.
    await kill(w, 'SIGTERM');
    const deleter = createBackupDeleter({ db: rt.db, ledger: rt.ledger, repo: rt.repo });
    for (const id of [a, b, c]) {
      await deleteBackup(t, src, id);
      await deleter({ tenant_id: t.id, backup_id: id });
    }
    expect(await sql(`SELECT id FROM backups WHERE tenant_id = $1`, [t.id])).toEqual([{ id: d }]);
    const before = await checkRepository(rt.db.$pool, storageRoot, t.id, 1000);
    console.log(`[repo-fault] before GC: ${JSON.stringify(before.counts)}, ${before.unreferencedLive.length} packs wholly garbage`);

    const childEnv = { DATABASE_URL: db.url, STORAGE_URL: env.STORAGE_URL!, ENCRYPTION_KEY: env.ENCRYPTION_KEY!, TENANT_ID: t.id, GRACE_MS: '1000', REPACK_THRESHOLD: '0.5', PACK_TARGET_BYTES: String(MiB) };
    const runUntilPaused = async (pause: string) => {
      const g = startGcChild({ ...childEnv, PAUSE: pause });
      children.push(g);
      const t0 = Date.now();
      await waitUntil(async () => {
        if (g.proc.exitCode !== null) throw new Error(`GC ended before ${pause}: ${g.out()}`);
        return g.out().includes('PAUSED');
      }, 60_000, `GC to reach ${pause}`).catch((err) => {
        throw new Error(`${(err as Error).message}\n${g.out()}`);
      });
      const exit = await kill(g);
      console.log(`[repo-fault] GC killed at ${pause} after ${secs(Date.now() - t0)}`);
      expect(exit.signal).toBe('SIGKILL');
      return g.out();
    };
    const runToEnd = async () => {
      const g = startGcChild(childEnv);
      children.push(g);
      const exit = await g.exited;
      expect(exit.code, g.out()).toBe(0);
      const line = g.out().split('\n').find((l) => l.startsWith('REPORT '));
      return JSON.parse(line!.slice('REPORT '.length)) as GcReport & { ms: number };
    };

    // 1. Killed inside the transaction dooming the 4th pack: 3 doomed, the 4th rolled back with its chunk rows.
    await runUntilPaused('doom:4');
    const k1 = await checkRepository(rt.db.$pool, storageRoot, t.id, 1000);
    expect(k1.counts.doomed).toBe(3);
    expect(k1.chunksInDeadPacks).toBe(0);
    expect(k1.unreferencedLive.length).toBe(before.unreferencedLive.length - 3);

    // 2. Killed after uploading the 2nd repacked pack, before registering it: that object is an orphan, the old packs stay live.
    await sleep(1100);
    const out2 = await runUntilPaused('put:2');
    const uploaded = /PAUSED put:2 (\S+)/.exec(out2)![1]!;
    const k2 = await checkRepository(rt.db.$pool, storageRoot, t.id, 1000);
    expect(k2.orphanObjects.length).toBe(1);
    expect(uploaded.endsWith(k2.orphanObjects[0]!)).toBe(true);
    expect(k2.unreferencedLive).toEqual([]); // step 2 finished before the repack began
    expect(k2.chunksInDeadPacks).toBe(0);

    // 3. Killed after deleting the 3rd expired pack's object, before its row: one doomed row without its object.
    await sleep(1100);
    const out3 = await runUntilPaused('delete:3');
    const deletedKey = /PAUSED delete:3 (\S+)/.exec(out3)![1]!;
    const k3 = await checkRepository(rt.db.$pool, storageRoot, t.id, 1000);
    expect(k3.missingObjects.length).toBe(1);
    expect(deletedKey.endsWith(k3.missingObjects[0]!)).toBe(true);
    expect((await sql(`SELECT status FROM packs WHERE id = $1`, [k3.missingObjects[0]])).map((r) => r.status)).toEqual(['doomed']);

    // 4. A run to the end resumes all of it; one more past the grace period leaves nothing behind.
    const r4 = await runToEnd();
    await sleep(1100);
    const r5 = await runToEnd();
    console.log(`[repo-fault] GC re-run: ${JSON.stringify(r4)}; after the grace period: ${JSON.stringify(r5)}`);
    expect(r4.orphans + r5.orphans).toBeGreaterThanOrEqual(1); // the killed repack's upload
    const after = await checkRepository(rt.db.$pool, storageRoot, t.id, 1000);
    console.log(`[repo-fault] after GC: ${JSON.stringify(after.counts)} (was ${JSON.stringify(before.counts)})`);
    expect(problemsOf(after)).toEqual({
      orphanObjects: [],
      missingObjects: [],
      chunksInDeadPacks: 0,
      unreferencedLive: [],
      expiredDoomed: [],
      refsOfUnfinished: 0,
      danglingRefs: 0,
      staleSnapshots: [],
      missingSnapshots: [],
      temps: [],
    });
    expect(after.counts.doomed).toBe(0);
    expect(after.counts.live).toBeLessThan(before.counts.live);

    w = worker();
    expect(await verify(t, src, d)).toMatchObject({ status: 'passed' });
    expect(await restoreDigest(t, src, d, dst, 'restored')).toEqual(expectedD);
    await kill(w, 'SIGTERM');
  });

  it('GC racing many concurrent backups in-process (graceMs 0, repack threshold 0.6): every completed backup reads back intact', async () => {
    const t = await tenant('gc-race');
    const p = await http(api.port, 'POST', '/v1/policies', t.token, { name: 'p', manual_rate_limit: null, schedule: [] });
    const clusters: string[] = [];
    for (let i = 0; i < 8; i++) {
      await mkdir(path.join(t.dir, `c${i}`), { recursive: true });
      const c = await http(api.port, 'POST', '/v1/clusters', t.token, { name: `c${i}`, policy_id: p.body.id, components: [{ name: 'files', type: 'directory', config: { path: `c${i}` } }] });
      expect(c.status, c.text).toBe(201);
      clusters.push(c.body.id);
    }
    const keys = await rt.repo.repositories.keysOf(t.id);
    const pool = rt.db.$pool;
    const PACK = 256 * 1024;
    // Blocks smaller than the minimum chunk (256 KiB) are one chunk each; ~5 of them fill a pack.
    const blocks: Buffer[] = [];
    const fresh = () => blocks.push(randomBytes(8 * 1024 + Math.floor(Math.random() * 100 * 1024))) - 1;
    for (let i = 0; i < 150; i++) fresh();
    /** chunk ids of a block as an earlier completed backup recorded them (kept after that backup is deleted: stale on purpose) */
    const idsOf = new Map<number, string[]>();
    type Done = { id: string; files: { block: number; chunks: string[] }[] };
    const completed: Done[] = [];
    const stats = { completed: 0, failed: 0, aborted: 0, deleted: 0, reused: 0, reuseMissed: 0, streamed: 0 };
    // At least 10 s of racing, and on until the race has done what the assertions below ask
    // (more than 50 completed backups, doomed and repacked packs): a slower or busier machine
    // races longer rather than less (at most 60 s; then the assertions say what fell short).
    const totals: GcReport = { droppedRefs: 0, doomed: 0, repacked: 0, deleted: 0, orphans: 0, staleSnapshots: 0 };
    const started = Date.now();
    const enough = () => stats.completed > 50 && totals.doomed > 0 && totals.repacked > 0;
    const racing = () => Date.now() - started < 10_000 || (!enough() && Date.now() - started < 60_000);
    const pick = <T>(xs: T[]) => xs[Math.floor(Math.random() * xs.length)]!;
    const one = (b: Buffer) => (async function* () {
      yield b;
    })();

    const backupLoop = async (clusterId: string) => {
      while (racing()) {
        const id = randomUUID();
        // A running backup row of its own (holding the cluster's job slot, as the ledger does), without a lease: nothing reaps it.
        await pool.query(
          `WITH b AS (INSERT INTO backups (id, tenant_id, cluster_id, trigger, status, components, started_at) VALUES ($1, $2, $3, 'manual', 'running', '[]', now()) RETURNING id)
           UPDATE clusters SET active_job_id = (SELECT id FROM b), active_job_kind = 'backup' WHERE id = $3`,
          [id, t.id, clusterId],
        );
        const end = async (status: 'completed' | 'failed') => {
          await pool.query(`UPDATE backups SET status = $2, completed_at = now() WHERE id = $1`, [id, status]);
          await pool.query(`UPDATE clusters SET active_job_id = NULL, active_job_kind = NULL WHERE id = $1`, [clusterId]);
        };
        const abort = new AbortController();
        const writer = createRepoWriter({ pool, store: rt.store, seal: rt.repo.seal, keys, tenantId: t.id, backupId: id, clusterId, packTargetBytes: PACK, uploads: 2, signal: abort.signal });
        const chosen = [...Array.from({ length: 16 }, () => Math.floor(Math.random() * blocks.length)), fresh(), fresh()];
        const files: Done['files'] = [];
        const willAbort = Math.random() < 0.1;
        try {
          // the incremental path: unchanged files' chunk lists from an earlier backup, recorded before relied on
          const reusable = chosen.filter((bi) => idsOf.has(bi) && Math.random() < 0.6);
          const ok = await writer.reuse(reusable.map((bi) => idsOf.get(bi)!));
          reusable.forEach((bi, k) => {
            if (ok[k]) {
              files.push({ block: bi, chunks: idsOf.get(bi)! });
              stats.reused++;
            } else stats.reuseMissed++;
          });
          for (const bi of chosen.filter((x) => !files.some((f) => f.block === x))) {
            if (willAbort && files.length > 8) abort.abort();
            const ref = await writer.writeStream(one(blocks[bi]!));
            files.push({ block: bi, chunks: ref.chunks });
            stats.streamed++;
          }
          await writer.flush();
        } catch (err) {
          if (!abort.signal.aborted) throw err;
          await end('failed');
          stats.aborted++;
          continue;
        }
        if (Math.random() < 0.05) {
          await end('failed');
          stats.failed++;
          continue;
        }
        await end('completed');
        stats.completed++;
        completed.push({ id, files });
        for (const f of files) idsOf.set(f.block, f.chunks);
      }
    };
    const deleterLoop = async () => {
      while (racing()) {
        await sleep(50);
        if (completed.length <= 12) continue;
        const [gone] = completed.splice(Math.floor(Math.random() * (completed.length - 4)), 1);
        await pool.query('DELETE FROM backups WHERE id = $1', [gone!.id]);
        stats.deleted++;
      }
    };
    // The orphan sweep still needs a grace period longer than upload-to-registration (docs/repository.md):
    // the store GC lists hides objects younger than 5 s. Doomed packs are deleted at once (graceMs 0).
    const shielded = new Proxy(rt.store, {
      get(target, prop, receiver) {
        if (prop === 'list')
          return async function* (prefix: string) {
            for await (const o of target.list(prefix)) if (o.modifiedAt.getTime() < Date.now() - 5000) yield o;
          };
        return Reflect.get(target, prop, receiver);
      },
    }) as ArtifactStore;
    let gcRuns = 0;
    const gcLoop = async () => {
      while (racing()) {
        const r = await collectGarbage({ ...gcOptions(t.id, { graceMs: 0, repackThreshold: 0.6, packTargetBytes: PACK, primary: shielded }), keys });
        for (const k of Object.keys(totals) as (keyof GcReport)[]) totals[k] += r[k];
        gcRuns++;
      }
    };
    const t0 = Date.now();
    await Promise.all([...clusters.map(backupLoop), deleterLoop(), gcLoop()]);
    console.log(`[repo-fault] race for ${secs(Date.now() - t0)}: backups ${JSON.stringify(stats)}; ${gcRuns} GC runs ${JSON.stringify(totals)}`);
    expect(stats.completed).toBeGreaterThan(50);
    expect(totals.doomed).toBeGreaterThan(0);
    expect(totals.repacked).toBeGreaterThan(0);

    const sha = (x: Buffer) => createHash('sha256').update(x).digest('hex');
    const readAll = async () => {
      const source = createChunkSource({ pool, primary: rt.store, secondary: null, seal: rt.repo.seal, keys, tenantId: t.id });
      let n = 0;
      for (const bk of completed) {
        const refs = new Set((await pool.query<{ chunk_id: string }>('SELECT chunk_id FROM backup_chunks WHERE backup_id = $1', [bk.id])).rows.map((r) => r.chunk_id));
        // every chunk it relies on is referenced (so GC keeps it) ...
        const missing = bk.files.flatMap((f) => f.chunks).filter((c) => !refs.has(c));
        expect(missing, `backup ${bk.id} relies on chunks without a reference`).toEqual([]);
        // ... and its files read back, verified, as the blocks that were written (one read per backup)
        const parts: Buffer[] = [];
        for await (const part of source.read(bk.files.flatMap((f) => f.chunks))) parts.push(part as Buffer);
        expect(sha(Buffer.concat(parts)), `backup ${bk.id}`).toBe(sha(Buffer.concat(bk.files.map((f) => blocks[f.block]!))));
        n += bk.files.length;
      }
      return n;
    };
    // With nothing in flight, GC until it has nothing left to do; then the repository is exactly what the backups reference.
    for (let i = 0; i < 5; i++) {
      const r = await collectGarbage({ ...gcOptions(t.id, { graceMs: 0, repackThreshold: 0.6, packTargetBytes: PACK }), keys });
      totals.droppedRefs += r.droppedRefs;
      if (!r.doomed && !r.repacked && !r.deleted && !r.orphans && !r.droppedRefs) break;
    }
    // The references of the failed and aborted backups were dropped, during the race or (when the
    // last of them failed after the race's last GC run, as on a slow machine) right after it.
    expect(stats.failed + stats.aborted).toBeGreaterThan(0);
    expect(totals.droppedRefs).toBeGreaterThan(0);
    expect((await pool.query('SELECT 1 FROM backup_chunks r JOIN backups b ON b.id = r.backup_id WHERE b.tenant_id = $1 AND b.status = $2 LIMIT 1', [t.id, 'failed'])).rowCount).toBe(0);
    const check = await checkRepository(pool, storageRoot, t.id, 0);
    console.log(`[repo-fault] after GC: ${JSON.stringify(check.counts)}`);
    expect(problemsOf(check, { allowTemps: false })).toMatchObject({
      orphanObjects: [],
      missingObjects: [],
      chunksInDeadPacks: 0,
      unreferencedLive: [],
      expiredDoomed: [],
      refsOfUnfinished: 0,
      danglingRefs: 0,
      temps: [],
    });
    const files = await readAll();
    console.log(`[repo-fault] ${completed.length} completed backups (${files} files) read back intact`);
  });

  // The file store writes `.<name>.<random>.partial` beside the key and renames it; a writer killed
  // mid-write leaves that file, which list() does not show: GC's sweepTemps removes it.
  it('a pack upload cut by kill -9 leaves a temp file that GC removes once past the grace period', async () => {
    const t = await tenant('gc-partial');
    await rt.repo.repositories.keysOf(t.id);
    const key = packKey(t.id, 'ab'.repeat(32));
    // A process uploading a big pack through the real file store, killed while the temp file grows.
    const code = `import { createStore } from './src/storage/index.ts';
      const s = createStore(${JSON.stringify(env.STORAGE_URL)});
      await s.putBuffer(${JSON.stringify(key)}, Buffer.alloc(1024 * 1024 * 1024, 7));`;
    const proc = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: 'ignore' });
    const exited = new Promise<unknown>((r) => proc.once('exit', r));
    const dir = path.join(storageRoot, path.dirname(key));
    const temp = await waitUntil(async () => {
      const { readdir } = await import('node:fs/promises');
      const f = (await readdir(dir)).find((n) => n.endsWith('.partial'));
      return f && (await stat(path.join(dir, f))).size > 0 ? path.join(dir, f) : null;
    }, 30_000, 'the upload to begin');
    proc.kill('SIGKILL');
    await exited;
    const old = new Date(Date.now() - 3600_000);
    await utimes(temp, old, old);
    await gc(t.id);
    const check = await checkRepository(rt.db.$pool, storageRoot, t.id, GRACE_MS);
    expect(check.temps).toEqual([]);
  });
});
