import { cp, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate, MIGRATIONS_DIR } from '../src/db/migrate.js';
import { nextRunAt } from '../src/scheduling/index.js';
import { createTestDatabase } from './helpers/db.js';
import { createKey, createTenant, startStack, type Stack } from './helpers/stack.js';

/** SPEC section 11: a default policy per environment type, GET|PATCH /v1/data-retention. */
let s: Stack;
let token: string;
let home: string;
beforeAll(async () => {
  s = await startStack({ worker: false });
  const t = await createTenant(s);
  token = t.adminToken;
  home = t.dir;
  await mkdir(path.join(home, 'app'), { recursive: true });
});
afterAll(async () => s.close());

const dir = { name: 'files', type: 'directory', config: { path: 'app' } };
const cluster = async (name: string, body: Record<string, unknown> = {}, tok = token) => {
  const res = await s.request('POST', '/v1/clusters', { token: tok, body: { name, components: [dir], ...body } });
  expect(res.status, res.text).toBe(201);
  return res.body as { id: string; policy_id: string; next_backup_at: string | null; environment: string };
};
const defaults = async (tok = token) => {
  const list = await s.request('GET', '/v1/policies?limit=100', { token: tok });
  const of = (env: string) => list.body.items.find((p: { environment: string | null }) => p.environment === env) as { id: string };
  return { production: of('production'), staging: of('staging'), development: of('development') };
};

const INITIAL = {
  production: { max_backups: 10, default_config: { schedule: [{ interval: '1d', count: 2 }], manual_count: 3 } },
  staging: { max_backups: 10, default_config: { schedule: [], manual_count: 3 } },
  development: { max_backups: 10, default_config: { schedule: [], manual_count: 3 } },
};

describe('environment defaults', () => {
  it("shows a new tenant's three defaults in Upsun's data_retention shape", async () => {
    const res = await s.request('GET', '/v1/data-retention', { token });
    expect(res.status).toBe(200);
    expect(res.body).toEqual(INITIAL);
    // viewers may read it
    const viewer = await createKey(s, token, 'viewer');
    expect((await s.request('GET', '/v1/data-retention', { token: viewer })).body).toEqual(INITIAL);
  });

  it('gives a new staging or development cluster no scheduled backups, and a production one a daily slot', async () => {
    const d = await defaults();
    const staging = await cluster('env-staging', { environment: 'staging' });
    expect(staging).toMatchObject({ policy_id: d.staging.id, next_backup_at: null });
    const dev = await cluster('env-dev', { environment: 'development' });
    expect(dev).toMatchObject({ policy_id: d.development.id, next_backup_at: null });
    const prod = await cluster('env-prod');
    expect(prod.policy_id).toBe(d.production.id);
    expect(Date.parse(prod.next_backup_at!)).toBeGreaterThan(Date.now());
    expect(Date.parse(prod.next_backup_at!)).toBeLessThanOrEqual(Date.now() + 24 * 3600_000);
    // manual backups still work on a staging cluster (manual_count 3)
    const { rows } = await s.rt.db.$pool.query('SELECT next_backup_at FROM clusters WHERE id = $1', [staging.id]);
    expect(rows[0].next_backup_at).toBeNull();
  });

  it('moves next_backup_at of every production cluster that follows the production default when it changes, and of no other', async () => {
    const d = await defaults();
    const own = await s.request('POST', '/v1/policies', { token, body: { name: 'own-daily', schedule: [{ interval: '1d', count: 7 }] } });
    const followers = [await cluster('p-follow-1'), await cluster('p-follow-2')];
    const explicit = await cluster('p-explicit', { policy_id: own.body.id });
    const staging = await cluster('s-follow', { environment: 'staging' });
    const before = new Date();
    const patch = await s.request('PATCH', '/v1/data-retention', { token, body: { production: { default_config: { schedule: [{ interval: '1h', count: 24 }] } } } });
    const after = new Date();
    expect(patch.status, patch.text).toBe(200);
    expect(patch.body).toEqual({ ...INITIAL, production: { max_backups: 10, default_config: { schedule: [{ interval: '1h', count: 24 }], manual_count: 3 } } });
    expect((await s.request('GET', '/v1/data-retention', { token })).body).toEqual(patch.body);
    const production = (await s.request('GET', `/v1/policies/${d.production.id}`, { token })).body as { timezone: string; schedule: { interval: string; count: number }[] };
    expect(production.schedule).toEqual([{ interval: '1h', count: 24 }]);
    for (const c of followers) {
      const now = (await s.request('GET', `/v1/clusters/${c.id}`, { token })).body;
      // hourly now: the cluster's next hourly slot after the change (computed at some instant
      // of the PATCH), within the hour, and no later than the daily one it had (the two are the
      // same instant when that daily slot falls within the coming hour: both use the cluster's
      // offset into the first hour of a bucket)
      const expected = [before, after].map((t) => nextRunAt(production, c.id, t)!.toISOString());
      expect(expected).toContain(now.next_backup_at);
      expect(Date.parse(now.next_backup_at)).toBeLessThanOrEqual(after.getTime() + 3600_000);
      expect(Date.parse(now.next_backup_at)).toBeLessThanOrEqual(Date.parse(c.next_backup_at!));
    }
    expect((await s.request('GET', `/v1/clusters/${explicit.id}`, { token })).body.next_backup_at).toBe(explicit.next_backup_at);
    expect((await s.request('GET', `/v1/clusters/${staging.id}`, { token })).body.next_backup_at).toBeNull();
    // back to the initial values for the other tests
    expect((await s.request('PATCH', '/v1/data-retention', { token, body: { production: { default_config: { schedule: [{ interval: '1d', count: 2 }] } } } })).status).toBe(200);
  });

  it("follows the environment's default across a change of environment, unless the policy was chosen", async () => {
    const d = await defaults();
    const own = await s.request('POST', '/v1/policies', { token, body: { name: 'chosen' } });
    const follows = await cluster('moves', { environment: 'staging' });
    const chosen = await cluster('stays', { environment: 'staging', policy_id: own.body.id });
    const moved = await s.request('PATCH', `/v1/clusters/${follows.id}`, { token, body: { environment: 'production' } });
    expect(moved.status).toBe(200);
    expect(moved.body.policy_id).toBe(d.production.id);
    expect(moved.body.next_backup_at).not.toBeNull();
    const kept = await s.request('PATCH', `/v1/clusters/${chosen.id}`, { token, body: { environment: 'production' } });
    expect(kept.body.policy_id).toBe(own.body.id);
    // policy_id null: back to following its environment's default
    const back = await s.request('PATCH', `/v1/clusters/${chosen.id}`, { token, body: { policy_id: null } });
    expect(back.body.policy_id).toBe(d.production.id);
    const again = await s.request('PATCH', `/v1/clusters/${chosen.id}`, { token, body: { environment: 'development' } });
    expect(again.body).toMatchObject({ policy_id: d.development.id, next_backup_at: null });
    // choosing a policy explicitly stops the following
    const pick = await s.request('PATCH', `/v1/clusters/${follows.id}`, { token, body: { policy_id: d.production.id } });
    expect(pick.status).toBe(200);
    const stay = await s.request('PATCH', `/v1/clusters/${follows.id}`, { token, body: { environment: 'staging' } });
    expect(stay.body.policy_id).toBe(d.production.id);
  });

  it('refuses bad data-retention changes with 4xx problem+json naming the field, changing nothing', async () => {
    const before = (await s.request('GET', '/v1/data-retention', { token })).body;
    const bad = await s.request('PATCH', '/v1/data-retention', {
      token,
      body: { staging: { max_backups: 2, default_config: { manual_count: 5 } }, development: { default_config: { schedule: [{ interval: '1x', count: 1 }] } } },
    });
    expect(bad.status).toBe(422);
    expect(bad.headers['content-type']).toContain('application/problem+json');
    expect(bad.body.errors.map((e: { path: string }) => e.path).sort()).toEqual(['body.development.default_config.schedule.0.interval', 'body.staging.default_config.manual_count']);
    const unknown = await s.request('PATCH', '/v1/data-retention', { token, body: { preview: { max_backups: 1 } } });
    expect([400, 422]).toContain(unknown.status);
    expect(unknown.headers['content-type']).toContain('application/problem+json');
    const operator = await createKey(s, token, 'operator');
    expect((await s.request('PATCH', '/v1/data-retention', { token: operator, body: { staging: { max_backups: 5 } } })).status).toBe(403);
    expect((await s.request('GET', '/v1/data-retention', { token })).body).toEqual(before);
  });

  it("keeps tenants apart: one tenant's change is not another's", async () => {
    const other = await createTenant(s);
    const res = await s.request('PATCH', '/v1/data-retention', { token: other.adminToken, body: { staging: { max_backups: 4, default_config: { schedule: [{ interval: '1d', count: 1 }] } } } });
    expect(res.status).toBe(200);
    expect(res.body.staging).toEqual({ max_backups: 4, default_config: { schedule: [{ interval: '1d', count: 1 }], manual_count: 3 } });
    expect((await s.request('GET', '/v1/data-retention', { token })).body.staging).toEqual(INITIAL.staging);
    // the platform token names no tenant
    const platform = await s.request('GET', '/v1/data-retention', { token: 'test-platform-token-0123456789' });
    expect(platform.status).toBeGreaterThanOrEqual(400);
    expect(platform.status).toBeLessThan(500);
  });
});

describe('the environment-defaults migration', () => {
  it("keeps an existing tenant's default policy as its production default and adds staging and development ones", async () => {
    const db = await createTestDatabase({ empty: true });
    const older = await mkdtemp(path.join(tmpdir(), 'bk-migrations-'));
    try {
      // the migrations before this one, then data as it was, then the rest
      for (const name of await readdir(MIGRATIONS_DIR)) {
        if (name < '20261202030000_environment_defaults') await cp(path.join(MIGRATIONS_DIR, name), path.join(older, name), { recursive: true });
      }
      await migrate(db.url, older);
      const c = new pg.Client({ connectionString: db.url });
      await c.connect();
      try {
        const tenant = randomUUID();
        const def = randomUUID();
        const other = randomUUID();
        await c.query(`INSERT INTO tenants (id, name, data_dir) VALUES ($1, 'old', 'old')`, [tenant]);
        const policy = `INSERT INTO policies (id, tenant_id, name, is_default, timezone, schedule, max_backups, manual_count, manual_rate_limit, failed_count)
                        VALUES ($1, $2, $3, $4, 'Europe/Berlin', '[{"interval":"1w","count":4}]', 7, 2, NULL, 1)`;
        await c.query(policy, [def, tenant, 'default', true]);
        await c.query(policy, [other, tenant, 'staging default', false]); // a name the migration must not reuse
        const cl = `INSERT INTO clusters (id, tenant_id, name, environment, region, backup_location, policy_id, components) VALUES ($1, $2, $3, $4, 'eu-1', 'same-region', $5, '[]')`;
        const prod = randomUUID();
        const stag = randomUUID();
        await c.query(cl, [prod, tenant, 'p', 'production', def]);
        await c.query(cl, [stag, tenant, 's', 'staging', def]);
        // a tenant that (wrongly) had no default policy at all gets all three
        const bare = randomUUID();
        await c.query(`INSERT INTO tenants (id, name, data_dir) VALUES ($1, 'bare', 'bare')`, [bare]);
        await migrate(db.url);
        const bareDefaults = await c.query(`SELECT name, default_for::text, schedule, max_backups, manual_count, manual_rate_limit, failed_count, scheduled_live FROM policies p WHERE tenant_id = $1 ORDER BY p.default_for`, [bare]);
        expect(bareDefaults.rows).toEqual([
          { name: 'production default', default_for: 'production', schedule: [{ interval: '1d', count: 2 }], max_backups: 10, manual_count: 3, manual_rate_limit: '1h', failed_count: 3, scheduled_live: true },
          { name: 'staging default', default_for: 'staging', schedule: [], max_backups: 10, manual_count: 3, manual_rate_limit: '1h', failed_count: 3, scheduled_live: true },
          { name: 'development default', default_for: 'development', schedule: [], max_backups: 10, manual_count: 3, manual_rate_limit: '1h', failed_count: 3, scheduled_live: true },
        ]);
        const { rows } = await c.query(`SELECT id::text, name, is_default, default_for::text, schedule, max_backups FROM policies WHERE tenant_id = $1 ORDER BY default_for NULLS LAST`, [tenant]);
        expect(rows).toHaveLength(4);
        expect(rows.find((r) => r.default_for === 'production')).toMatchObject({ id: def, name: 'default', is_default: true, schedule: [{ interval: '1w', count: 4 }], max_backups: 7 });
        const staging = rows.find((r) => r.default_for === 'staging');
        expect(staging).toMatchObject({ is_default: true, schedule: [], max_backups: 10 });
        expect(staging.name).toMatch(/^staging default \([0-9a-f]{6}\)$/);
        expect(rows.find((r) => r.default_for === 'development')).toMatchObject({ name: 'development default', is_default: true, schedule: [] });
        expect(rows.find((r) => r.id === other)).toMatchObject({ is_default: false, default_for: null });
        // clusters keep their policy: the staging one is not switched to manual-only backups
        const clusters = await c.query(`SELECT id::text, policy_id::text, policy_follows_environment FROM clusters WHERE tenant_id = $1`, [tenant]);
        expect(Object.fromEntries(clusters.rows.map((r) => [r.id, [r.policy_id, r.policy_follows_environment]]))).toEqual({ [prod]: [def, true], [stag]: [def, false] });
      } finally {
        await c.end();
      }
    } finally {
      await rm(older, { recursive: true, force: true });
      await db.drop();
    }
  });
});
