import pg from 'pg';
import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from '../generated/prisma/client.js';

/**
 * The Prisma client, plus the pg pool under it (`$pool`): the few statements on the API's hot
 * path (the manual backup decision, the audit batch) run on the driver directly, sharing the
 * same connections and limits, without the client's per-query overhead.
 */
export type Db = PrismaClient & { readonly $pool: pg.Pool };
/** The client handed to code running inside `db.$transaction(async (tx) => ...)`. */
export type Tx = Parameters<Parameters<PrismaClient['$transaction']>[0]>[0];

export interface DbOptions {
  poolSize: number;
  connectTimeoutMs: number;
}

// Pool size and timeouts are explicit: adapter-pg defaults to waiting forever for a
// connection, which turns a database outage into hung requests instead of 503s.
export function createDb(url: string, opts: DbOptions): Db {
  const pool = new pg.Pool({ connectionString: url, max: opts.poolSize, connectionTimeoutMillis: opts.connectTimeoutMs, idleTimeoutMillis: 30_000 });
  pool.on('error', () => {}); // an idle connection dropped by the server; the next query reconnects
  const client = new PrismaClient({ adapter: new PrismaPg(pool) });
  const disconnect = client.$disconnect.bind(client);
  return Object.assign(client, {
    $pool: pool,
    async $disconnect() {
      await disconnect();
      if (!pool.ended) await pool.end();
    },
  }) as Db;
}
