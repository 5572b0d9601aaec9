import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTenantDatabase, createTestDatabase, tenantServerUrl, tenantUrl } from './helpers/db.js';
import { createKey, createTenant, startStack, waitForBackup, type Stack } from './helpers/stack.js';

// Which database servers tenants may name (README "Which database servers tenants may name").
let s: Stack;
let admin: string;
let operator: string;
let other: Awaited<ReturnType<typeof createTestDatabase>>; // another database on the service's own server
let tenantDb: Awaited<ReturnType<typeof createTenantDatabase>>;
const role = `bk_pw_${randomBytes(4).toString('hex')}`;

async function onTenantServer(sql: string) {
  const c = new pg.Client({ connectionString: `${tenantServerUrl()}/postgres` });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

beforeAll(async () => {
  s = await startStack();
  ({ adminToken: admin } = await createTenant(s));
  operator = await createKey(s, admin, 'operator');
  other = await createTestDatabase({ empty: true });
  tenantDb = await createTenantDatabase();
  await onTenantServer(`CREATE ROLE ${role} LOGIN PASSWORD 'right-password' IN ROLE bk_password_users`);
});
afterAll(async () => {
  await s.close();
  await other.drop();
  await tenantDb.drop();
  await onTenantServer(`DROP ROLE IF EXISTS ${role}`);
});

const serviceServer = () => new URL(s.databaseUrl);
const pgc = (url: string) => [{ name: 'db', type: 'postgres', config: { url } }];

async function backupOf(url: string) {
  const p = await s.request('POST', '/v1/policies', { token: admin, body: { name: `p-${randomBytes(4).toString('hex')}`, manual_rate_limit: null } });
  const c = await s.request('POST', '/v1/clusters', { token: admin, body: { name: `c-${randomBytes(4).toString('hex')}`, policy_id: p.body.id, components: pgc(url) } });
  expect(c.status, c.text).toBe(201);
  const b = await s.request('POST', `/v1/clusters/${c.body.id}/backups`, { token: operator });
  expect(b.status, b.text).toBe(202);
  return waitForBackup(s, operator, c.body.id, b.body.id);
}

describe('database targets', () => {
  it("refuses any database on the service's own server, under its addresses and names", async () => {
    const { port } = serviceServer();
    for (const host of ['127.0.0.1', 'localhost', '[::1]', '0.0.0.0']) {
      for (const db of [other.name, 'postgres', 'template1']) {
        const res = await s.request('POST', '/v1/clusters', { token: admin, body: { name: 'own', components: pgc(`postgresql://postgres@${host}:${port || 5432}/${db}`) } });
        expect(res.status, `${host}/${db}: ${res.text}`).toBe(422);
        expect(res.body.errors[0].message).toBe("that is the backup service's own database server");
      }
    }
  });

  it('refuses private, link-local and metadata addresses unless the operator listed them', async () => {
    for (const host of ['10.0.0.1', '169.254.169.254', '192.168.1.1', '172.16.0.1', '100.64.0.1', '[fd00:ec2::254]', '[fe80::1]', '[::1]', '127.0.0.2']) {
      const res = await s.request('POST', '/v1/clusters', { token: admin, body: { name: 'priv', components: pgc(`postgresql://u@${host}:5433/db`) } });
      expect(res.status, `${host}: ${res.text}`).toBe(422);
      expect(res.body.errors[0].message).toMatch(/is not among the hosts the operator allows \(TARGET_ALLOWED_HOSTS\)$/);
    }
    // the stack lists 127.0.0.1: the tenants' server is reachable
    const ok = await s.request('POST', '/v1/clusters', { token: admin, body: { name: 'tenant-server', components: pgc(tenantDb.url) } });
    expect(ok.status, ok.text).toBe(201);
  });

  it('reports connection failures as categories, never with an address or a port', async () => {
    const cases: [string, string][] = [
      ['postgresql://u:p@127.0.0.1:1/db', 'server unreachable (connection refused)'],
      [tenantUrl(tenantDb.name, { user: role, password: 'wrong-password' }), 'authentication failed'],
      [tenantUrl(`no_such_db_${randomBytes(3).toString('hex')}`), 'database does not exist'],
    ];
    for (const [url, category] of cases) {
      const done = await backupOf(url);
      expect(done.status).toBe('failed');
      expect(done.error).toMatchObject({ component: 'db', message: expect.stringContaining(category) });
      expect(done.error.message).not.toMatch(/127\.0\.0\.1|\bport\b|:\d|wrong-password/);
    }
    // what libpq said stays out of the tenant's view but not out of reach: the right password works
    const good = await backupOf(tenantUrl(tenantDb.name, { user: role, password: 'right-password' }));
    expect(good.status, JSON.stringify(good.error)).toBe('completed');
  });
});

describe('TARGET_ALLOW_SERVICE_SERVER=true', () => {
  it("lets tenants name other databases on the service's own server, never its own database", async () => {
    const lifted = await startStack({ worker: false, env: { TARGET_ALLOW_SERVICE_SERVER: 'true' } });
    try {
      const { adminToken } = await createTenant(lifted);
      const { port } = serviceServer();
      const res = await lifted.request('POST', '/v1/clusters', { token: adminToken, body: { name: 'lifted', components: pgc(`postgresql://postgres@127.0.0.1:${port || 5432}/${other.name}`) } });
      expect(res.status, res.text).toBe(201);
      const ownDb = new URL(lifted.databaseUrl);
      const own = await lifted.request('POST', '/v1/clusters', { token: adminToken, body: { name: 'own', components: pgc(`postgresql://postgres@localhost:${ownDb.port || 5432}${ownDb.pathname}`) } });
      expect(own.status).toBe(422);
      expect(own.body.errors[0].message).toBe("that is the backup service's own database");
    } finally {
      await lifted.close();
    }
  });
});
