import net from 'node:net';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { createHash } from 'node:crypto';
import { migrate, readMigrations } from '../src/db/migrate.js';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

/**
 * The server tenants' databases live on: never the service's own (a tenant target there is
 * refused). TENANT_DATABASE_URL when set (its members of role bk_password_users must need a
 * password); otherwise a second local PostgreSQL that test/tenant-pg.sh starts, or finds running
 * (idempotent, under a lock, shared by concurrent runs and left running like the main server);
 * otherwise a container.
 */
async function tenantServer(stops: (() => Promise<unknown>)[]): Promise<string> {
  if (process.env.TENANT_DATABASE_URL) return process.env.TENANT_DATABASE_URL.replace(/\/[^/]*$/, '');
  try {
    const script = fileURLToPath(new URL('./tenant-pg.sh', import.meta.url));
    const { stdout } = await promisify(execFile)('bash', [script], { timeout: 120_000 });
    return stdout.trim();
  } catch (err) {
    if ((err as { code?: unknown }).code !== 3) throw new Error(`cannot start the tenants' PostgreSQL (test/tenant-pg.sh): ${(err as { stderr?: string }).stderr || (err as Error).message}`);
  }
  const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
  const c = await new PostgreSqlContainer('postgres:15').start();
  stops.push(() => c.stop());
  const url = new URL(c.getConnectionUri());
  url.pathname = '';
  const client = new pg.Client({ connectionString: c.getConnectionUri() });
  await client.connect();
  await client.query('CREATE ROLE bk_password_users NOLOGIN').finally(() => client.end());
  return url.href.replace(/\/$/, '');
}


function reachable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, timeout: 1000 }, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
    s.on('timeout', () => {
      s.destroy();
      resolve(false);
    });
  });
}

/**
 * Services: DATABASE_URL / REDIS_URL when set; otherwise the machine's own at the default ports;
 * otherwise containers (testcontainers, for laptops with Docker).
 */
export default async function setup(project: TestProject) {
  const stops: (() => Promise<unknown>)[] = [];
  let databaseUrl = process.env.DATABASE_URL;
  let redisUrl = process.env.REDIS_URL;
  if (!databaseUrl) {
    if (await reachable('127.0.0.1', 5432)) databaseUrl = 'postgresql://postgres@127.0.0.1:5432/postgres';
    else {
      const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
      const c = await new PostgreSqlContainer('postgres:15').start();
      stops.push(() => c.stop());
      databaseUrl = c.getConnectionUri();
    }
  }
  if (!redisUrl) {
    if (await reachable('127.0.0.1', 6379)) redisUrl = 'redis://127.0.0.1:6379';
    else {
      const { RedisContainer } = await import('@testcontainers/redis');
      const c = await new RedisContainer('redis:7').withCommand(['redis-server', '--maxmemory-policy', 'noeviction']).start();
      stops.push(() => c.stop());
      redisUrl = c.getConnectionUrl();
    }
  }

  // One migrated template per set of migrations; every test file clones it into a database of
  // its own. Named by the migrations' checksums and built under a lock, so concurrent runs on one
  // machine share it instead of dropping it under each other.
  const admin = new URL(databaseUrl);
  admin.pathname = '/postgres';
  const migrations = await readMigrations();
  const template = `bk_test_tpl_${createHash('sha256').update(migrations.map((m) => m.checksum).join()).digest('hex').slice(0, 16)}`;
  const client = new pg.Client({ connectionString: admin.href });
  await client.connect();
  try {
    await client.query('SELECT pg_advisory_lock(72707371)');
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [template]);
    if (!rowCount) {
      await client.query(`CREATE DATABASE ${template}_build`).catch(async () => {
        await client.query(`DROP DATABASE IF EXISTS ${template}_build WITH (FORCE)`);
        await client.query(`CREATE DATABASE ${template}_build`);
      });
      const buildUrl = new URL(databaseUrl);
      buildUrl.pathname = `/${template}_build`;
      await migrate(buildUrl.href);
      await client.query(`ALTER DATABASE ${template}_build RENAME TO ${template}`);
    }
  } finally {
    await client.query('SELECT pg_advisory_unlock(72707371)').catch(() => {});
    await client.end();
  }

  project.provide('adminDatabaseUrl', admin.href);
  project.provide('templateDb', template);
  project.provide('redisUrl', redisUrl);
  project.provide('tenantPgUrl', await tenantServer(stops));
  return async () => {
    for (const stop of stops) await stop();
  };
}

declare module 'vitest' {
  export interface ProvidedContext {
    adminDatabaseUrl: string;
    templateDb: string;
    redisUrl: string;
    /** The tenants' PostgreSQL server, without a database: `${tenantPgUrl}/<db>` (never the service's own server). */
    tenantPgUrl: string;
  }
}
