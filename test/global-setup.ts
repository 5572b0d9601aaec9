import net from 'node:net';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { migrate } from '../src/db/migrate.js';

export const TEMPLATE_DB = 'bk_test_template';

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

  // One migrated template; every test file clones it into a database of its own.
  const admin = new URL(databaseUrl);
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: admin.href });
  await client.connect();
  await client.query(`DROP DATABASE IF EXISTS ${TEMPLATE_DB} WITH (FORCE)`);
  await client.query(`CREATE DATABASE ${TEMPLATE_DB}`);
  await client.end();
  const templateUrl = new URL(databaseUrl);
  templateUrl.pathname = `/${TEMPLATE_DB}`;
  await migrate(templateUrl.href);

  project.provide('adminDatabaseUrl', admin.href);
  project.provide('redisUrl', redisUrl);
  return async () => {
    for (const stop of stops) await stop();
  };
}

declare module 'vitest' {
  export interface ProvidedContext {
    adminDatabaseUrl: string;
    redisUrl: string;
  }
}
