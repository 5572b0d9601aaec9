import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, createKey, createTenant, startStack, type Stack } from './helpers/stack.js';

describe('audit log', () => {
  let s: Stack;
  beforeAll(async () => {
    s = await startStack({ worker: false });
  });
  afterAll(async () => s.close());

  it('records every mutating request with tenant, key, action, target, outcome and request id', async () => {
    const created = await s.request('POST', '/v1/tenants', { token: ADMIN_TOKEN, body: { name: 'audited' }, headers: { 'x-request-id': 'req-tenant-1' } });
    const token = created.body.api_key.token;
    await mkdir(path.join(s.dataRoot, created.body.tenant.data_dir, 'aud'), { recursive: true });
    const c = await s.request('POST', '/v1/clusters', { token, body: { name: 'c', components: [{ name: 'f', type: 'directory', config: { path: 'aud' } }] }, headers: { 'x-request-id': 'req-c-1' } });
    const bad = await s.request('POST', '/v1/policies', { token, body: { name: 'p', max_backups: 0 } });
    expect(bad.status).toBe(422);
    const viewer = await createKey(s, token, 'viewer');
    const denied = await s.request('DELETE', `/v1/clusters/${c.body.id}`, { token: viewer });
    expect(denied.status).toBe(403);
    await s.request('GET', '/v1/clusters', { token }); // reads are not audited

    const res = await s.request('GET', '/v1/audit-events?limit=100', { token });
    expect(res.status).toBe(200);
    const actions = res.body.items.map((e: { action: string }) => e.action);
    expect(actions).toEqual(['cluster.delete', 'api_key.create', 'policy.create', 'cluster.create', 'tenant.create']);
    const [del, , pol, cl, ten] = res.body.items;
    expect(cl).toMatchObject({ target: { type: 'cluster', id: c.body.id }, outcome: 'success', status_code: 201, request_id: 'req-c-1', actor: { type: 'api_key', key_id: created.body.api_key.id } });
    expect(pol).toMatchObject({ outcome: 'failure', status_code: 422 });
    expect(del).toMatchObject({ outcome: 'failure', status_code: 403, target: { id: c.body.id } });
    expect(ten).toMatchObject({ actor: { type: 'platform', key_id: null }, target: { type: 'tenant', id: created.body.tenant.id }, request_id: 'req-tenant-1' });

    const filtered = await s.request('GET', `/v1/audit-events?action=cluster.create&target_id=${c.body.id}`, { token });
    expect(filtered.body.items).toHaveLength(1);
    expect((await s.request('GET', '/v1/audit-events?action=nope', { token })).status).toBe(422);
    expect((await s.request('GET', '/v1/audit-events', { token: viewer })).status).toBe(403);
    const other = await createTenant(s);
    const theirs = await s.request('GET', '/v1/audit-events', { token: other.adminToken });
    expect(theirs.body.items.map((e: { action: string }) => e.action)).toEqual(['tenant.create']);
  });
});

describe('per-credential rate limit', () => {
  let s: Stack;
  beforeAll(async () => {
    s = await startStack({ worker: false, env: { RATE_LIMIT_MAX: '5', RATE_LIMIT_WINDOW_MS: '60000' } });
  });
  afterAll(async () => s.close());

  it('answers 429 problem+json with RateLimit headers past the limit, per key', async () => {
    const { adminToken } = await createTenant(s);
    const other = await createKey(s, adminToken, 'viewer'); // 1 request used by createKey
    const codes: number[] = [];
    let last;
    for (let i = 0; i < 6; i++) {
      last = await s.request('GET', '/v1/clusters', { token: adminToken });
      codes.push(last.status);
    }
    expect(codes.filter((c) => c === 429).length).toBeGreaterThanOrEqual(1);
    expect(codes[0]).toBe(200);
    expect(last!.status).toBe(429);
    expect(last!.headers['content-type']).toMatch(/problem\+json/);
    expect(last!.body).toMatchObject({ status: 429, title: 'Too Many Requests' });
    expect(Number(last!.headers['retry-after'])).toBeGreaterThan(0);
    expect(last!.headers['ratelimit-limit']).toBe('5');
    expect(last!.headers['ratelimit-remaining']).toBe('0');
    // Another key has its own budget; health checks are never limited.
    expect((await s.request('GET', '/v1/clusters', { token: other })).status).toBe(200);
    for (let i = 0; i < 10; i++) expect((await s.request('GET', '/healthz')).status).toBe(200);
  });
});
