import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { deleteKeysByPrefix } from '../src/queue/keys.js';
import { threadStats } from '../test/helpers/proc.js';
import { loadConfig } from '../src/config.js';
import { migrate } from '../src/db/migrate.js';
import { createLogger } from '../src/lib/logger.js';
import { createRuntime, type Runtime } from '../src/runtime.js';

export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A throwaway database and queue prefix for one benchmark run; `drop()` removes both. */
export async function benchEnv(name: string): Promise<{ rt: Runtime; dbUrl: string; prefix: string; drop(): Promise<void> }> {
  const db = `bk_bench_${name}_${randomBytes(4).toString('hex')}`;
  const admin = new URL(DATABASE_URL);
  admin.pathname = '/postgres';
  const c = new pg.Client({ connectionString: admin.href });
  await c.connect();
  await c.query(`CREATE DATABASE ${db}`);
  await c.end();
  const url = new URL(DATABASE_URL);
  url.pathname = `/${db}`;
  await migrate(url.href);
  const prefix = `bkbench-${randomBytes(4).toString('hex')}`;
  const config = loadConfig({
    DATABASE_URL: url.href,
    REDIS_URL,
    QUEUE_PREFIX: prefix,
    ENCRYPTION_KEY: randomBytes(32).toString('base64'),
    STORAGE_URL: pathToFileURL(`/tmp/${prefix}`).href,
  });
  const rt = createRuntime(config, createLogger('warn'));
  return {
    rt,
    dbUrl: url.href,
    prefix,
    async drop() {
      await rt.close();
      await deleteKeysByPrefix(REDIS_URL, prefix);
      const c2 = new pg.Client({ connectionString: admin.href });
      await c2.connect();
      await c2.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
      await c2.end();
    },
  };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

export async function timeIt(fn: () => Promise<unknown> | unknown): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

export function verdict(ok: boolean): string {
  return ok ? 'PASS' : 'FAIL';
}

/**
 * A throwaway, migrated service database for one benchmark run, without the runtime (no Redis):
 * for benches that drive the repository and the drivers directly. `drop()` removes it.
 */
export async function benchDatabase(name: string): Promise<{ url: string; name: string; drop(): Promise<void> }> {
  const db = `bk_bench_${name}_${randomBytes(4).toString('hex')}`;
  const admin = new URL(DATABASE_URL);
  admin.pathname = '/postgres';
  const run = async (sql: string) => {
    const c = new pg.Client({ connectionString: admin.href });
    await c.connect();
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  };
  await run(`CREATE DATABASE ${db}`);
  const url = new URL(DATABASE_URL);
  url.pathname = `/${db}`;
  await migrate(url.href);
  return { url: url.href, name: db, drop: () => run(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`) };
}

/** Tracks how long at least one of some concurrent operations was under way (busy time), and their count. */
export class BusyTimer {
  private active = 0;
  private since = 0;
  busyMs = 0;
  calls = 0;
  reset(): void {
    this.busyMs = 0;
    this.calls = 0;
    if (this.active > 0) this.since = performance.now();
  }
  /** Counts `p` as under way until it settles; returns `p` itself. */
  track<T>(p: T): T {
    if (!p || typeof (p as { then?: unknown }).then !== 'function') return p;
    this.calls++;
    if (this.active++ === 0) this.since = performance.now();
    const done = () => {
      if (--this.active === 0) this.busyMs += performance.now() - this.since;
    };
    (p as unknown as Promise<unknown>).then(done, done);
    return p;
  }
}

/**
 * A dump tool against our backup of the same source, `rounds` times, interleaved (the tool first
 * in odd rounds) so that drift of the machine falls on both: medians, their ratio (tool / ours
 * time, i.e. our throughput over its) and the last logical byte count ours reported.
 */
export async function interleavedRounds(
  rounds: number,
  theirs: () => Promise<unknown>,
  ours: () => Promise<{ ms: number; logical: number }>,
): Promise<{ theirs: number[]; ours: number[]; ratio: number; logical: number }> {
  const t: number[] = [];
  const o: number[] = [];
  let logical = 0;
  const runTheirs = async () => t.push(await timeIt(theirs));
  const runOurs = async () => {
    const r = await ours();
    o.push(r.ms);
    logical = r.logical;
  };
  for (let round = 1; round <= rounds; round++) {
    if (round % 2 === 1) {
      await runTheirs();
      await runOurs();
    } else {
      await runOurs();
      await runTheirs();
    }
  }
  return { theirs: t, ours: o, ratio: median(t) / median(o), logical };
}

/** A stream driver's backup into a sink that only counts (the driver alone, no repository): its time and bytes. */
export async function countingBackup(driver: { backup(config: never, ctx: never): { manifest: AsyncIterable<Buffer>; logicalBytes(): number } }, config: unknown): Promise<{ ms: number; logical: number }> {
  let logical = 0;
  const ms = await timeIt(async () => {
    const snap = (driver.backup as (c: unknown, x: unknown) => { manifest: AsyncIterable<Buffer>; logicalBytes(): number })(config, {
      dataRoot: '/nonexistent',
      previous: null,
      sink: {
        async writeStream(source: AsyncIterable<Buffer>) {
          let n = 0;
          for await (const piece of source) n += piece.length;
          return { chunks: ['0'.repeat(64)], bytes: n }; // the manifest wants a chunk; none is stored
        },
        reuse: async (files: unknown[]) => files.map(() => false),
      },
    });
    for await (const _ of snap.manifest);
    logical = snap.logicalBytes();
  });
  return { ms, logical };
}

export interface ShOpts {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Run as the postgres OS user when we are root (PostgreSQL's server-side tools refuse root). */
  asPg?: boolean;
}

/** Runs `cmd` in bash; resolves with its stdout, rejects with its stderr's tail on a non-zero exit. */
export function sh(cmd: string, o: ShOpts = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const [file, args] = o.asPg && process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', 'bash', '-c', cmd]] : ['bash', ['-c', cmd]];
    const child = spawn(file, args, { env: o.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'], ...(o.cwd && { cwd: o.cwd }) });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-4000)));
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`\`${cmd}\` exited ${code}: ${err.trim()}`))));
  });
}

/** CPU seconds (user, system) of each thread of this process, by thread id (/proc/self/task/<tid>/stat, fields 14 and 15). */
export function threadCpu(): Map<number, { user: number; sys: number }> {
  return new Map([...threadStats()].map(([tid, f]) => [tid, { user: Number(f[11]) / 100, sys: Number(f[12]) / 100 }]));
}

/** The CPU each thread used between two threadCpu() samples: the main thread, then the rest by total (those above 0.02 s). */
export function threadCpuLine(before: Map<number, { user: number; sys: number }>, after: Map<number, { user: number; sys: number }>): string {
  const used = [...after].map(([tid, a]) => {
    const b = before.get(tid) ?? { user: 0, sys: 0 };
    return { tid, user: a.user - b.user, sys: a.sys - b.sys };
  });
  const main = used.find((u) => u.tid === process.pid);
  const rest = used.filter((u) => u.tid !== process.pid && u.user + u.sys > 0.02).sort((x, y) => y.user + y.sys - (x.user + x.sys));
  const f = (u: { user: number; sys: number }) => `${u.user.toFixed(2)} user + ${u.sys.toFixed(2)} sys`;
  const total = used.reduce((n, u) => n + u.user + u.sys, 0);
  return `${total.toFixed(2)} s in all; main ${main ? f(main) : '?'}; ${rest.map((u) => `${u.tid} ${f(u)}`).join('; ')}`;
}
