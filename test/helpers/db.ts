import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';


export function adminUrl(): string {
  return inject('adminDatabaseUrl');
}

export async function withAdmin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: adminUrl() });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** A database of this test file's own: a clone of the migrated template, or empty. */
export async function createTestDatabase(opts: { empty?: boolean } = {}): Promise<{ name: string; url: string; drop(): Promise<void> }> {
  const name = `bk_test_${randomBytes(6).toString('hex')}`;
  await withAdmin(async (c) => {
    for (let attempt = 0; ; attempt++) {
      try {
        await c.query(opts.empty ? `CREATE DATABASE ${name}` : `CREATE DATABASE ${name} TEMPLATE ${inject('templateDb')}`);
        return;
      } catch (err) {
        // Two files cloning the template at the same instant: PostgreSQL refuses one; try again.
        if (attempt > 20 || !/being accessed by other users/.test((err as Error).message)) throw err;
        await new Promise((r) => setTimeout(r, 100 + Math.random() * 200));
      }
    }
  });
  const url = new URL(adminUrl());
  url.pathname = `/${name}`;
  return {
    name,
    url: url.href,
    drop: () => withAdmin(async (c) => void (await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`))),
  };
}

/** The tenants' PostgreSQL server (no database in the URL): tenants' components point there, never at the service's own. */
export function tenantServerUrl(): string {
  return inject('tenantPgUrl');
}

/** A database of this test file's own on the tenants' server, empty, for postgres components. */
export async function createTenantDatabase(): Promise<{ name: string; url: string; drop(): Promise<void> }> {
  const name = `bk_tenant_${randomBytes(6).toString('hex')}`;
  const onServer = async (fn: (c: pg.Client) => Promise<unknown>) => {
    const c = new pg.Client({ connectionString: `${tenantServerUrl()}/postgres` });
    await c.connect();
    try {
      await fn(c);
    } finally {
      await c.end();
    }
  };
  await onServer((c) => c.query(`CREATE DATABASE ${name}`));
  return {
    name,
    url: `${tenantServerUrl()}/${name}`,
    drop: () => onServer((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)),
  };
}

/** `${tenantServerUrl()}/<database>`, with other credentials when given. */
export function tenantUrl(database: string, creds: { user?: string; password?: string } = {}): string {
  const u = new URL(`${tenantServerUrl()}/${database}`);
  if (creds.user !== undefined) u.username = creds.user;
  if (creds.password !== undefined) u.password = creds.password;
  return u.href;
}
