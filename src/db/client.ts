import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from '../generated/prisma/client.js';

export type Db = PrismaClient;
/** The client handed to code running inside `db.$transaction(async (tx) => ...)`. */
export type Tx = Parameters<Parameters<PrismaClient['$transaction']>[0]>[0];

export interface DbOptions {
  poolSize: number;
  connectTimeoutMs: number;
}

// Pool size and timeouts are explicit: adapter-pg defaults to waiting forever for a
// connection, which turns a database outage into hung requests instead of 503s.
export function createDb(url: string, opts: DbOptions): Db {
  const adapter = new PrismaPg({
    connectionString: url,
    max: opts.poolSize,
    connectionTimeoutMillis: opts.connectTimeoutMs,
    idleTimeoutMillis: 30_000,
  });
  return new PrismaClient({ adapter });
}
