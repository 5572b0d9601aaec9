import { mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTenant, startStack, type Stack } from './helpers/stack.js';
import { tenantServerUrl } from './helpers/db.js';

let s: Stack;
let token: string;
// The tenant's folder, DATA_ROOT/<data_dir>: where its directory components live.
let home: string;
const SECRET = 'S3cr3t-p4ss';
beforeAll(async () => {
  s = await startStack({ worker: false });
  const t = await createTenant(s);
  token = t.adminToken;
  home = t.dir;
  await mkdir(path.join(home, 'app', 'uploads'), { recursive: true });
  await writeFile(path.join(home, 'app', 'uploads', 'a.txt'), 'a');
});
afterAll(async () => s.close());

const dir = (p: string, name = 'files') => ({ name, type: 'directory', config: { path: p } });
const pgc = (url: string, name = 'db') => ({ name, type: 'postgres', config: { url } });

describe('clusters', () => {
  it('creates with defaults, the default policy and a next_backup_at', async () => {
    const res = await s.request('POST', '/v1/clusters', { token, body: { name: 'c1', components: [dir('app/uploads')] } });
    expect(res.status).toBe(201);
    expect(res.headers.location).toBe(`/v1/clusters/${res.body.id}`);
    const policies = await s.request('GET', '/v1/policies', { token });
    expect(res.body).toMatchObject({
      environment: 'production',
      region: 'eu-1',
      backup_location: 'same-region',
      deletion_protection: false,
      status: 'active',
      policy_id: policies.body.items.find((p: { environment: string | null }) => p.environment === 'production').id,
    });
    expect(Date.parse(res.body.next_backup_at)).toBeGreaterThan(Date.now());
    expect((await s.request('GET', `/v1/clusters/${res.body.id}`, { token })).body).toEqual(res.body);
  });

  it.each([
    ['../outside', /\.\./],
    ['app/../../etc', /\.\./],
    ['/etc', /absolute|relative/],
    ['', /.+/],
  ])('refuses a directory path that leaves DATA_ROOT lexically: %s', async (p) => {
    const res = await s.request('POST', '/v1/clusters', { token, body: { name: `bad-${Math.random()}`, components: [dir(p)] } });
    expect(res.status).toBe(422);
    expect(res.body.errors.some((e: { path: string }) => e.path.startsWith('body.components.0'))).toBe(true);
  });

  it('refuses an absolute path even when it points inside the tenant\'s folder', async () => {
    const res = await s.request('POST', '/v1/clusters', { token, body: { name: 'abs-in', components: [dir(path.join(home, 'app'))] } });
    expect(res.status).toBe(422);
  });

  it('refuses a symlink that escapes the tenant\'s folder, and accepts one that stays inside', async () => {
    await symlink('/etc', path.join(home, 'escape'));
    await symlink(path.join(home, 'app'), path.join(home, 'inside'));
    const bad = await s.request('POST', '/v1/clusters', { token, body: { name: 'sym-out', components: [dir('escape')] } });
    expect(bad.status).toBe(422);
    expect(bad.body.errors[0].path).toBe('body.components.0.config.path');
    expect(bad.body.detail + JSON.stringify(bad.body.errors)).not.toContain(s.dataRoot); // no server paths leak
    const ok = await s.request('POST', '/v1/clusters', { token, body: { name: 'sym-in', components: [dir('inside')] } });
    expect(ok.status).toBe(201);
  });

  it('refuses a directory that does not exist', async () => {
    const res = await s.request('POST', '/v1/clusters', { token, body: { name: 'nope', components: [dir('no/such/dir')] } });
    expect(res.status).toBe(422);
  });

  it('encrypts postgres URLs at rest and masks them in every response and log', async () => {
    const port = new URL(tenantServerUrl()).port; // the tenants' server, not the service's own
    const url = `postgresql://backup:${SECRET}@127.0.0.1:${port}/appdb?sslmode=disable`;
    const res = await s.request('POST', '/v1/clusters', { token, body: { name: 'pg', components: [pgc(url), dir('app', 'files')] } });
    expect(res.status, res.text).toBe(201);
    expect(res.body.components[0].config).toEqual({ url: `postgresql://backup:***@127.0.0.1:${port}/appdb?sslmode=disable`, continuous: false });
    const reads = [
      await s.request('GET', `/v1/clusters/${res.body.id}`, { token }),
      await s.request('GET', '/v1/clusters', { token }),
      await s.request('PATCH', `/v1/clusters/${res.body.id}`, { token, body: { environment: 'staging' } }),
    ];
    for (const r of [res, ...reads]) expect(r.text).not.toContain(SECRET);
    const row = await s.rt.db.cluster.findUniqueOrThrow({ where: { id: res.body.id } });
    expect(JSON.stringify(row.components)).not.toContain(SECRET);
    expect(JSON.stringify(row.components)).toContain('enc:v1:');
    expect(s.logs()).not.toContain(SECRET);
  });

  it('refuses invalid postgres URLs, duplicate component names and too many components', async () => {
    const res = await s.request('POST', '/v1/clusters', {
      token,
      body: { name: 'bad-pg', components: [pgc('mysql://x@h/db', 'a'), pgc('postgresql://h', 'b'), dir('app', 'a')] },
    });
    expect(res.status).toBe(422);
    expect(res.body.errors.map((e: { path: string }) => e.path)).toEqual(['body.components.0.config.url', 'body.components.1.config.url', 'body.components.2.name']);
    const many = await s.request('POST', '/v1/clusters', { token, body: { name: 'many', components: Array.from({ length: 21 }, (_, i) => dir('app', `c${i}`)) } });
    expect(many.status).toBe(422);
    const none = await s.request('POST', '/v1/clusters', { token, body: { name: 'none', components: [] } });
    expect(none.status).toBe(422);
  });

  it('refuses dual-region without a secondary store (422)', async () => {
    const res = await s.request('POST', '/v1/clusters', { token, body: { name: 'dual', backup_location: 'dual-region', components: [dir('app')] } });
    expect(res.status).toBe(422);
    expect(res.body.errors[0].path).toBe('body.backup_location');
  });

  it('refuses duplicate cluster names (409)', async () => {
    await s.request('POST', '/v1/clusters', { token, body: { name: 'same', components: [dir('app')] } });
    expect((await s.request('POST', '/v1/clusters', { token, body: { name: 'same', components: [dir('app')] } })).status).toBe(409);
  });

  it('recomputes next_backup_at when the policy changes', async () => {
    const c = await s.request('POST', '/v1/clusters', { token, body: { name: 'sched', components: [dir('app')] } });
    const weekly = await s.request('POST', '/v1/policies', { token, body: { name: 'weekly', schedule: [{ interval: '1w', count: 4 }] } });
    const patched = await s.request('PATCH', `/v1/clusters/${c.body.id}`, { token, body: { policy_id: weekly.body.id } });
    expect(patched.status).toBe(200);
    expect(patched.body.policy_id).toBe(weekly.body.id);
    const next = new Date(patched.body.next_backup_at);
    expect(next.getUTCDay()).toBe(1); // ISO weeks start on Monday (UTC policy)
    expect(next.getUTCHours()).toBe(0);
  });

  it('recomputes next_backup_at of every cluster when its policy\'s schedule or time zone changes', async () => {
    const pol = await s.request('POST', '/v1/policies', { token, body: { name: 'tz-change', schedule: [{ interval: '1d', count: 7 }] } });
    const a = await s.request('POST', '/v1/clusters', { token, body: { name: 'tz-a', policy_id: pol.body.id, components: [dir('app')] } });
    const b = await s.request('POST', '/v1/clusters', { token, body: { name: 'tz-b', policy_id: pol.body.id, components: [dir('app')] } });
    const before = [a.body.next_backup_at, b.body.next_backup_at];
    // Daily in UTC starts at 00:00Z + offset; daily in Tokyo starts at 15:00Z (previous day) + offset.
    const patched = await s.request('PATCH', `/v1/policies/${pol.body.id}`, { token, body: { timezone: 'Asia/Tokyo' } });
    expect(patched.status).toBe(200);
    for (const [i, id] of [a.body.id, b.body.id].entries()) {
      const now = (await s.request('GET', `/v1/clusters/${id}`, { token })).body.next_backup_at;
      expect(now).not.toBe(before[i]);
      expect(new Date(now).getUTCHours()).toBe(15);
    }
    const hourly = await s.request('PATCH', `/v1/policies/${pol.body.id}`, { token, body: { schedule: [{ interval: '1h', count: 24 }] } });
    expect(hourly.status).toBe(200);
    const next = Date.parse((await s.request('GET', `/v1/clusters/${a.body.id}`, { token })).body.next_backup_at);
    expect(next - Date.now()).toBeLessThanOrEqual(2 * 3600_000);
    expect(next).toBeGreaterThan(Date.now());
  });

  it('deletion protection answers 409; otherwise deletion removes the cluster', async () => {
    const c = await s.request('POST', '/v1/clusters', { token, body: { name: 'protected', deletion_protection: true, components: [dir('app')] } });
    const res = await s.request('DELETE', `/v1/clusters/${c.body.id}`, { token });
    expect(res.status).toBe(409);
    expect(res.body.detail).toMatch(/deletion protection/);
    await s.request('PATCH', `/v1/clusters/${c.body.id}`, { token, body: { deletion_protection: false } });
    const del = await s.request('DELETE', `/v1/clusters/${c.body.id}`, { token });
    expect(del.status).toBe(202);
    expect(del.body.status).toBe('deleting');
    // A deleting cluster takes no backups.
    expect((await s.request('POST', `/v1/clusters/${c.body.id}/backups`, { token })).status).toBe(409);
  });
});
