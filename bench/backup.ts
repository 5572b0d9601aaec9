/**
 * Backup / restore throughput and memory benchmark (`npm run bench:backup`). Prints, measured in
 * this run on the same data, with baselines interleaved with ours:
 *  (1) directory backup of a ~1 GiB mixed tree: directoryDriver.backup -> file store, against
 *      `tar -czf - DIR | sha256sum` (target ratio >= 0.9) and against `restic backup` (informative);
 *  (2) directory restore: directoryDriver.restore from the store, against `tar -xzf ARCHIVE -C DIR`
 *      of the same archive (target >= 0.9); `tar -x` + syncfs (durable, like ours) and `restic restore` are informative;
 *  (3) postgres backup of a ~1 GB database: postgresDriver.backup -> file store, against
 *      `pg_dump -Fc > /dev/null` (target >= 0.9);
 *  (4) postgres restore: postgresDriver.restore into a fresh database, against
 *      `pg_restore -d fresh FILE` of the same dump (target >= 0.9);
 *  (5) peak RSS of this Node process while backing up and restoring a ~2 GiB tree (target < 300 MB).
 * Exit code is 0 even when a target is missed: read the PASS/FAIL lines.
 *
 * Environment: BENCH_DIR_MB (MiB, default 1024), BENCH_MEM_MB (MiB, default 2048), BENCH_PG_MB
 * (MB, default 1024), BENCH_ROUNDS (default 3), BENCH_ONLY (comma list of dir,pg,mem; default all),
 * BENCH_TMPDIR (default os.tmpdir()), DATABASE_URL (admin connection; default in support.ts).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { directoryDriver, postgresDriver } from '../src/components/index.js';
import { createStore } from '../src/storage/index.js';
import { DATABASE_URL, median, timeIt, verdict } from './support.js';

const MiB = 1024 * 1024;
const DIR_MB = Number(process.env.BENCH_DIR_MB ?? 1024);
const MEM_MB = Number(process.env.BENCH_MEM_MB ?? 2048);
const PG_MB = Number(process.env.BENCH_PG_MB ?? 1024);
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 3));
const ONLY = new Set((process.env.BENCH_ONLY ?? 'dir,pg,mem').split(',').map((s) => s.trim()).filter(Boolean));
const TARGET_RATIO = 0.9;
const RSS_LIMIT = 300 * 1e6;

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

/** Runs `bash -c cmd`; rejects with the stderr tail on a non-zero exit. */
function sh(cmd: string, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', cmd], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-4000)));
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`\`${cmd}\` exited ${code}: ${err.trim()}`))));
  });
}

async function hasCommand(name: string): Promise<boolean> {
  return sh(`command -v ${name}`).then(
    () => true,
    () => false,
  );
}

/** Flushes dirty pages before a timed run, so no run pays for the previous one's writeback. */
const settle = () => sh('sync');

// ---------------------------------------------------------------------------------------------
// memory sampling

function descendants(pid: number): number[] {
  const found: number[] = [];
  const stack = [pid];
  while (stack.length > 0) {
    const p = stack.pop() as number;
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${p}/task`);
    } catch {
      continue;
    }
    for (const t of tasks) {
      try {
        for (const k of readFileSync(`/proc/${p}/task/${t}/children`, 'utf8').split(' ')) {
          if (k.trim()) {
            found.push(Number(k));
            stack.push(Number(k));
          }
        }
      } catch {
        // task gone or no CONFIG_PROC_CHILDREN
      }
    }
  }
  return found;
}

function statusField(pid: number | 'self', field: string): number {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

function commOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

interface MemoryReport {
  peak: number;
  /** Kernel high-water mark since the sampler started (catches spikes between samples); 0 if unavailable. */
  hwm: number;
  childPeak: number;
  samples: number;
  start: number;
  /** V8 heap and Buffer memory at the sampled peak, to tell where the RSS went. */
  heapTotal: number;
  arrayBuffers: number;
}

/** Samples this process's RSS (and the summed RSS of its child processes) every 100 ms. */
function startRssSampler(): { stop(): MemoryReport } {
  let hwmReset = false;
  try {
    writeFileSync('/proc/self/clear_refs', '5'); // resets VmHWM to the current RSS
    hwmReset = true;
  } catch {
    // not Linux, or not permitted
  }
  const start = process.memoryUsage().rss;
  let peak = start;
  let atPeak = process.memoryUsage();
  let childPeak = 0;
  let samples = 0;
  const sample = () => {
    samples++;
    const m = process.memoryUsage();
    if (m.rss > peak) {
      peak = m.rss;
      atPeak = m;
    }
    let children = 0;
    for (const pid of descendants(process.pid)) {
      if (commOf(pid) !== 'esbuild') children += statusField(pid, 'VmRSS'); // tsx's long-lived esbuild service is not ours
    }
    childPeak = Math.max(childPeak, children);
  };
  const timer = setInterval(sample, 100);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return { peak, hwm: hwmReset ? statusField('self', 'VmHWM') : 0, childPeak, samples, start, heapTotal: atPeak.heapTotal, arrayBuffers: atPeak.arrayBuffers };
    },
  };
}

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
// setup and cleanup

const base = mkdtempSync(path.join(process.env.BENCH_TMPDIR ?? os.tmpdir(), 'bk-bench-backup-'));
const dataRoot = path.join(base, 'data'); // DATA_ROOT of the directory driver
const srcRel = 'src';
const srcDir = path.join(dataRoot, srcRel);
const storeRoot = path.join(base, 'store');
mkdirSync(srcDir, { recursive: true });
mkdirSync(storeRoot, { recursive: true });
const store = createStore(pathToFileURL(storeRoot).href);
const ctx = { dataRoot };
const storePath = (key: string) => path.join(storeRoot, ...key.split('/'));

const admin = new URL(DATABASE_URL);
admin.pathname = '/postgres';
const pgTag = `bk_bench_backup_${randomBytes(4).toString('hex')}`;
const createdDatabases = new Set<string>();
const dbUrl = (name: string) => {
  const u = new URL(DATABASE_URL);
  u.pathname = `/${name}`;
  return u.href;
};
async function adminQuery(sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: admin.href });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}
async function createDatabase(name: string): Promise<void> {
  createdDatabases.add(name);
  await adminQuery(`CREATE DATABASE ${name}`);
}
async function dropDatabase(name: string): Promise<void> {
  await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  createdDatabases.delete(name);
}
/** libpq environment for the baselines (pg_dump / pg_restore / psql). */
function pgEnv(): NodeJS.ProcessEnv {
  const u = new URL(DATABASE_URL);
  const env: NodeJS.ProcessEnv = { ...process.env, PGHOST: u.hostname, PGPORT: u.port || '5432', PGUSER: decodeURIComponent(u.username || 'postgres') };
  if (u.password) env.PGPASSWORD = decodeURIComponent(u.password);
  return env;
}

let cleanedUp = false;
async function cleanup(): Promise<void> {
  if (cleanedUp) return;
  cleanedUp = true;
  for (const name of [...createdDatabases]) await dropDatabase(name).catch((err) => console.error(`could not drop ${name}: ${String(err)}`));
  rmSync(base, { recursive: true, force: true, maxRetries: 3 });
}
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    console.error(`\n${sig}: cleaning up ${base} and ${createdDatabases.size} database(s)`);
    void cleanup().finally(() => process.exit(130));
  });
}

// ---------------------------------------------------------------------------------------------
// phases

interface Comparison {
  label: string;
  ours: number[];
  base: number[];
}

function compare(label: string, bytes: number, oursName: string, ours: number[], baseName: string, baseRuns: number[], target: number | null): boolean {
  const o = median(ours);
  const b = median(baseRuns);
  const ratio = b / o;
  const ok = target === null || ratio >= target;
  note(`${label}  [load average now ${load()}]`);
  note(`    ${baseName.padEnd(44)} runs ${runsText(baseRuns)} s -> median ${secs(b)} s, ${mbps(bytes, b)} MB/s`);
  note(`    ${oursName.padEnd(44)} runs ${runsText(ours)} s -> median ${secs(o)} s, ${mbps(bytes, o)} MB/s`);
  note(`    ratio ours/baseline throughput ${ratio.toFixed(3)}${target === null ? ' (informative, no target)' : `; target >= ${target} ${verdict(ok)}`}`);
  return ok;
}

const results: { name: string; ok: boolean }[] = [];
let restic = false;

async function directoryPhase(tree: TreeStats): Promise<void> {
  log(`\n== directory backup: ${treeText(tree)}, ${ROUNDS} interleaved rounds (load ${load()})`);
  const tarRuns: number[] = [];
  const oursRuns: number[] = [];
  const resticRuns: number[] = [];
  let artifact = { key: '', bytes: 0 };
  let resticRepo = '';
  const resticEnv = (repo: string): NodeJS.ProcessEnv => ({ ...process.env, RESTIC_PASSWORD: 'bench', RESTIC_REPOSITORY: repo, RESTIC_CACHE_DIR: path.join(base, 'restic-cache') });
  for (let round = 0; round < ROUNDS; round++) {
    const runTar = async () => {
      await settle();
      const ms = await timeIt(() => sh(`set -o pipefail; tar -czf - -C ${q(srcDir)} . | sha256sum`));
      tarRuns.push(ms);
      log(`  round ${round + 1} tar -czf | sha256sum: ${secs(ms)} s (${mbps(tree.bytes, ms)} MB/s)`);
    };
    const runOurs = async () => {
      const key = `dir/round-${round}.tar.gz`;
      await settle();
      let put = { bytes: 0, sha256: '' };
      const ms = await timeIt(async () => (put = await store.put(key, directoryDriver.backup({ path: srcRel }, ctx))));
      oursRuns.push(ms);
      if (artifact.key) await store.delete(artifact.key);
      artifact = { key, bytes: put.bytes };
      log(`  round ${round + 1} ours (driver -> file store): ${secs(ms)} s (${mbps(tree.bytes, ms)} MB/s), artifact ${mb(put.bytes)} MB`);
    };
    if (round % 2 === 0) {
      await runTar();
      await runOurs();
    } else {
      await runOurs();
      await runTar();
    }
    if (restic) {
      const repo = path.join(base, `restic-repo-${round}`);
      await sh('restic init -q', resticEnv(repo));
      await settle();
      const ms = await timeIt(() => sh(`restic backup -q ${q(srcDir)}`, resticEnv(repo)));
      resticRuns.push(ms);
      if (resticRepo) rmSync(resticRepo, { recursive: true, force: true });
      resticRepo = repo;
      log(`  round ${round + 1} restic backup: ${secs(ms)} s (${mbps(tree.bytes, ms)} MB/s)`);
    }
  }
  note(`artifact: ${mb(artifact.bytes)} MB for ${mb(tree.bytes)} MB of source (${((artifact.bytes / tree.bytes) * 100).toFixed(1)}%)`);
  results.push({ name: 'directory backup vs tar -cz | sha256sum', ok: compare('(1) directory backup', tree.bytes, 'ours: directoryDriver.backup -> store.put', oursRuns, 'baseline: tar -czf - DIR | sha256sum', tarRuns, TARGET_RATIO) });
  if (restic) {
    const du = Number((await sh(`du -sb ${q(resticRepo)}`)).split(/\s/)[0]);
    note(`restic repository: ${mb(du)} MB`);
    compare('(1b) directory backup vs restic', tree.bytes, 'ours: directoryDriver.backup -> store.put', oursRuns, 'restic backup DIR (fresh repo each run)', resticRuns, null);
  } else {
    note('(1b) restic not installed: skipped (apt-get install restic)');
  }

  log(`\n== directory restore of the same archive, ${ROUNDS} interleaved rounds (load ${load()})`);
  const archive = storePath(artifact.key);
  const tarTarget = path.join(base, 'restore-tar');
  const oursTargetRel = 'restore-ours';
  const oursTarget = path.join(dataRoot, oursTargetRel);
  const tarX: number[] = [];
  const tarXSync: number[] = [];
  const oursR: number[] = [];
  const resticR: number[] = [];
  let oursTree: TreeStats | undefined;
  let tarTree: TreeStats | undefined;
  const fresh = async (dir: string) => {
    rmSync(dir, { recursive: true, force: true });
    await settle();
  };
  for (let round = 0; round < ROUNDS; round++) {
    const runTar = async () => {
      await fresh(tarTarget);
      mkdirSync(tarTarget);
      const ms = await timeIt(() => sh(`tar -xzf ${q(archive)} -C ${q(tarTarget)}`));
      tarX.push(ms);
      log(`  round ${round + 1} tar -xzf: ${secs(ms)} s (${mbps(tree.bytes, ms)} MB/s)`);
      if (round === ROUNDS - 1) tarTree = walk(tarTarget);
    };
    const runOurs = async () => {
      await fresh(oursTarget);
      const ms = await timeIt(async () => directoryDriver.restore({ path: oursTargetRel }, await store.get(artifact.key), ctx));
      oursR.push(ms);
      log(`  round ${round + 1} ours (store.get -> directoryDriver.restore): ${secs(ms)} s (${mbps(tree.bytes, ms)} MB/s)`);
      if (round === ROUNDS - 1) oursTree = walk(oursTarget);
    };
    if (round % 2 === 0) {
      await runTar();
      await runOurs();
    } else {
      await runOurs();
      await runTar();
    }
    await fresh(tarTarget);
    mkdirSync(tarTarget);
    const msSync = await timeIt(() => sh(`tar -xzf ${q(archive)} -C ${q(tarTarget)} && sync --file-system ${q(tarTarget)}`));
    tarXSync.push(msSync);
    log(`  round ${round + 1} tar -xzf + sync --file-system: ${secs(msSync)} s (${mbps(tree.bytes, msSync)} MB/s)`);
    if (restic) {
      const target = path.join(base, 'restore-restic');
      await fresh(target);
      const ms = await timeIt(() => sh(`restic restore latest -q --target ${q(target)}`, resticEnv(resticRepo)));
      resticR.push(ms);
      log(`  round ${round + 1} restic restore: ${secs(ms)} s (${mbps(tree.bytes, ms)} MB/s)`);
    }
  }
  const restoredOk = !!oursTree && !!tarTree && sameTree(oursTree, tree) && sameTree(tarTree, tree);
  note(`restored trees: ours ${oursTree ? treeText(oursTree) : '?'}; tar ${tarTree ? treeText(tarTree) : '?'}; source ${treeText(tree)} -> ${restoredOk ? 'match' : 'MISMATCH'}`);
  const ok = compare('(2) directory restore', tree.bytes, 'ours: store.get -> directoryDriver.restore', oursR, 'baseline: tar -xzf ARCHIVE -C DIR', tarX, TARGET_RATIO);
  results.push({ name: 'directory restore vs tar -xz', ok: ok && restoredOk });
  compare('(2b) directory restore vs a durable tar -x (ours fsyncs the restored tree before the swap)', tree.bytes, 'ours: store.get -> directoryDriver.restore', oursR, 'tar -xzf ARCHIVE -C DIR && sync -f DIR', tarXSync, null);
  if (restic) compare('(2c) directory restore vs restic', tree.bytes, 'ours: store.get -> directoryDriver.restore', oursR, 'restic restore latest --target DIR', resticR, null);
  else note('(2c) restic not installed: skipped (apt-get install restic)');
  rmSync(oursTarget, { recursive: true, force: true });
  rmSync(tarTarget, { recursive: true, force: true });
  rmSync(path.join(base, 'restore-restic'), { recursive: true, force: true });
  if (resticRepo) rmSync(resticRepo, { recursive: true, force: true });
  rmSync(path.join(base, 'restic-cache'), { recursive: true, force: true });
  await store.delete(artifact.key);
}

async function memoryPhase(tree: TreeStats): Promise<void> {
  const extraBytes = Math.max(0, Math.floor(MEM_MB * MiB) - tree.bytes);
  log(`\n== memory: backup and restore of a ~${MEM_MB} MiB tree (load ${load()})`);
  let memTree = tree;
  if (extraBytes > 0) {
    const t0 = performance.now();
    const rng = new Rng(777);
    mkdirSync(path.join(srcDir, 'extra'));
    writeGenerated(path.join(srcDir, 'extra', 'big-mixed.bin'), extraBytes, 'mixed', makeTextPool(rng), rng, Buffer.allocUnsafeSlow(8 * MiB));
    memTree = { ...tree, files: tree.files + 1, bytes: tree.bytes + extraBytes };
    log(`  added extra/big-mixed.bin (${mb(extraBytes)} MB, alternating 8 MiB text / random) in ${secs(performance.now() - t0)} s`);
  }
  await settle();
  const key = 'mem/tree.tar.gz';
  let sampler = startRssSampler();
  let put = { bytes: 0, sha256: '' };
  const backupMs = await timeIt(async () => (put = await store.put(key, directoryDriver.backup({ path: srcRel }, ctx))));
  const b = sampler.stop();
  await settle();
  sampler = startRssSampler();
  const restoreMs = await timeIt(async () => directoryDriver.restore({ path: 'restore-mem' }, await store.get(key), ctx));
  const r = sampler.stop();
  const restored = walk(path.join(dataRoot, 'restore-mem'));
  const match = sameTree(restored, memTree);
  const line = (what: string, m: MemoryReport, ms: number) => {
    const worst = Math.max(m.peak, m.hwm);
    const ok = worst < RSS_LIMIT;
    note(`    ${what.padEnd(8)} ${secs(ms)} s (${mbps(memTree.bytes, ms)} MB/s); node RSS at start ${mb(m.start)} MB, peak sampled ${mb(m.peak)} MB (${m.samples} samples; V8 heap ${mb(m.heapTotal)} MB + Buffers ${mb(m.arrayBuffers)} MB then), kernel VmHWM ${m.hwm ? `${mb(m.hwm)} MB` : 'n/a'}; child processes (tar, sync) peak ${mb(m.childPeak)} MB; target < ${mb(RSS_LIMIT)} MB ${verdict(ok)}`);
    return ok;
  };
  note(`(5) memory: ${treeText(memTree)} -> artifact ${mb(put.bytes)} MB; restored tree ${match ? 'matches' : `MISMATCH (${treeText(restored)})`}`);
  const okB = line('backup', b, backupMs);
  const okR = line('restore', r, restoreMs);
  results.push({ name: 'memory: directory backup RSS < 300 MB', ok: okB });
  results.push({ name: 'memory: directory restore RSS < 300 MB', ok: okR && match });
  rmSync(path.join(dataRoot, 'restore-mem'), { recursive: true, force: true });
  rmSync(path.join(srcDir, 'extra'), { recursive: true, force: true });
  await store.delete(key);
}

async function generateDatabase(name: string, targetBytes: number): Promise<{ bytes: number; events: number; documents: number }> {
  await createDatabase(name);
  const c = new pg.Client({ connectionString: dbUrl(name) });
  await c.connect();
  try {
    await c.query('SET synchronous_commit = off');
    await c.query(`CREATE TABLE events (
      id bigint NOT NULL, created_at timestamptz NOT NULL, account_id int NOT NULL, amount numeric(14,2) NOT NULL,
      kind text NOT NULL, payload jsonb NOT NULL, note text)`);
    await c.query(`CREATE TABLE documents (
      id bigint NOT NULL, title text NOT NULL, body text NOT NULL, tags text[] NOT NULL, updated_at timestamptz NOT NULL)`);
    const BATCH = 100_000;
    const size = async () => Number((await c.query<{ s: string }>('SELECT pg_database_size(current_database()) AS s')).rows[0]?.s);
    let n = 0;
    // The primary keys and the index added at the end take roughly 8% more.
    while ((await size()) < targetBytes * 0.92) {
      const lo = n * BATCH + 1;
      const hi = (n + 1) * BATCH;
      await c.query(`INSERT INTO events
        SELECT g, timestamptz '2024-01-01' + g * interval '1 second', (g * 7919) % 100000, ((g * 31) % 10000000) / 100.0,
               (ARRAY['click','view','purchase','refund'])[1 + g % 4],
               jsonb_build_object('ip', md5(g::text), 'agent', md5((g + 1)::text), 'n', g % 1000, 'ok', g % 3 = 0),
               md5((g * 3)::text)
        FROM generate_series(${lo}::bigint, ${hi}::bigint) g`);
      await c.query(`INSERT INTO documents
        SELECT g, 'doc ' || md5(g::text),
               md5(g::text || 'a') || ' ' || md5(g::text || 'b') || ' ' || md5(g::text || 'c') || ' ' || md5(g::text || 'd') || ' ' ||
               md5(g::text || 'e') || ' ' || md5(g::text || 'f') || ' ' || md5(g::text || 'g') || ' ' || md5(g::text || 'h'),
               ARRAY['t' || (g % 17), 't' || (g % 31)], timestamptz '2024-01-01' + g * interval '1 minute'
        FROM generate_series(${lo}::bigint, ${hi}::bigint) g`);
      n++;
    }
    await c.query('ALTER TABLE events ADD PRIMARY KEY (id)');
    await c.query('ALTER TABLE documents ADD PRIMARY KEY (id)');
    await c.query('CREATE INDEX events_account_idx ON events (account_id)');
    await c.query('VACUUM (FREEZE, ANALYZE)'); // sets hint bits now, not during the first timed dump
    return { bytes: await size(), events: n * BATCH, documents: n * BATCH };
  } finally {
    await c.end();
  }
}

async function rowCounts(name: string): Promise<string> {
  const c = new pg.Client({ connectionString: dbUrl(name) });
  await c.connect();
  try {
    const r = await c.query<{ e: string; d: string }>('SELECT (SELECT count(*) FROM events) AS e, (SELECT count(*) FROM documents) AS d');
    return `${r.rows[0]?.e} events, ${r.rows[0]?.d} documents`;
  } finally {
    await c.end();
  }
}

async function postgresPhase(): Promise<void> {
  log(`\n== postgres: generating a ~${PG_MB} MB database (load ${load()})`);
  const src = `${pgTag}_src`;
  const t0 = performance.now();
  const db = await generateDatabase(src, PG_MB * 1e6);
  note(`postgres source database: ${mb(db.bytes)} MB (pg_database_size), ${db.events} events + ${db.documents} documents, generated in ${secs(performance.now() - t0)} s`);
  const expected = `${db.events} events, ${db.documents} documents`;

  log(`\n== postgres backup, ${ROUNDS} interleaved rounds (load ${load()})`);
  const env = pgEnv();
  const dumpRuns: number[] = [];
  const oursRuns: number[] = [];
  let artifact = { key: '', bytes: 0 };
  for (let round = 0; round < ROUNDS; round++) {
    const runDump = async () => {
      await settle();
      const ms = await timeIt(() => sh(`pg_dump -Fc ${q(src)} > /dev/null`, env));
      dumpRuns.push(ms);
      log(`  round ${round + 1} pg_dump -Fc > /dev/null: ${secs(ms)} s (${mbps(db.bytes, ms)} MB/s)`);
    };
    const runOurs = async () => {
      const key = `pg/round-${round}.pgdump`;
      await settle();
      let put = { bytes: 0, sha256: '' };
      const ms = await timeIt(async () => (put = await store.put(key, postgresDriver.backup({ url: dbUrl(src) }, ctx))));
      oursRuns.push(ms);
      if (artifact.key) await store.delete(artifact.key);
      artifact = { key, bytes: put.bytes };
      log(`  round ${round + 1} ours (postgresDriver.backup -> store): ${secs(ms)} s (${mbps(db.bytes, ms)} MB/s), dump ${mb(put.bytes)} MB`);
    };
    if (round % 2 === 0) {
      await runDump();
      await runOurs();
    } else {
      await runOurs();
      await runDump();
    }
  }
  note(`dump artifact: ${mb(artifact.bytes)} MB`);
  results.push({ name: 'postgres backup vs pg_dump -Fc', ok: compare('(3) postgres backup (MB/s of pg_database_size)', db.bytes, 'ours: postgresDriver.backup -> store.put', oursRuns, 'baseline: pg_dump -Fc DB > /dev/null', dumpRuns, TARGET_RATIO) });

  log(`\n== postgres restore of the same dump into fresh databases, ${ROUNDS} interleaved rounds (load ${load()})`);
  const file = storePath(artifact.key);
  const restoreRuns: number[] = [];
  const oursR: number[] = [];
  let countsOk = true;
  for (let round = 0; round < ROUNDS; round++) {
    const last = round === ROUNDS - 1;
    const runPgRestore = async () => {
      const name = `${pgTag}_pgr${round}`;
      await createDatabase(name);
      await settle();
      const ms = await timeIt(() => sh(`pg_restore --no-owner -d ${q(name)} ${q(file)}`, env));
      restoreRuns.push(ms);
      const counts = last ? await rowCounts(name) : '';
      if (last && counts !== expected) countsOk = false;
      log(`  round ${round + 1} pg_restore -d: ${secs(ms)} s (${mbps(db.bytes, ms)} MB/s)${last ? `; ${counts}` : ''}`);
      await dropDatabase(name);
    };
    const runOurs = async () => {
      const name = `${pgTag}_our${round}`;
      await createDatabase(name);
      await settle();
      const ms = await timeIt(async () => postgresDriver.restore({ url: dbUrl(name) }, await store.get(artifact.key), ctx));
      oursR.push(ms);
      const counts = last ? await rowCounts(name) : '';
      if (last && counts !== expected) countsOk = false;
      log(`  round ${round + 1} ours (pg_restore -f - | psql --single-transaction): ${secs(ms)} s (${mbps(db.bytes, ms)} MB/s)${last ? `; ${counts}` : ''}`);
      await dropDatabase(name);
    };
    if (round % 2 === 0) {
      await runPgRestore();
      await runOurs();
    } else {
      await runOurs();
      await runPgRestore();
    }
  }
  note(`restored row counts (last round, both): ${countsOk ? `match (${expected})` : 'MISMATCH'}`);
  const ok = compare('(4) postgres restore (MB/s of source pg_database_size)', db.bytes, 'ours: postgresDriver.restore (one transaction)', oursR, 'baseline: pg_restore -d FRESH FILE', restoreRuns, TARGET_RATIO);
  results.push({ name: 'postgres restore vs pg_restore -d', ok: ok && countsOk });
  await store.delete(artifact.key);
  await dropDatabase(src);
}

// ---------------------------------------------------------------------------------------------
// main

const started = performance.now();
let crashed: unknown;
try {
  log(`bench:backup  ${os.cpus().length} cpus, ${mb(os.totalmem())} MB RAM, node ${process.version}, load average ${load()}`);
  log(`BENCH_DIR_MB=${DIR_MB} BENCH_MEM_MB=${MEM_MB} BENCH_PG_MB=${PG_MB} BENCH_ROUNDS=${ROUNDS} BENCH_ONLY=${[...ONLY].join(',')}; temp dir ${base}`);
  log('throughput is MB/s (10^6 bytes) of SOURCE data; ratio = ours / baseline throughput, from medians of runs interleaved in this process');
  restic = await hasCommand('restic');
  if (restic) log(`restic: ${(await sh('restic version')).trim()}`);
  else log('restic not installed: skipped (apt-get install restic)');

  let tree: TreeStats | undefined;
  if (ONLY.has('dir') || ONLY.has('mem')) {
    const t0 = performance.now();
    tree = generateTree(srcDir, DIR_MB);
    await settle();
    note(`source tree: ${treeText(tree)} in ${tree.dirs} directories, generated in ${secs(performance.now() - t0)} s`);
  }
  if (ONLY.has('dir') && tree) await directoryPhase(tree);
  if (ONLY.has('pg')) await postgresPhase();
  if (ONLY.has('mem') && tree) await memoryPhase(tree);
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
process.exit(0);
