/**
 * Repository benchmark (`npm run bench:backup`): the content-addressed repository (src/repo/)
 * against restic, measured in this run on the same data, rounds interleaved (ours first in odd
 * rounds, restic first in even ones), medians of BENCH_ROUNDS:
 *  (a) first backup of a ~1 GiB mixed tree into a fresh repository: >= 1.0 of restic's throughput;
 *  (b) second backup of the unchanged tree: >= 1.0 of restic's second backup;
 *  (c) ten backups, ~2% of the files changed between each: our stored bytes <= 1.3 x our first
 *      backup's, and <= 1.1 x restic's repository after the same ten;
 *  (d) five backups of a pgbench database (~1% of rows updated between each): our stored bytes
 *      <= 1.6 x the first's (restic `backup --stdin` of the same dump is shown for context);
 *  (e) full restore of the tree (ours fsynced before the swap): >= 1.0 of `restic restore`, each
 *      restore into a target of its own (see the phase: deleted trees slow ext4's inode allocation);
 *  (f) peak RSS (process.resourceUsage().maxRSS) of a Node child process that only backs up, and
 *      of one that only restores, a ~2 GiB tree: < 300 MB each. Each child runs as `npm start`
 *      runs the service: this file built to plain JavaScript (scripts/build-service.mjs, into
 *      dist/), npm start's node flags and its environment defaults (package.json).
 * Plus where our time goes: busy time of hashing / sealing / opening on the seal pool, pack
 * uploads, range reads and SQL, event-loop utilization, and a CPU profile of one backup.
 *
 * Ours is the service's own code path: a fresh migrated PostgreSQL database for the repository
 * index (bench/support.ts benchDatabase), the file store (createStore('file://...'): fsync +
 * rename per pack), createRepoService, and directoryDriver / postgresDriver called with the
 * context the worker gives them (backups.jobs.ts, restores.jobs.ts): a writer as the sink, the
 * previous completed backup's manifest, then the manifest written through the same writer, the
 * flush, the sealed snapshot record, and the artifact row.
 *
 * Exit code is 0 even when a target is missed: read the PASS/FAIL lines.
 *
 * Environment: BENCH_DIR_MB (MiB, default 1024), BENCH_MEM_MB (MiB, default 2048), BENCH_PG_MB
 * (MB, default 1024), BENCH_ROUNDS (default 3), BENCH_ONLY (comma list of dir,incr,pg,mem,redis,mysql;
 * default all), BENCH_REDIS_MB and BENCH_MYSQL_MB (MB, default 1024: (g) a redis backup against
 * `redis-cli --rdb`, (h) a mysql backup against `mariadb-dump --single-transaction > /dev/null`,
 * bench/redis.ts and bench/mysql.ts), BENCH_MYSQL_SERVER (default mysql://root@127.0.0.1:3306), BENCH_PROFILE (1: CPU profile of one backup, default 1), BENCH_TMPDIR, DATABASE_URL,
 * BENCH_PG_SERVER ('tenant' (default): the tests' second cluster, test/tenant-pg.sh; 'same': the
 * service's own server), BENCH_PG_PATTERN ('range' (default): 1% of rows in one aid range between
 * backups; 'spread': every 100th row, which no chunk-level dedup keeps small).
 * BENCH_THREADS=1: each of our backups prints its CPU by thread, user + system (the main thread,
 * then the others by total: the seal pool's, libuv's where zstd runs and packs are written, V8's).
 * SEAL_NICE: as the service's (default 10, src/repo/thread-priority.mjs).
 * Diagnostics of (f)'s children (off by default): BENCH_SMAPS=1 (/proc/self/smaps at the sampled
 * peak into /tmp/<mode>.smaps), BENCH_HEAPSNAP=<MB> (a heap snapshot into /tmp/child.heapsnapshot
 * once the main isolate uses that much), BENCH_HEAPPROF=1 (V8's sampling heap profile, garbage
 * included, into /tmp/<mode>.heapprofile; BENCH_HEAPPROF=promoted: only what outlived the young
 * generation), BENCH_GCPROBE=<MB> (once the main heap uses that much, a forced full collection
 * and what it left), BENCH_CHILD_OUT=1 (a child's stdout into /tmp/<mode>.out, e.g. with
 * --trace-gc added to npm start's flags), BENCH_TIMELINE=1 (RSS, heap and external memory once a
 * second), BENCH_CHILD_PERF=backup|restore (that child under
 * `perf record -g`, into /tmp/<mode>.perf).
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { closeSync, lstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import os from 'node:os';
import v8 from 'node:v8';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { directoryDriver, getDriver } from '../src/components/index.js';
import { redisBenchPhase } from './redis.js';
import { mysqlBenchPhase } from './mysql.js';
import { createDb, type Db } from '../src/db/client.js';
import { createRepoService, type ComponentArtifact, type RepoService } from '../src/repo/service.js';
import { createSealPool, type SealPool } from '../src/repo/seal-pool.js';
import { DEFAULT_SEAL_NICE } from '../src/repo/thread-priority.mjs';
import { writeSnapshot, type SnapshotRecord } from '../src/repo/snapshot.js';
import type { ArtifactStore } from '../src/storage/types.js';
import { createStore } from '../src/storage/index.js';
import { PROJECT_ROOT } from '../src/lib/project-root.js';
import { benchDatabase, BusyTimer, DATABASE_URL, median, sh, threadCpu, threadCpuLine, timeIt, verdict } from './support.js';

const MiB = 1024 * 1024;
const DIR_MB = Number(process.env.BENCH_DIR_MB ?? 1024);
const MEM_MB = Number(process.env.BENCH_MEM_MB ?? 2048);
const PG_MB = Number(process.env.BENCH_PG_MB ?? 1024);
const PG_PATTERN = process.env.BENCH_PG_PATTERN === 'spread' ? 'spread' : 'range';
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 3));
const REDIS_MB = Number(process.env.BENCH_REDIS_MB ?? 1024);
const MYSQL_MB = Number(process.env.BENCH_MYSQL_MB ?? 1024);
const ONLY = new Set((process.env.BENCH_ONLY ?? 'dir,incr,pg,mem,redis,mysql').split(',').map((s) => s.trim()).filter(Boolean));
const PROFILE = process.env.BENCH_PROFILE !== '0';
const PG_SERVER = process.env.BENCH_PG_SERVER ?? 'tenant';
const RSS_LIMIT = 300 * 1e6;
const INCR_BACKUPS = 10;
const INCR_CHANGED = 0.02;
const PG_BACKUPS = 5;
const PACK_TARGET_BYTES = Number(process.env.BENCH_PACK_MB ?? 16) * MiB;
/** BENCH_THREADS=1: each backup of ours prints its CPU by thread (user + system), the main thread first. */
const THREADS = process.env.BENCH_THREADS === '1';
/** The service's SEAL_NICE (src/config.ts): its seal pool's and libuv's threads below the event loop. */
const SEAL_NICE = process.env.SEAL_NICE !== undefined ? Number(process.env.SEAL_NICE) : DEFAULT_SEAL_NICE;

// ---------------------------------------------------------------------------------------------
// output helpers

const summary: string[] = [];
const log = (line: string) => console.log(line);
const note = (line: string) => {
  console.log(line);
  summary.push(line);
};
const mb = (bytes: number) => (bytes / 1e6).toFixed(1);
const mbps = (bytes: number, ms: number) => (bytes / 1e6 / (ms / 1000)).toFixed(1);
const secs = (ms: number) => (ms / 1000).toFixed(2);
const load = () => os.loadavg().map((x) => x.toFixed(2)).join(' ');
const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
const runsText = (xs: number[]) => xs.map(secs).join(', ');
const pct = (part: number, whole: number) => `${whole > 0 ? ((100 * part) / whole).toFixed(0) : '0'}%`;


async function hasCommand(name: string): Promise<boolean> {
  return sh(`command -v ${name}`).then(
    () => true,
    () => false,
  );
}

/** Flushes dirty pages before a timed run, so no run pays for the previous one's writeback. */
const settle = () => sh('sync');
const duBytes = async (p: string) => Number((await sh(`du -sb ${q(p)}`)).split(/\s/)[0]);

// ---------------------------------------------------------------------------------------------
// data generation: fixed-seed xorshift32, cheap and repeatable

class Rng {
  constructor(private s: number) {
    this.s = s >>> 0 || 0x9e3779b9;
  }
  next(): number {
    let x = this.s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x >>> 0;
    return this.s;
  }
  below(n: number): number {
    return this.next() % n;
  }
  /** Incompressible bytes. `buf` must be 4-byte aligned (Buffer.allocUnsafeSlow). */
  fillRandom(buf: Buffer): void {
    const words = new Uint32Array(buf.buffer, buf.byteOffset, buf.length >>> 2);
    let x = this.s;
    for (let i = 0; i < words.length; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      words[i] = x;
    }
    this.s = x >>> 0 || 1;
    for (let i = words.length * 4; i < buf.length; i++) buf[i] = this.next() & 0xff;
  }
}

const TEXT_POOL_SIZE = 8 * MiB;

/** 8 MiB of word salad from a 2,000-word vocabulary: compresses about as well as prose or logs. */
function makeTextPool(rng: Rng): Buffer {
  const letters = 'etaoinshrdlcumwfgypbvkjxqz';
  const words: Buffer[] = [];
  for (let i = 0; i < 2000; i++) {
    const len = 2 + rng.below(9);
    let w = '';
    for (let j = 0; j < len; j++) w += letters[Math.min(25, Math.floor((rng.below(1000) / 1000) ** 2 * 26))];
    words.push(Buffer.from(w));
  }
  const pool = Buffer.allocUnsafeSlow(TEXT_POOL_SIZE);
  let off = 0;
  let inLine = 0;
  while (off < pool.length) {
    const w = words[Math.floor((rng.below(10_000) / 10_000) ** 3 * words.length)] as Buffer;
    off += w.copy(pool, off);
    if (off >= pool.length) break;
    const r = rng.below(100);
    pool[off++] = ++inLine > 12 && r < 20 ? 0x0a : r < 4 ? 0x2c : r < 6 ? 0x2e : 0x20;
    if (pool[off - 1] === 0x0a) inLine = 0;
  }
  return pool;
}

function fillText(buf: Buffer, pool: Buffer, rng: Rng): void {
  let off = 0;
  while (off < buf.length) {
    const n = Math.min(256 + rng.below(16_128), buf.length - off);
    const start = rng.below(pool.length - n);
    off += pool.copy(buf, off, start, start + n);
  }
}

interface TreeStats {
  files: number;
  bytes: number;
  symlinks: number;
  dirs: number;
}

function writeGenerated(file: string, size: number, kind: 'text' | 'random' | 'mixed', pool: Buffer, rng: Rng, scratch: Buffer): void {
  const fd = openSync(file, 'w', 0o644);
  try {
    let written = 0;
    let segment = 0;
    while (written < size) {
      const n = Math.min(scratch.length, size - written);
      const random = kind === 'random' || (kind === 'mixed' && segment++ % 2 === 1);
      if (random) rng.fillRandom(scratch);
      else fillText(scratch, pool, rng);
      for (let o = 0; o < n; ) o += writeSync(fd, scratch, o, n - o);
      written += n;
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * ~`totalMiB` of mixed files: 10% small text files (100 B - 8 KB, 100 per directory), 25% medium
 * files (64 KiB - 1 MiB, 60% text / 40% random), 35% large compressible text files and 30% large
 * random files (32 MiB each at 1 GiB), plus a few relative symlinks and an empty directory.
 */
function generateTree(root: string, totalMiB: number): TreeStats {
  const rng = new Rng(20240601);
  const pool = makeTextPool(rng);
  const scratch = Buffer.allocUnsafeSlow(4 * MiB);
  const total = Math.floor(totalMiB * MiB);
  const stats: TreeStats = { files: 0, bytes: 0, symlinks: 0, dirs: 0 };
  const mkdir = (d: string) => {
    mkdirSync(d, { recursive: true });
    stats.dirs++;
  };

  // small text files
  let budget = total * 0.1;
  for (let i = 0; budget > 0; i++) {
    const dir = path.join(root, 'small', `g${Math.floor(i / 10_000)}`, `h${String(Math.floor(i / 100) % 100).padStart(2, '0')}`);
    if (i % 100 === 0) mkdir(dir);
    const size = 100 + rng.below(8_000);
    const buf = scratch.subarray(0, size);
    fillText(buf, pool, rng);
    writeFileSync(path.join(dir, `f${String(i).padStart(6, '0')}.txt`), buf);
    stats.files++;
    stats.bytes += size;
    budget -= size;
  }
  // medium files
  budget = total * 0.25;
  for (let i = 0; budget > 0; i++) {
    const dir = path.join(root, 'medium', `m${String(Math.floor(i / 50)).padStart(3, '0')}`);
    if (i % 50 === 0) mkdir(dir);
    const size = 64 * 1024 + rng.below(960 * 1024);
    const text = rng.below(10) < 6;
    writeGenerated(path.join(dir, `file-${String(i).padStart(4, '0')}.${text ? 'txt' : 'bin'}`), size, text ? 'text' : 'random', pool, rng, scratch);
    stats.files++;
    stats.bytes += size;
    budget -= size;
  }
  // large files
  const largeSize = Math.max(1, Math.min(64, Math.round(totalMiB / 32))) * MiB;
  mkdir(path.join(root, 'large'));
  for (const [kind, share] of [
    ['text', 0.35],
    ['random', 0.3],
  ] as const) {
    budget = total * share;
    for (let i = 0; budget > 0; i++) {
      const size = Math.floor(Math.min(largeSize, Math.max(MiB, budget)));
      writeGenerated(path.join(root, 'large', `${kind === 'text' ? 'log' : 'blob'}-${String(i).padStart(2, '0')}.${kind === 'text' ? 'log' : 'bin'}`), size, kind, pool, rng, scratch);
      stats.files++;
      stats.bytes += size;
      budget -= size;
    }
  }
  mkdir(path.join(root, 'links'));
  for (let i = 0; i < 20; i++) {
    symlinkSync(`../medium/m000/file-${String(i).padStart(4, '0')}.${'txt'}`, path.join(root, 'links', `l${i}`));
    stats.symlinks++;
  }
  mkdir(path.join(root, 'empty'));
  return stats;
}

/** Files, bytes and symlinks of a tree, for checking restores. */
function walk(root: string): TreeStats {
  const stats: TreeStats = { files: 0, bytes: 0, symlinks: 0, dirs: 0 };
  const stack = [root];
  while (stack.length > 0) {
    const dir = stack.pop() as string;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) {
        stats.dirs++;
        stack.push(p);
      } else if (e.isSymbolicLink()) stats.symlinks++;
      else if (e.isFile()) {
        stats.files++;
        stats.bytes += lstatSync(p).size;
      }
    }
  }
  return stats;
}

const sameTree = (a: TreeStats, b: TreeStats) => a.files === b.files && a.bytes === b.bytes && a.symlinks === b.symlinks;
const treeText = (s: TreeStats) => `${s.files} files, ${s.symlinks} symlinks, ${mb(s.bytes)} MB`;

// ---------------------------------------------------------------------------------------------
// ---------------------------------------------------------------------------------------------
// the tree: files of a directory, their changes between backups

interface FileInfo {
  path: string;
  size: number;
}

/** Regular files of a tree, in a stable order. */
function listFiles(root: string): FileInfo[] {
  const out: FileInfo[] = [];
  const stack = [root];
  while (stack.length > 0) {
    const dir = stack.pop() as string;
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) stack.push(p);
      else if (e.isFile()) out.push({ path: p, size: lstatSync(p).size });
    }
  }
  return out;
}

/**
 * Changes `fraction` of the files (by count, picked at random): a file under 64 KiB is rewritten
 * whole with new text of the same size, a larger one gets 4 KiB of new random bytes at a random
 * offset (an in-place edit). Returns how many files and bytes were written.
 */
function mutateTree(files: FileInfo[], fraction: number, rng: Rng, pool: Buffer): { files: number; bytes: number } {
  const n = Math.max(1, Math.round(files.length * fraction));
  const picked = new Set<number>();
  while (picked.size < Math.min(n, files.length)) picked.add(rng.below(files.length));
  const patch = Buffer.allocUnsafeSlow(4096);
  let bytes = 0;
  for (const i of picked) {
    const f = files[i] as FileInfo;
    if (f.size < 64 * 1024) {
      const buf = Buffer.allocUnsafeSlow(Math.max(1, f.size));
      fillText(buf, pool, rng);
      writeFileSync(f.path, buf);
      bytes += buf.length;
    } else {
      rng.fillRandom(patch);
      const fd = openSync(f.path, 'r+');
      try {
        writeSync(fd, patch, 0, patch.length, rng.below(f.size - patch.length));
      } finally {
        closeSync(fd);
      }
      bytes += patch.length;
    }
  }
  return { files: picked.size, bytes };
}

// ---------------------------------------------------------------------------------------------
// ours: the repository service with probes

interface Probes {
  files: BusyTimer;
  restoreFiles: BusyTimer;
  hash: BusyTimer;
  seal: BusyTimer;
  open: BusyTimer;
  upload: BusyTimer;
  range: BusyTimer;
  sql: BusyTimer;
}
const newProbes = (): Probes => ({ files: new BusyTimer(), restoreFiles: new BusyTimer(), hash: new BusyTimer(), seal: new BusyTimer(), open: new BusyTimer(), upload: new BusyTimer(), range: new BusyTimer(), sql: new BusyTimer() });

function probedSeal(pool: SealPool, p: Probes): SealPool {
  return {
    hash: (k, c) => p.hash.track(pool.hash(k, c)),
    seal: (k, items) => p.seal.track(pool.seal(k, items)),
    // a stream's block (writer.ts writeStream): cut, hashed, and sealed too while its chunks are new
    block: (k, b, o) => {
      const task = pool.block!(k, b, o);
      return { cut: task.cut, result: (o.seal ? p.seal : p.hash).track(task.result) };
    },
    open: (k, items) => p.open.track(pool.open(k, items)),
    files: (k, jobs, o) => p.files.track(pool.files(k, jobs, o)),
    restore: (k, jobs, o) => p.restoreFiles.track(pool.restore(k, jobs, o)),
    close: () => pool.close(),
  };
}

function probedStore(store: ArtifactStore, p: Probes): ArtifactStore {
  return {
    ...store,
    putBuffer: (key: string, body: Buffer, o?: { sha256?: string }) => p.upload.track(store.putBuffer!(key, body, o)),
    getRange: (key: string, start: number, end: number) => p.range.track(store.getRange(key, start, end)),
  };
}

/** Every statement through the pool (and through clients checked out of it) counts as SQL time. */
function probePool(pool: pg.Pool, p: Probes): void {
  const query = pool.query.bind(pool) as (...a: unknown[]) => unknown;
  (pool as unknown as { query: unknown }).query = (...a: unknown[]) => p.sql.track(query(...a));
  const connect = pool.connect.bind(pool) as () => Promise<pg.PoolClient>;
  const seen = new WeakSet<object>();
  (pool as unknown as { connect: unknown }).connect = async (...a: unknown[]) => {
    if (a.length > 0) return (connect as (...x: unknown[]) => unknown)(...a);
    const c = await connect();
    if (!seen.has(c)) {
      seen.add(c);
      const cq = c.query.bind(c) as (...x: unknown[]) => unknown;
      (c as unknown as { query: unknown }).query = (...x: unknown[]) => p.sql.track(cq(...x));
    }
    return c;
  };
}

interface Tenant {
  id: string;
  clusterId: string;
  dataDir: string;
  /** The last completed backup's artifact per component (what previousArtifact() finds). */
  previous: Map<string, ComponentArtifact>;
}

interface Component {
  name: string;
  type: 'directory' | 'postgres' | 'redis' | 'mysql';
  config: { path: string } | { url: string };
}

interface BackupOutcome {
  ms: number;
  logical: number;
  stored: number;
  artifact: ComponentArtifact;
  chunks: number;
  newChunks: number;
  packs: number;
}

interface Ours {
  db: Db;
  repo: RepoService;
  store: ArtifactStore;
  probes: Probes;
  newTenant(label: string, component: Component): Promise<Tenant>;
  backup(t: Tenant, c: Component): Promise<BackupOutcome>;
  restoreDir(t: Tenant, artifact: ComponentArtifact, targetRel: string): Promise<number>;
  repoBytes(t: Tenant): Promise<number>;
  close(): Promise<void>;
}

async function openOurs(opts: { dbUrl: string; storeRoot: string; dataRoot: string; masterKey: Buffer; probes?: boolean }): Promise<Ours> {
  const probes = newProbes();
  const db = createDb(opts.dbUrl, { poolSize: 10, connectTimeoutMs: 10_000 });
  const rawStore = createStore(pathToFileURL(opts.storeRoot).href);
  let seal: SealPool | undefined;
  let store = rawStore;
  if (opts.probes) {
    probePool(db.$pool, probes);
    seal = probedSeal(createSealPool({ nice: SEAL_NICE }), probes);
    store = probedStore(rawStore, probes);
  }
  const repo = createRepoService({ db, masterKey: opts.masterKey, primary: store, secondary: null, settings: { packTargetBytes: PACK_TARGET_BYTES, sealNice: SEAL_NICE }, ...(seal && { seal }) });
  const sql = db.$pool;
  const analyzeAfterBackup = (await sql.query<{ autovacuum: string }>('SHOW autovacuum')).rows[0]?.autovacuum !== 'on';

  async function tx(fn: (c: pg.PoolClient) => Promise<void>): Promise<void> {
    const c = await sql.connect();
    try {
      await c.query('BEGIN');
      await fn(c);
      await c.query('COMMIT');
    } catch (err) {
      await c.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      c.release();
    }
  }

  return {
    db,
    repo,
    store,
    probes,
    async newTenant(label, component) {
      const id = randomUUID();
      const clusterId = randomUUID();
      const dataDir = `bench-${id.slice(0, 8)}`;
      await sql.query('INSERT INTO tenants (id, name, data_dir) VALUES ($1, $2, $3)', [id, `bench ${label}`, dataDir]);
      await sql.query(
        `INSERT INTO clusters (id, tenant_id, name, environment, region, backup_location, components) VALUES ($1, $2, $3, 'development', 'bench', 'same-region', $4)`,
        [clusterId, id, label, JSON.stringify([component])],
      );
      return { id, clusterId, dataDir, previous: new Map() };
    },

    /** One backup of one component, as backups.jobs.ts runs it (less the queue and the lease). */
    async backup(t, c) {
      const backupId = randomUUID();
      const started = new Date();
      await tx(async (cl) => {
        await cl.query(`UPDATE clusters SET active_job_id = $1, active_job_kind = 'backup' WHERE id = $2`, [backupId, t.clusterId]);
        await cl.query(`INSERT INTO backups (id, tenant_id, cluster_id, trigger, status, started_at, components) VALUES ($1, $2, $3, 'manual', 'running', $4, $5)`, [
          backupId,
          t.id,
          t.clusterId,
          started,
          JSON.stringify([{ name: c.name, status: 'running' }]),
        ]);
      });
      const cpu0 = THREADS ? threadCpu() : null;
      const t0 = performance.now();
      const writer = await repo.writer({ tenantId: t.id, backupId, clusterId: t.clusterId });
      const prev = c.type === 'directory' ? t.previous.get(c.name) : undefined;
      const source = prev ? await repo.source(t.id) : null;
      let lastProgress = 0;
      const driver = getDriver(c.type);
      const snap = (driver.backup as (cfg: unknown, ctx: unknown) => ReturnType<typeof directoryDriver.backup>)(c.config, {
        dataRoot: benchDataRoot,
        sink: writer,
        previous: prev && source ? () => repo.manifestBytes(source, prev) : null,
        onProgress: (p: { bytes_done: number }) => {
          const now = Date.now();
          if (now - lastProgress < 1000) return;
          lastProgress = now;
          sql.query(`UPDATE backups SET bytes_done = $2, progress = $3 WHERE id = $1 AND status = 'running'`, [backupId, p.bytes_done, JSON.stringify(p)]).catch(() => {});
        },
      });
      const hash = createHash('sha256');
      async function* hashing(): AsyncGenerator<Buffer> {
        for await (const b of snap.manifest) {
          hash.update(b);
          yield b;
        }
      }
      const ref = await writer.writeStream(hashing());
      await writer.flush();
      const sha256 = hash.digest('hex');
      const logical = snap.logicalBytes();
      const finish = new Date();
      const record: SnapshotRecord = {
        format: 'bk-snapshot/v1',
        backup: { id: backupId, tenant_id: t.id, cluster_id: t.clusterId, trigger: 'manual', created_at: started.toISOString(), started_at: started.toISOString(), completed_at: finish.toISOString(), size_bytes: logical, stored_bytes: writer.storedBytes },
        cluster: { id: t.clusterId, name: 'bench', environment: 'development', region: 'bench', backup_location: 'same-region', deletion_protection: false, components: [c], created_at: started.toISOString(), policy: null },
        components: [{ name: c.name, type: c.type, bytes: logical, stored_bytes: writer.storedBytes, sha256, manifest: ref }],
      };
      const key = await writeSnapshot(repo.primary, await repo.repositories.keysOf(t.id), record);
      await tx(async (cl) => {
        await cl.query(`UPDATE backups SET status = 'completed', completed_at = $2, size_bytes = $3, stored_bytes = $4, bytes_done = $3 WHERE id = $1`, [backupId, finish, logical, writer.storedBytes]);
        await cl.query(`UPDATE clusters SET active_job_id = NULL, active_job_kind = NULL, retention_dirty = true WHERE id = $1`, [t.clusterId]);
        await cl.query(
          `INSERT INTO backup_artifacts (id, backup_id, component, type, key, bytes, stored_bytes, sha256, manifest, locations) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
          [randomUUID(), backupId, c.name, c.type, key, logical, writer.storedBytes, sha256, JSON.stringify(ref), JSON.stringify([{ store: 'primary', url: repo.primary.locationOf(key), status: 'present' }])],
        );
      });
      const ms = performance.now() - t0;
      if (cpu0) console.log(`  CPU by thread of this backup (${secs(ms)} s): ${threadCpuLine(cpu0, threadCpu())}`);
      // With autovacuum off on the server (as on the dev box), the repository tables of a fresh
      // database are never analyzed and the reuse lookups get nested-loop plans (80-320 ms per
      // 256 ids instead of ~2 ms): do what autovacuum would, untimed.
      if (analyzeAfterBackup) await sql.query('ANALYZE chunks, packs, backup_chunks');
      const artifact: ComponentArtifact = { component: c.name, type: c.type, sha256, manifest: ref };
      t.previous.set(c.name, artifact);
      return { ms, logical, stored: writer.storedBytes, artifact, chunks: writer.stats.chunks, newChunks: writer.stats.newChunks, packs: writer.stats.packs };
    },

    /** A whole restore of a directory component, as restores.jobs.ts runs it, into DATA_ROOT/targetRel. */
    async restoreDir(t, artifact, targetRel) {
      const t0 = performance.now();
      const source = await repo.source(t.id);
      await directoryDriver.restore({ path: targetRel }, { dataRoot: benchDataRoot, source, manifest: repo.manifestBytes(source, artifact) });
      return performance.now() - t0;
    },

    repoBytes: (t) => duBytes(path.join(opts.storeRoot, 'repos', t.id)),
    async close() {
      await seal?.close();
      await db.$disconnect();
    },
  };
}

/** What the probes saw during `ms` of wall time (busy time: at least one call under way). */
function breakdown(p: Probes, ms: number, elu: number, cpuMs: number, what: 'backup' | 'restore'): string {
  const part = (name: string, b: BusyTimer) => `${name} ${secs(b.busyMs)} s (${pct(b.busyMs, ms)}, ${b.calls} calls)`;
  const parts =
    what === 'backup'
      ? [part('files: read + chunk + hash + seal (pool)', p.files), part('hash ids (pool)', p.hash), part('seal (pool: zstd + AES-GCM)', p.seal), part('pack upload (write + fsync + rename)', p.upload), part('SQL', p.sql)]
      : [part('restore files: read packs + open + write (pool)', p.restoreFiles), part('open (pool: AES-GCM + zstd + MAC)', p.open), part('range reads', p.range), part('SQL', p.sql)];
  return `      where the ${secs(ms)} s went (busy time, overlapping): ${parts.join('; ')}; main thread busy ${(elu * 100).toFixed(0)}% (event-loop utilization); CPU ${secs(cpuMs)} s all threads = ${(cpuMs / ms).toFixed(2)} cores`;
}

/** Runs `fn` with the probes reset, and the event-loop utilization and CPU time measured. */
async function measured<T>(p: Probes, fn: () => Promise<T>): Promise<{ value: T; elu: number; cpuMs: number; wallMs: number }> {
  for (const b of Object.values(p)) b.reset();
  const elu0 = performance.eventLoopUtilization();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const value = await fn();
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return { value, elu: performance.eventLoopUtilization(elu0).utilization, cpuMs: (cpu.user + cpu.system) / 1000, wallMs };
}

// ---------------------------------------------------------------------------------------------
// CPU profile of the main thread (node:inspector), summarized by where the code lives

const CATEGORIES: [RegExp, string][] = [
  [/src\/repo\/chunker\.ts/, 'chunking (FastCDC scan, chunker.ts)'],
  [/src\/repo\/(seal|seal-core|seal-pool)\.|seal-core\.mjs/, 'seal pool client + inline hashing (seal*.ts)'],
  [/src\/repo\/pack\.ts/, 'pack building (sha256 of the pack, trailer)'],
  [/src\/repo\/writer\.ts/, 'writer (batching, dedup bookkeeping)'],
  [/src\/repo\/reader\.ts/, 'reader'],
  [/src\/repo\/manifest\.ts/, 'manifests (JSON lines)'],
  [/src\/repo\/tree-(backup|restore)\.ts/, 'tree walk / materialize'],
  [/src\/storage\//, 'file store (sha256 of each put, writes)'],
  [/node_modules\/(pg|pg-protocol|pg-pool|pg-types)\//, 'pg driver'],
  [/node_modules\/(@prisma|\.prisma)|src\/generated/, 'prisma'],
  [/node_modules\/piscina/, 'piscina (thread pool messaging)'],
  [/^node:/, 'node internals (fs, streams, crypto glue)'],
];

function categorize(fn: string, url: string): string {
  if (fn === '(garbage collector)') return 'garbage collector';
  if (fn === '(idle)') return 'idle (waiting on I/O or the pool)';
  if (fn === '(program)') return 'native / V8 (program)';
  for (const [re, name] of CATEGORIES) if (re.test(url)) return name;
  if (url === '') return `native (${fn || 'anonymous'})`;
  return 'other JS';
}

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number }[];
  samples?: number[];
  timeDeltas?: number[];
}

function summarizeProfile(profile: CpuProfile): string[] {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfMs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) selfMs.set(samples[i]!, (selfMs.get(samples[i]!) ?? 0) + (deltas[i + 1] ?? deltas[i] ?? 0) / 1000);
  const cats = new Map<string, number>();
  const fns = new Map<string, number>();
  let total = 0;
  for (const [id, ms] of selfMs) {
    const n = byId.get(id);
    if (!n) continue;
    const { functionName, url, lineNumber } = n.callFrame;
    total += ms;
    const cat = categorize(functionName, url);
    cats.set(cat, (cats.get(cat) ?? 0) + ms);
    if (!cat.startsWith('idle')) {
      const key = `${functionName || '(anonymous)'} ${url ? `${url.replace(/^file:\/\/.*?\/(src|node_modules|bench)\//, '$1/')}:${lineNumber + 1}` : ''}`.trim();
      fns.set(key, (fns.get(key) ?? 0) + ms);
    }
  }
  const lines = [...cats].filter(([, ms]) => ms >= total / 100).sort((a, b) => b[1] - a[1]).map(([c, ms]) => `        ${pct(ms, total).padStart(4)}  ${secs(ms).padStart(6)} s  ${c}`);
  const top = [...fns].sort((a, b) => b[1] - a[1]).slice(0, 8).map(([f, ms]) => `        ${pct(ms, total).padStart(4)}  ${secs(ms).padStart(6)} s  ${f}`);
  return [`      main thread by category (${secs(total)} s sampled):`, ...lines, '      hottest functions (self time):', ...top];
}

async function profiled<T>(fn: () => Promise<T>): Promise<{ value: T; lines: string[] }> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 500 });
  await session.post('Profiler.start');
  let value: T;
  let profile: CpuProfile;
  try {
    value = await fn();
  } finally {
    profile = ((await session.post('Profiler.stop')) as unknown as { profile: CpuProfile }).profile;
    session.disconnect();
  }
  return { value, lines: summarizeProfile(profile) };
}

// ---------------------------------------------------------------------------------------------
// restic

const resticFlags = 'restic backup -q (defaults: repository format of `restic init`, compression auto, cache in RESTIC_CACHE_DIR)';
let resticCache = '';
const resticEnv = (repo: string): NodeJS.ProcessEnv => ({ ...process.env, RESTIC_PASSWORD: 'bench', RESTIC_REPOSITORY: repo, RESTIC_CACHE_DIR: resticCache });
const resticInit = (repo: string) => sh('restic init -q', { env: resticEnv(repo) });
const resticBackup = (repo: string, dir: string) => sh(`restic backup -q ${q(dir)}`, { env: resticEnv(repo) });

// ---------------------------------------------------------------------------------------------
// comparisons

const results: { name: string; ok: boolean }[] = [];

function compareThroughput(label: string, bytes: number, oursName: string, ours: number[], baseName: string, baseRuns: number[], target: number | null): boolean {
  const o = median(ours);
  const b = median(baseRuns);
  const ratio = b / o;
  const ok = target === null || ratio >= target;
  note(`${label}  [load average now ${load()}]`);
  note(`    ${baseName.padEnd(50)} runs ${runsText(baseRuns)} s -> median ${secs(b)} s, ${mbps(bytes, b)} MB/s`);
  note(`    ${oursName.padEnd(50)} runs ${runsText(ours)} s -> median ${secs(o)} s, ${mbps(bytes, o)} MB/s`);
  note(`    ratio ours/restic throughput ${ratio.toFixed(3)}${target === null ? ' (informative, no target)' : `; target >= ${target} ${verdict(ok)}`}`);
  return ok;
}

// ---------------------------------------------------------------------------------------------
// setup shared by the phases

let benchDataRoot = '';

interface Env {
  base: string;
  dataRoot: string;
  srcRel: string;
  srcDir: string;
  storeRoot: string;
  dbUrl: string;
  masterKey: Buffer;
  ours: Ours;
  restic: boolean;
}

const dirComponent = (rel: string): Component => ({ name: 'files', type: 'directory', config: { path: rel } });

async function sameContents(a: string, b: string): Promise<boolean> {
  return sh(`diff -r -q --no-dereference ${q(a)} ${q(b)} >/dev/null`).then(
    () => true,
    () => false,
  );
}

/** (a), (b), (e) and the profile. */
async function directoryPhase(env: Env, tree: TreeStats): Promise<void> {
  const { ours } = env;
  log(`\n== (a) first and (b) second backup of ${treeText(tree)}, ${ROUNDS} interleaved rounds (load ${load()})`);
  const first: number[] = [];
  const second: number[] = [];
  const rFirst: number[] = [];
  const rSecond: number[] = [];
  let last: { tenant: Tenant; artifact: ComponentArtifact; firstStored: number; firstRepo: number } | undefined;
  let resticRepo = '';
  const details: string[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const runOurs = async () => {
      const tenant = await ours.newTenant(`dir-${round}`, dirComponent(env.srcRel));
      await settle();
      const m1 = await measured(ours.probes, () => ours.backup(tenant, dirComponent(env.srcRel)));
      first.push(m1.value.ms);
      const repo1 = await ours.repoBytes(tenant);
      log(`  round ${round + 1} ours first backup:  ${secs(m1.value.ms)} s (${mbps(tree.bytes, m1.value.ms)} MB/s); stored ${mb(m1.value.stored)} MB (${m1.value.newChunks}/${m1.value.chunks} chunks new, ${m1.value.packs} packs); repo ${mb(repo1)} MB`);
      const d1 = breakdown(ours.probes, m1.wallMs, m1.elu, m1.cpuMs, 'backup');
      log(d1);
      await settle();
      const m2 = await measured(ours.probes, () => ours.backup(tenant, dirComponent(env.srcRel)));
      second.push(m2.value.ms);
      log(`  round ${round + 1} ours second backup: ${secs(m2.value.ms)} s (${mbps(tree.bytes, m2.value.ms)} MB/s); stored ${mb(m2.value.stored)} MB (${m2.value.newChunks}/${m2.value.chunks} chunks new)`);
      const d2 = breakdown(ours.probes, m2.wallMs, m2.elu, m2.cpuMs, 'backup');
      log(d2);
      if (round === ROUNDS - 1) {
        details.push(`    ours, last round, first backup:`, d1, `    ours, last round, second backup:`, d2);
        last = { tenant, artifact: m2.value.artifact, firstStored: m1.value.stored, firstRepo: repo1 };
      }
    };
    const runRestic = async () => {
      if (!env.restic) return;
      const repo = path.join(env.base, `restic-dir-${round}`);
      await resticInit(repo);
      await settle();
      const ms1 = await timeIt(() => resticBackup(repo, env.srcDir));
      rFirst.push(ms1);
      const du = await duBytes(repo);
      log(`  round ${round + 1} restic first backup:  ${secs(ms1)} s (${mbps(tree.bytes, ms1)} MB/s); repo ${mb(du)} MB`);
      await settle();
      const ms2 = await timeIt(() => resticBackup(repo, env.srcDir));
      rSecond.push(ms2);
      log(`  round ${round + 1} restic second backup: ${secs(ms2)} s (${mbps(tree.bytes, ms2)} MB/s)`);
      if (resticRepo) rmSync(resticRepo, { recursive: true, force: true });
      resticRepo = repo;
    };
    if (round % 2 === 0) {
      await runOurs();
      await runRestic();
    } else {
      await runRestic();
      await runOurs();
    }
  }
  if (last) note(`first backup stored ${mb(last.firstStored)} MB (repository on disk ${mb(last.firstRepo)} MB) for ${mb(tree.bytes)} MB of source${resticRepo ? `; restic repository after two backups ${mb(await duBytes(resticRepo))} MB` : ''}`);
  if (env.restic) {
    results.push({ name: '(a) first backup >= 1.0 x restic', ok: compareThroughput('(a) first backup, fresh repository (MB/s of source)', tree.bytes, 'ours: directoryDriver.backup -> repository', first, 'restic backup DIR (fresh repo)', rFirst, 1.0) });
    results.push({ name: '(b) second backup (unchanged tree) >= 1.0 x restic', ok: compareThroughput('(b) second backup, tree unchanged (MB/s of source)', tree.bytes, 'ours: directoryDriver.backup, previous manifest', second, 'restic backup DIR (parent snapshot)', rSecond, 1.0) });
  } else {
    note(`(a) ours first backup median ${secs(median(first))} s; (b) second ${secs(median(second))} s; restic not installed: FAIL (apt-get install restic)`);
    results.push({ name: '(a)/(b) restic not installed', ok: false });
  }
  for (const d of details) note(d);

  if (PROFILE && last) {
    log(`\n== CPU profile of one more first backup (untimed, profiler attached)`);
    const tenant = await ours.newTenant('profile', dirComponent(env.srcRel));
    await settle();
    const { value, lines } = await profiled(() => ours.backup(tenant, dirComponent(env.srcRel)));
    note(`profile of a first backup (${secs(value.ms)} s with the profiler on; main thread only, the seal pool's threads and libuv's zstd are not in it):`);
    for (const l of lines) note(l);
    // (b)'s case: the same tree again, its previous manifest known
    const again = await profiled(() => ours.backup(tenant, dirComponent(env.srcRel)));
    note(`profile of a second backup of the unchanged tree (${secs(again.value.ms)} s with the profiler on; main thread only):`);
    for (const l of again.lines) note(l);
  }

  if (!last) return;
  log(`\n== (e) full restore of the tree, ${ROUNDS} interleaved rounds (load ${load()})`);
  // Every restore (timed or not) goes into a target of its own, never used before, and the
  // targets are deleted only after the phase: on ext4 without a journal (this machine's root
  // file system) the inodes of a tree deleted within the last 60-300 s are skipped, one by one,
  // when new ones are allocated (ext4 recently_deleted()), so a restore run right after another
  // tree of 26k files was deleted pays for that deletion (measured: ours 7.5 s into a clean
  // file system, 16.5-23.5 s in later rounds right after restic's and our previous targets were
  // deleted). The untimed `restore + sync` runs of (e2) would fall on whoever comes next.
  const targets: string[] = [];
  const target = (name: string, round: number) => {
    const rel = `restore-${name}-${round + 1}`;
    targets.push(path.join(name === 'ours' ? env.dataRoot : env.base, rel));
    return { rel, abs: targets[targets.length - 1]! };
  };
  const oursR: number[] = [];
  const resticR: number[] = [];
  const resticRSync: number[] = [];
  let oursOk = false;
  let resticOk = false;
  let restoreDetail = '';
  for (let round = 0; round < ROUNDS; round++) {
    const lastRound = round === ROUNDS - 1;
    const runOurs = async () => {
      const t = target('ours', round);
      await settle();
      const m = await measured(ours.probes, () => ours.restoreDir(last!.tenant, last!.artifact, t.rel));
      oursR.push(m.value);
      log(`  round ${round + 1} ours restore (fsynced, then swapped in): ${secs(m.value)} s (${mbps(tree.bytes, m.value)} MB/s)`);
      restoreDetail = breakdown(ours.probes, m.wallMs, m.elu, m.cpuMs, 'restore');
      log(restoreDetail);
      if (lastRound) oursOk = sameTree(walk(t.abs), tree) && (await sameContents(env.srcDir, t.abs));
    };
    const runRestic = async () => {
      if (!env.restic) return;
      const t = target('restic', round);
      await settle();
      const ms = await timeIt(() => sh(`restic restore latest -q --target ${q(t.abs)}`, { env: resticEnv(resticRepo) }));
      resticR.push(ms);
      log(`  round ${round + 1} restic restore: ${secs(ms)} s (${mbps(tree.bytes, ms)} MB/s)`);
      if (lastRound) resticOk = sameTree(walk(path.join(t.abs, env.srcDir)), tree);
      const ts = target('restic-sync', round);
      await settle();
      const msSync = await timeIt(() => sh(`restic restore latest -q --target ${q(ts.abs)} && sync --file-system ${q(ts.abs)}`, { env: resticEnv(resticRepo) }));
      resticRSync.push(msSync);
      log(`  round ${round + 1} restic restore + sync -f: ${secs(msSync)} s (${mbps(tree.bytes, msSync)} MB/s)`);
    };
    if (round % 2 === 0) {
      await runOurs();
      await runRestic();
    } else {
      await runRestic();
      await runOurs();
    }
  }
  note(`restored trees (last round): ours ${oursOk ? 'identical to the source (diff -r)' : 'MISMATCH'}; restic ${env.restic ? (resticOk ? 'same files and bytes' : 'MISMATCH') : 'n/a'}`);
  if (env.restic) {
    const ok = compareThroughput('(e) full restore (MB/s of source)', tree.bytes, 'ours: directoryDriver.restore (durable, swapped)', oursR, 'restic restore latest --target DIR', resticR, 1.0);
    results.push({ name: '(e) full restore >= 1.0 x restic restore', ok: ok && oursOk });
    compareThroughput('(e2) full restore vs a durable restic restore', tree.bytes, 'ours: directoryDriver.restore (durable, swapped)', oursR, 'restic restore ... && sync --file-system DIR', resticRSync, null);
  } else {
    results.push({ name: '(e) restic not installed', ok: false });
  }
  note(`    ours, last round, restore:`);
  note(restoreDetail);
  if (PROFILE) {
    const t = target('ours', ROUNDS);
    const { value, lines } = await profiled(() => ours.restoreDir(last!.tenant, last!.artifact, t.rel));
    note(`profile of a full restore (${secs(value)} s with the profiler on; main thread only):`);
    for (const l of lines) note(l);
  }
  for (const t of targets) rmSync(t, { recursive: true, force: true });
  if (resticRepo) rmSync(resticRepo, { recursive: true, force: true });
}

/** (c): ten backups with ~2% of the files changed between each. */
async function incrementalPhase(env: Env): Promise<void> {
  const { ours } = env;
  log(`\n== (c) ${INCR_BACKUPS} backups, ~${INCR_CHANGED * 100}% of the files changed between each (load ${load()})`);
  const tenant = await ours.newTenant('incr', dirComponent(env.srcRel));
  const repo = path.join(env.base, 'restic-incr');
  if (env.restic) await resticInit(repo);
  const files = listFiles(env.srcDir);
  const rng = new Rng(4242);
  const pool = makeTextPool(new Rng(99));
  const oursMs: number[] = [];
  const resticMs: number[] = [];
  let oursFirst = 0;
  let resticFirst = 0;
  let oursAfter = 0;
  let resticAfter = 0;
  let storedSum = 0;
  for (let i = 0; i < INCR_BACKUPS; i++) {
    let change = '';
    if (i > 0) {
      const m = mutateTree(files, INCR_CHANGED, rng, pool);
      for (const f of files) f.size = lstatSync(f.path).size;
      change = `after changing ${m.files} files (${mb(m.bytes)} MB written)`;
    }
    const runOurs = async () => {
      await settle();
      const r = await ours.backup(tenant, dirComponent(env.srcRel));
      oursMs.push(r.ms);
      storedSum += r.stored;
      oursAfter = await ours.repoBytes(tenant);
      if (i === 0) oursFirst = oursAfter;
      return `ours ${secs(r.ms)} s, +${mb(r.stored)} MB (${r.newChunks}/${r.chunks} chunks new), repo ${mb(oursAfter)} MB`;
    };
    const runRestic = async () => {
      if (!env.restic) return 'restic n/a';
      await settle();
      const ms = await timeIt(() => resticBackup(repo, env.srcDir));
      resticMs.push(ms);
      resticAfter = await duBytes(repo);
      if (i === 0) resticFirst = resticAfter;
      return `restic ${secs(ms)} s, repo ${mb(resticAfter)} MB`;
    };
    const a = i % 2 === 0 ? [await runOurs(), await runRestic()] : [await runRestic(), await runOurs()].reverse();
    log(`  backup ${i + 1}${change ? ` ${change}` : ''}: ${a.join('; ')}`);
  }
  const growth = oursAfter / oursFirst;
  note(`(c) ${INCR_BACKUPS} backups, ${INCR_CHANGED * 100}% of ${files.length} files changed between each:`);
  note(`    ours: repository after the first ${mb(oursFirst)} MB, after ${INCR_BACKUPS} ${mb(oursAfter)} MB (sum of stored_bytes ${mb(storedSum)} MB); backups took ${runsText(oursMs)} s`);
  if (env.restic) note(`    restic: repository after the first ${mb(resticFirst)} MB, after ${INCR_BACKUPS} ${mb(resticAfter)} MB (du -sb); backups took ${runsText(resticMs)} s`);
  const ok1 = growth <= 1.3;
  note(`    ours after ${INCR_BACKUPS} / ours after the first: ${growth.toFixed(3)}; target <= 1.3 ${verdict(ok1)}`);
  results.push({ name: '(c) ten backups: stored <= 1.3 x first', ok: ok1 });
  if (env.restic) {
    const vs = oursAfter / resticAfter;
    const ok2 = vs <= 1.1;
    note(`    ours / restic repository after ${INCR_BACKUPS}: ${vs.toFixed(3)}; target <= 1.1 ${verdict(ok2)} (ours' index is in PostgreSQL, not counted; restic's index files are)`);
    results.push({ name: '(c) ten backups: stored <= 1.1 x restic', ok: ok2 });
  }
  rmSync(repo, { recursive: true, force: true });
}

/** The tenants' PostgreSQL server for (d): the tests' second cluster when it starts, else the service's own. */
async function sourceServer(): Promise<{ url: string; label: string }> {
  if (PG_SERVER !== 'same') {
    const script = path.join(PROJECT_ROOT, 'test', 'tenant-pg.sh');
    try {
      const url = (await sh(`bash ${q(script)}`)).trim().split('\n').pop()!.trim();
      if (/^postgres(ql)?:\/\//.test(url)) return { url: url.replace(/\/$/, ''), label: `a second cluster (test/tenant-pg.sh: ${url})` };
    } catch (err) {
      log(`  test/tenant-pg.sh did not start a second cluster (${String(err).slice(0, 200)}); using the service's own server`);
    }
  }
  const u = new URL(DATABASE_URL);
  u.pathname = '';
  return { url: u.href.replace(/\/$/, ''), label: `the service's own server (${u.host})` };
}

/** (d): five backups of a pgbench database, ~1% of the rows updated between each. */
async function postgresPhase(env: Env): Promise<void> {
  const { ours } = env;
  const server = await sourceServer();
  const name = `bk_bench_pgbench_${randomBytes(4).toString('hex')}`;
  const dbUrl = `${server.url}/${name}`;
  const admin = new pg.Client({ connectionString: `${server.url}/postgres` });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  cleanups.push(async () => {
    const c = new pg.Client({ connectionString: `${server.url}/postgres` });
    await c.connect();
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await c.end();
  });
  await admin.end();
  const scale = Math.max(1, Math.round(PG_MB / 15));
  log(`\n== (d) pgbench -i -s ${scale} on ${server.label}, 1% of rows updated between backups (${PG_PATTERN}) (load ${load()})`);
  const u = new URL(dbUrl);
  const libpq: NodeJS.ProcessEnv = { ...process.env, PGHOST: u.hostname, PGPORT: u.port || '5432', PGUSER: decodeURIComponent(u.username || 'postgres'), PGDATABASE: name };
  const t0 = performance.now();
  await sh(`pgbench -i -q -s ${scale} ${q(name)}`, { env: libpq });
  const c = new pg.Client({ connectionString: dbUrl });
  await c.connect();
  const size = async () => Number((await c.query<{ s: string }>('SELECT pg_database_size(current_database()) AS s')).rows[0]!.s);
  const dbBytes = await size();
  note(`(d) pgbench database: scale ${scale}, ${mb(dbBytes)} MB (pg_database_size) on ${server.label}, built in ${secs(performance.now() - t0)} s`);
  const component: Component = { name: 'db', type: 'postgres', config: { url: dbUrl } };
  const tenant = await ours.newTenant('pgbench', component);
  const repo = path.join(env.base, 'restic-pg');
  if (env.restic) await resticInit(repo);
  let oursFirst = 0;
  let oursAfter = 0;
  let resticFirst = 0;
  let resticAfter = 0;
  const rows: string[] = [];
  for (let i = 0; i < PG_BACKUPS; i++) {
    let change = '';
    if (i > 0) {
      // BENCH_PG_PATTERN=range (default): 1% of the accounts, one aid range (the rows a workload
      // keeps touching, e.g. recent ones); =spread: every 100th row, which changes every ~1 MiB
      // chunk of the dump, so no chunk-level deduplication (restic's included) can keep it small.
      const n = scale * 100_000;
      const sql =
        PG_PATTERN === 'spread'
          ? `UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 100 = ${i}`
          : `UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid > ${Math.floor((n * i) / 7)} AND aid <= ${Math.floor((n * i) / 7) + Math.floor(n / 100)}`;
      const r = await c.query(sql);
      change = ` after updating ${r.rowCount} rows`;
    }
    await settle();
    const r = await ours.backup(tenant, component);
    oursAfter = await ours.repoBytes(tenant);
    if (i === 0) oursFirst = oursAfter;
    let rs = 'restic n/a';
    if (env.restic) {
      const ms = await timeIt(() => sh(`set -o pipefail; pg_dump -Fc -Z0 ${q(name)} | restic backup -q --stdin --stdin-filename ${name}.pgdump`, { env: { ...libpq, ...resticEnv(repo) } }));
      resticAfter = await duBytes(repo);
      if (i === 0) resticFirst = resticAfter;
      rs = `restic --stdin of the same pg_dump -Fc -Z0 ${secs(ms)} s, repo ${mb(resticAfter)} MB`;
    }
    const line = `  backup ${i + 1}${change}: ours ${secs(r.ms)} s (${mbps(dbBytes, r.ms)} MB/s of the database), dump ${mb(r.logical)} MB, +${mb(r.stored)} MB (${r.newChunks}/${r.chunks} chunks new), repo ${mb(oursAfter)} MB; ${rs}`;
    log(line);
    rows.push(line);
  }
  await c.end();
  const growth = oursAfter / oursFirst;
  const ok = growth <= 1.6;
  note(`    ours: repository after the first ${mb(oursFirst)} MB, after ${PG_BACKUPS} ${mb(oursAfter)} MB: ${growth.toFixed(3)} x; target <= 1.6 ${verdict(ok)}`);
  if (env.restic) note(`    restic (context, no target): after the first ${mb(resticFirst)} MB, after ${PG_BACKUPS} ${mb(resticAfter)} MB: ${(resticAfter / resticFirst).toFixed(3)} x`);
  results.push({ name: '(d) five pgbench backups: stored <= 1.6 x first', ok });
  rmSync(repo, { recursive: true, force: true });
}

/** (f): a child process that only backs up, then one that only restores, a ~BENCH_MEM_MB tree. */
async function memoryPhase(env: Env, tree: TreeStats): Promise<void> {
  log(`\n== (f) memory: backup and restore of a ~${MEM_MB} MiB tree, each in a child process run as npm start runs the service (built to plain JavaScript; ${[...Object.entries(START_ENV).map(([k, v]) => `${k}=${v}`), ...START_FLAGS].join(' ') || 'no flags'}) (load ${load()})`);
  const current = walk(env.srcDir);
  const extraBytes = Math.max(0, Math.floor(MEM_MB * MiB) - current.bytes);
  let memTree = current;
  if (extraBytes > 0) {
    const rng = new Rng(777);
    mkdirSync(path.join(env.srcDir, 'extra'), { recursive: true });
    writeGenerated(path.join(env.srcDir, 'extra', 'big-mixed.bin'), extraBytes, 'mixed', makeTextPool(rng), rng, Buffer.allocUnsafeSlow(8 * MiB));
    memTree = walk(env.srcDir);
    log(`  added extra/big-mixed.bin (${mb(extraBytes)} MB, alternating 8 MiB text / random)`);
  }
  void tree;
  const tenant = await env.ours.newTenant('mem', dirComponent(env.srcRel));
  const config = { dbUrl: env.dbUrl, storeRoot: env.storeRoot, dataRoot: env.dataRoot, masterKey: env.masterKey.toString('hex'), tenantId: tenant.id, clusterId: tenant.clusterId, srcRel: env.srcRel };
  await settle();
  const b = await runChild('mem-backup', config);
  await settle();
  const r = await runChild('mem-restore', { ...config, artifact: b.artifact, targetRel: 'restore-mem' });
  const restored = walk(path.join(env.dataRoot, 'restore-mem'));
  const match = sameTree(restored, memTree);
  note(`(f) memory: ${treeText(memTree)}; restored tree ${match ? 'matches' : `MISMATCH (${treeText(restored)})`}`);
  const line = (what: string, m: ChildResult) => {
    const ok = m.maxRss < RSS_LIMIT;
    note(`    ${what.padEnd(8)} ${secs(m.ms)} s (${mbps(memTree.bytes, m.ms)} MB/s); child maxRSS ${mb(m.maxRss)} MB (RSS after loading the service ${mb(m.startRss)} MB; at the sampled peak (50 ms) RSS ${mb(m.peakRss)} MB = V8 heap ${mb(m.heap)} MB + external ${mb(m.external)} MB (Buffers ${mb(m.arrayBuffers)} MB) + the rest (code, thread stacks and heaps, native allocations)); target < ${mb(RSS_LIMIT)} MB ${verdict(ok)}`);
    return ok;
  };
  results.push({ name: '(f) backup of 2 GiB: maxRSS < 300 MB', ok: line('backup', b) });
  results.push({ name: '(f) restore of 2 GiB: maxRSS < 300 MB', ok: line('restore', r) && match });
  rmSync(path.join(env.dataRoot, 'restore-mem'), { recursive: true, force: true });
  rmSync(path.join(env.srcDir, 'extra'), { recursive: true, force: true });
}

interface ChildResult {
  ms: number;
  maxRss: number;
  startRss: number;
  peakRss: number;
  heap: number;
  external: number;
  arrayBuffers: number;
  artifact?: ComponentArtifact;
}

/** `npm start` (package.json): its environment defaults (`NAME=${NAME:-value}`) and node flags, so that the children run as the service does. */
const START_SCRIPT: string = (JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start;
const START_FLAGS: string[] = START_SCRIPT.match(/--[a-z][a-z-]*(?:=\S+)?/g) ?? [];
const START_ENV: Record<string, string> = Object.fromEntries([...START_SCRIPT.matchAll(/([A-Z_]+)=\$\{\1:-([^}]*)\}/g)].map((m) => [m[1]!, m[2]!]));

/**
 * Each child runs this file built as `npm start` builds the service (scripts/build-service.mjs:
 * plain JavaScript under dist/, no tsx module hooks and their thread), with npm start's flags.
 */
async function childScript(): Promise<string> {
  const { buildService } = (await import(pathToFileURL(path.join(PROJECT_ROOT, 'scripts', 'build-service.mjs')).href)) as { buildService: (o: { dirs: string[] }) => Promise<string[]> };
  await buildService({ dirs: ['src', 'bench', 'test/helpers'] });
  return path.join(PROJECT_ROOT, 'dist', 'bench', 'backup.js');
}

async function runChild(mode: string, config: Record<string, unknown>): Promise<ChildResult> {
  const script = await childScript();
  return new Promise((resolve, reject) => {
    const perf = process.env.BENCH_CHILD_PERF && mode.includes(process.env.BENCH_CHILD_PERF);
    const argv = [...START_FLAGS, ...(perf ? ['--perf-basic-prof'] : []), script];
    const child = spawn(perf ? 'perf' : process.execPath, perf ? ['record', '-F', '499', '-g', '-o', `/tmp/${mode}.perf`, '--', process.execPath, ...argv] : argv, {
      // as `npm start` and the Dockerfile run the service
      env: { ...START_ENV, ...process.env, BENCH_CHILD: mode, BENCH_CHILD_CONFIG: JSON.stringify(config) },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.once('error', reject);
    child.once('close', (code) => {
      if (process.env.BENCH_CHILD_OUT) writeFileSync(`/tmp/${mode}.out`, out);
      const m = /BENCH_CHILD_RESULT (.*)/.exec(out);
      if (code === 0 && m) resolve(JSON.parse(m[1]!) as ChildResult);
      else reject(new Error(`child ${mode} exited ${code}: ${out.slice(-2000)}`));
    });
  });
}

/** RssAnon, RssFile and RssShmem of /proc/self/status (Linux), as one line. */
function procStatus(): string {
  try {
    const t = readFileSync('/proc/self/status', 'utf8');
    return ['RssAnon', 'RssFile', 'RssShmem', 'Threads'].map((k) => `${k} ${new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(t)?.[1] ?? '?'}${k === 'Threads' ? '' : ' kB'}`).join(', ');
  } catch {
    return '/proc/self/status unreadable';
  }
}

/** The child's whole job: one backup or one restore, then its max RSS. */
async function childMain(mode: string): Promise<void> {
  const cfg = JSON.parse(process.env.BENCH_CHILD_CONFIG ?? '{}') as { dbUrl: string; storeRoot: string; dataRoot: string; masterKey: string; tenantId: string; clusterId: string; srcRel: string; artifact?: ComponentArtifact; targetRel?: string };
  benchDataRoot = cfg.dataRoot;
  const ours = await openOurs({ dbUrl: cfg.dbUrl, storeRoot: cfg.storeRoot, dataRoot: cfg.dataRoot, masterKey: Buffer.from(cfg.masterKey, 'hex') });
  const startRss = process.memoryUsage().rss;
  let atPeak = process.memoryUsage();
  let peakStatus = procStatus();
  let peakSpaces = v8.getHeapSpaceStatistics();
  let snapped = false;
  let peakSmaps = '';
  const timeline: string[] = [];
  const t0 = performance.now();
  let lastLine = -1;
  const sampler = setInterval(async () => {
    const m = process.memoryUsage();
    const second = Math.floor((performance.now() - t0) / 1000);
    if (process.env.BENCH_TIMELINE && second !== lastLine) {
      lastLine = second;
      timeline.push(`${second}s rss ${mb(m.rss)} heap ${mb(m.heapUsed)} ext ${mb(m.external)}`);
    }
    if (m.rss > atPeak.rss) {
      atPeak = m;
      peakStatus = procStatus();
      peakSpaces = v8.getHeapSpaceStatistics();
      if (process.env.BENCH_SMAPS) peakSmaps = readFileSync('/proc/self/smaps', 'utf8');
    }
    if (process.env.BENCH_GCPROBE && !snapped && m.heapUsed > Number(process.env.BENCH_GCPROBE) * 1e6) {
      snapped = true;
      v8.setFlagsFromString('--expose-gc');
      const gc = (await import('node:vm')).runInNewContext('gc') as () => void;
      const before = m.heapUsed;
      gc();
      console.error(`GCPROBE heapUsed ${mb(before)} -> ${mb(process.memoryUsage().heapUsed)} MB`);
    }
    if (process.env.BENCH_HEAPSNAP && !snapped && v8.getHeapStatistics().used_heap_size > Number(process.env.BENCH_HEAPSNAP) * 1e6) {
      snapped = true;
      console.error('heap snapshot', v8.writeHeapSnapshot('/tmp/child.heapsnapshot'));
    }
  }, 50);
  const tenant: Tenant = { id: cfg.tenantId, clusterId: cfg.clusterId, dataDir: '', previous: new Map() };
  let hp: Session | null = null;
  if (process.env.BENCH_HEAPPROF) {
    hp = new Session();
    hp.connect();
    await hp.post('HeapProfiler.startSampling', { samplingInterval: 65536, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: process.env.BENCH_HEAPPROF !== 'promoted' } as never);
  }
  let ms: number;
  let artifact: ComponentArtifact | undefined;
  if (mode === 'mem-backup') {
    const r = await ours.backup(tenant, dirComponent(cfg.srcRel));
    ms = r.ms;
    artifact = r.artifact;
  } else {
    ms = await ours.restoreDir(tenant, cfg.artifact!, cfg.targetRel!);
  }
  clearInterval(sampler);
  if (hp) {
    const { profile } = await hp.post('HeapProfiler.stopSampling');
    writeFileSync(`/tmp/${mode}.heapprofile`, JSON.stringify(profile));
  }
  const mem = atPeak;
  const maxRss = process.resourceUsage().maxRSS * 1024;
  await ours.close();
  if (peakSmaps) writeFileSync(`/tmp/${mode}.smaps`, peakSmaps);
  if (timeline.length) console.error(`  ${mode} timeline (RSS, V8 heap used, external; MB): ${timeline.join(' | ')}`);
  console.error(`  ${mode} at the sampled peak: ${peakStatus}; V8 spaces (committed/used MB): ${peakSpaces.map((x) => `${x.space_name.replace('_space', '')} ${mb(x.physical_space_size)}/${mb(x.space_used_size)}`).join(', ')}`);
  console.log(`BENCH_CHILD_RESULT ${JSON.stringify({ ms, maxRss, startRss, peakRss: mem.rss, heap: mem.heapTotal, external: mem.external, arrayBuffers: mem.arrayBuffers, artifact })}`);
}

// ---------------------------------------------------------------------------------------------
// main

const cleanups: (() => Promise<void>)[] = [];

async function main(): Promise<void> {
  const started = performance.now();
  const base = mkdtempSync(path.join(process.env.BENCH_TMPDIR ?? os.tmpdir(), 'bk-bench-backup-'));
  const dataRoot = path.join(base, 'data');
  const srcRel = 'src';
  const srcDir = path.join(dataRoot, srcRel);
  const storeRoot = path.join(base, 'store');
  benchDataRoot = dataRoot;
  resticCache = path.join(base, 'restic-cache');
  mkdirSync(srcDir, { recursive: true });
  mkdirSync(storeRoot, { recursive: true });
  let cleanedUp = false;
  const cleanup = async () => {
    if (cleanedUp) return;
    cleanedUp = true;
    for (const fn of cleanups.reverse()) await fn().catch((err) => console.error(`cleanup: ${String(err)}`));
    rmSync(base, { recursive: true, force: true, maxRetries: 3 });
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      console.error(`\n${sig}: cleaning up ${base} and the bench databases`);
      void cleanup().finally(() => process.exit(130));
    });
  }
  let crashed: unknown;
  try {
    log(`bench:backup  ${os.cpus().length} cpus, ${mb(os.totalmem())} MB RAM, node ${process.version}, load average ${load()}`);
    log(`BENCH_DIR_MB=${DIR_MB} BENCH_MEM_MB=${MEM_MB} BENCH_PG_MB=${PG_MB} BENCH_ROUNDS=${ROUNDS} BENCH_ONLY=${[...ONLY].join(',')}; temp dir ${base}`);
    log('throughput is MB/s (10^6 bytes) of SOURCE data; ratio = ours / restic throughput, medians of runs interleaved in this process');
    const restic = await hasCommand('restic');
    if (restic) note(`restic: ${(await sh('restic version')).trim()}; ${resticFlags}; RESTIC_PASSWORD set; a fresh repository (restic init, untimed) for every round`);
    else note('restic not installed (apt-get install restic): every comparison with it FAILs');
    const db = await benchDatabase('backup');
    cleanups.push(() => db.drop());
    const masterKey = randomBytes(32);
    const ours = await openOurs({ dbUrl: db.url, storeRoot, dataRoot, masterKey, probes: true });
    cleanups.push(() => ours.close());
    note(`server autovacuum: ${(await ours.db.$pool.query<{ autovacuum: string }>('SHOW autovacuum')).rows[0]?.autovacuum}${(await ours.db.$pool.query<{ autovacuum: string }>('SHOW autovacuum')).rows[0]?.autovacuum === 'on' ? '' : ' -> ANALYZE chunks, packs, backup_chunks after each of our backups (untimed), as autovacuum would'}`);
    note(`ours: service database ${db.name} (fresh, migrated), file store ${storeRoot}, packs of ${PACK_TARGET_BYTES / MiB} MiB, seal pool of ${os.availableParallelism()} threads, SEAL_NICE ${SEAL_NICE}, UV_THREADPOOL_SIZE ${process.env.UV_THREADPOOL_SIZE ?? '4 (default)'}`);
    const env: Env = { base, dataRoot, srcRel, srcDir, storeRoot, dbUrl: db.url, masterKey, ours, restic };

    const t0 = performance.now();
    const tree = generateTree(srcDir, DIR_MB);
    await settle();
    note(`source tree: ${treeText(tree)} in ${tree.dirs} directories, generated in ${secs(performance.now() - t0)} s`);
    if (ONLY.has('dir')) await directoryPhase(env, tree);
    if (ONLY.has('incr')) await incrementalPhase(env);
    if (ONLY.has('pg')) await postgresPhase(env);
    if (ONLY.has('mem')) await memoryPhase(env, tree);
    // (g), (h): a database backup against the source's own dump tool, same server, same run.
    // Each timed run is a first backup into a fresh repository (every chunk new: compressed,
    // encrypted, packed, recorded); a second backup of the unchanged data follows, untimed by the
    // phase, and is printed for context (the nightly case: chunks known, nothing stored).
    const runOurs = async (component: Component) => {
      const tenant = await ours.newTenant(`${component.type} ${randomUUID().slice(0, 8)}`, component);
      const m = await measured(ours.probes, () => ours.backup(tenant, component));
      const first = m.value;
      const line = breakdown(ours.probes, m.wallMs, m.elu, m.cpuMs, 'backup');
      const profile = PROFILE ? await profiled(() => ours.backup(tenant, component)) : null;
      const again = profile ? profile.value : await ours.backup(tenant, component);
      if (profile) log(`  CPU profile of the main thread during the repeat backup:\n${profile.lines.join('\n')}`);
      log(`  ours: first backup ${secs(first.ms)} s (${mbps(first.logical, first.ms)} MB/s, +${mb(first.stored)} MB stored); again, data unchanged, ${secs(again.ms)} s (${mbps(again.logical, again.ms)} MB/s, +${mb(again.stored)} MB)\n${line}`);
      return { ms: first.ms, logical: first.logical };
    };
    if (ONLY.has('redis')) {
      log(`\n== (g) redis backup of ~${REDIS_MB} MB (load ${load()})`);
      const r = await redisBenchPhase({ sizeMB: REDIS_MB, rounds: ROUNDS, log, note, runOurs });
      results.push({ name: `(g) redis backup >= 0.9 x redis-cli --rdb (${r.ratio.toFixed(2)})`, ok: r.ok });
    }
    if (ONLY.has('mysql')) {
      log(`\n== (h) mysql backup of ~${MYSQL_MB} MB (load ${load()})`);
      const r = await mysqlBenchPhase({ sizeMB: MYSQL_MB, rounds: ROUNDS, log, note, runOurs });
      results.push({ name: `(h) mysql backup >= 0.9 x mariadb-dump (${r.ratio.toFixed(2)})`, ok: r.ok });
    }
  } catch (err) {
    crashed = err;
    console.error('\nbench:backup failed:', err);
  } finally {
    await cleanup().catch((err) => console.error('cleanup failed:', err));
  }
  console.log(`\n==================== bench:backup summary ====================`);
  console.log(`machine: ${os.cpus().length} cpus, node ${process.version}; load average at end ${load()}; total ${secs(performance.now() - started)} s`);
  for (const line of summary) console.log(line);
  console.log('--------------------------------------------------------------');
  for (const r of results) console.log(`${verdict(r.ok)}  ${r.name}`);
  if (crashed) console.log(`FAIL  the benchmark did not complete: ${crashed instanceof Error ? crashed.message : String(crashed)}`);
  console.log('(exit code is 0 whatever the verdicts: this is a benchmark; temp files and databases were removed)');
}

const childMode = process.env.BENCH_CHILD;
if (childMode) {
  await childMain(childMode);
  process.exit(0);
} else {
  await main();
  process.exit(0);
}
