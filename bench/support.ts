import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { deleteKeysByPrefix } from '../src/queue/keys.js';
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
