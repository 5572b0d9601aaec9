import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, createKey, createTenant, startStack, type Stack } from './helpers/stack.js';

let s: Stack;
beforeAll(async () => {
  s = await startStack({ worker: false });
});
afterAll(async () => s.close());

describe('platform token and tenants', () => {
  it('creates a tenant with its first admin key, shown once', async () => {
    const res = await s.request('POST', '/v1/tenants', { token: ADMIN_TOKEN, body: { name: 'acme' } });
    expect(res.status).toBe(201);
    expect(res.headers.location).toBe(`/v1/tenants/${res.body.tenant.id}`);
    expect(res.body.api_key).toMatchObject({ role: 'admin', token: expect.stringMatching(/^bk_/) });
    const keys = await s.request('GET', '/v1/api-keys', { token: res.body.api_key.token });
    expect(keys.status).toBe(200);
    expect(keys.body.items).toHaveLength(1);
    expect(keys.body.items[0]).not.toHaveProperty('token');
    expect(JSON.stringify(keys.body)).not.toContain(res.body.api_key.token);
    // Only a hash is stored.
    const stored = await s.rt.db.apiKey.findFirstOrThrow({ where: { tenantId: res.body.tenant.id } });
    expect(stored.tokenHash).not.toContain(res.body.api_key.token);
    expect(stored.tokenHash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('gives each tenant a default policy per environment type with the spec values', async () => {
    const { adminToken } = await createTenant(s);
    const res = await s.request('GET', '/v1/policies', { token: adminToken });
    expect(res.body.items).toHaveLength(3);
    const of = (env: string) => res.body.items.find((p: { environment: string }) => p.environment === env);
    const rest = { is_default: true, timezone: 'UTC', max_backups: 10, manual_count: 3, manual_rate_limit: '1h', failed_count: 3 };
    // SPEC section 11: production backs up daily (Upsun's default), staging and development are manual only.
    expect(of('production')).toMatchObject({ ...rest, schedule: [{ interval: '1d', count: 2 }] });
    expect(of('staging')).toMatchObject({ ...rest, schedule: [] });
    expect(of('development')).toMatchObject({ ...rest, schedule: [] });
  });

  it('refuses a duplicate tenant name with 409', async () => {
    await s.request('POST', '/v1/tenants', { token: ADMIN_TOKEN, body: { name: 'dup' } });
    const res = await s.request('POST', '/v1/tenants', { token: ADMIN_TOKEN, body: { name: 'dup' } });
    expect(res.status).toBe(409);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  });

  it('lists tenants for the platform token only', async () => {
    const { adminToken } = await createTenant(s);
    expect((await s.request('GET', '/v1/tenants', { token: ADMIN_TOKEN })).status).toBe(200);
    expect((await s.request('GET', '/v1/tenants', { token: adminToken })).status).toBe(403);
    expect((await s.request('POST', '/v1/tenants', { token: adminToken, body: { name: 'x' } })).status).toBe(403);
    // The platform token manages tenants, nothing inside them.
    expect((await s.request('GET', '/v1/clusters', { token: ADMIN_TOKEN })).status).toBe(403);
  });
});

describe('authentication', () => {
  it('answers 401 problem+json without a valid key', async () => {
    for (const headers of [{} as Record<string, string>, { authorization: 'Bearer nope' }, { authorization: 'Basic abc' }, { authorization: 'Bearer ' + 'x'.repeat(5000) }]) {
      const res = await s.request('GET', '/v1/clusters', { headers });
      expect(res.status).toBe(401);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(res.headers['www-authenticate']).toContain('Bearer');
      expect(res.body).toMatchObject({ status: 401, title: 'Unauthorized', type: expect.any(String), detail: expect.any(String) });
    }
  });

  it('rejects an expired key and accepts it before expiry', async () => {
    const { adminToken } = await createTenant(s);
    const future = new Date(Date.now() + 3600_000).toISOString();
    const ok = await s.request('POST', '/v1/api-keys', { token: adminToken, body: { name: 'soon', role: 'viewer', expires_at: future } });
    expect(ok.status).toBe(201);
    expect((await s.request('GET', '/v1/clusters', { token: ok.body.token })).status).toBe(200);
    await s.rt.db.apiKey.update({ where: { id: ok.body.id }, data: { expiresAt: new Date(Date.now() - 1000) } });
    expect((await s.request('GET', '/v1/clusters', { token: ok.body.token })).status).toBe(401);
    const past = await s.request('POST', '/v1/api-keys', { token: adminToken, body: { name: 'old', role: 'viewer', expires_at: '2000-01-01T00:00:00Z' } });
    expect(past.status).toBe(422);
  });

  it('revokes a key at once, and never the last admin key', async () => {
    const { adminToken } = await createTenant(s);
    const keys = await s.request('GET', '/v1/api-keys', { token: adminToken });
    const last = await s.request('DELETE', `/v1/api-keys/${keys.body.items[0].id}`, { token: adminToken });
    expect(last.status).toBe(409);
    const viewer = await s.request('POST', '/v1/api-keys', { token: adminToken, body: { name: 'v', role: 'viewer' } });
    expect((await s.request('GET', '/v1/clusters', { token: viewer.body.token })).status).toBe(200);
    expect((await s.request('DELETE', `/v1/api-keys/${viewer.body.id}`, { token: adminToken })).status).toBe(204);
    expect((await s.request('GET', '/v1/clusters', { token: viewer.body.token })).status).toBe(401);
    expect((await s.request('DELETE', `/v1/api-keys/${viewer.body.id}`, { token: adminToken })).status).toBe(404);
  });

  it('keeps an admin key when two admins revoke each other\'s key at once', async () => {
    for (let round = 0; round < 5; round++) {
      const { tenantId, adminToken } = await createTenant(s);
      const second = await s.request('POST', '/v1/api-keys', { token: adminToken, body: { name: 'second admin', role: 'admin' } });
      const first = (await s.request('GET', '/v1/api-keys', { token: adminToken })).body.items.find((k: { id: string }) => k.id !== second.body.id);
      const [a, b] = await Promise.all([
        s.request('DELETE', `/v1/api-keys/${second.body.id}`, { token: adminToken }),
        s.request('DELETE', `/v1/api-keys/${first.id}`, { token: second.body.token }),
      ]);
      // One revocation wins. The other is refused as the last admin key (409), or, when the
      // winner revoked the very key it is made with before it was checked, as unauthenticated (401).
      const [won, lost] = [a.status, b.status].sort();
      expect(won).toBe(204);
      expect([401, 409]).toContain(lost);
      expect(await s.rt.db.apiKey.count({ where: { tenantId, role: 'admin', revokedAt: null } })).toBe(1);
    }
  });

  it('records when a key was last used', async () => {
    const { adminToken } = await createTenant(s);
    await s.request('GET', '/v1/clusters', { token: adminToken });
    const keys = await s.request('GET', '/v1/api-keys', { token: adminToken });
    expect(keys.body.items[0].last_used_at).not.toBeNull();
  });
});

describe('role boundaries', () => {
  const cases: { method: string; url: (ids: Ids) => string; body?: unknown; min: 'viewer' | 'operator' | 'admin' }[] = [
    { method: 'GET', url: () => '/v1/clusters', min: 'viewer' },
    { method: 'GET', url: (i) => `/v1/clusters/${i.cluster}`, min: 'viewer' },
    { method: 'GET', url: () => '/v1/policies', min: 'viewer' },
    { method: 'GET', url: (i) => `/v1/policies/${i.policy}`, min: 'viewer' },
    { method: 'GET', url: (i) => `/v1/clusters/${i.cluster}/backups`, min: 'viewer' },
    { method: 'GET', url: (i) => `/v1/clusters/${i.cluster}/retention`, min: 'viewer' },
    { method: 'POST', url: (i) => `/v1/clusters/${i.cluster}/backups`, min: 'operator' },
    { method: 'DELETE', url: (i) => `/v1/clusters/${i.cluster}/backups/00000000-0000-4000-8000-000000000000`, min: 'operator' },
    { method: 'POST', url: () => '/v1/policies', body: { name: 'p' }, min: 'admin' },
    { method: 'PATCH', url: (i) => `/v1/policies/${i.policy}`, body: { failed_count: 2 }, min: 'admin' },
    { method: 'POST', url: () => '/v1/clusters', body: { name: 'c2', components: [{ name: 'f', type: 'directory', config: { path: 'x' } }] }, min: 'admin' },
    { method: 'PATCH', url: (i) => `/v1/clusters/${i.cluster}`, body: { region: 'eu-2' }, min: 'admin' },
    { method: 'DELETE', url: (i) => `/v1/clusters/${i.cluster}`, min: 'admin' },
    { method: 'GET', url: () => '/v1/api-keys', min: 'admin' },
    { method: 'POST', url: () => '/v1/api-keys', body: { name: 'k', role: 'viewer' }, min: 'admin' },
  ];
  type Ids = { cluster: string; policy: string };
  const rank = { viewer: 1, operator: 2, admin: 3 };

  it('answers 403 to every role below the one an operation needs', async () => {
    const { adminToken, dir } = await createTenant(s);
    const { mkdir } = await import('node:fs/promises');
    await mkdir(`${dir}/rb`, { recursive: true });
    const tokens = { viewer: await createKey(s, adminToken, 'viewer'), operator: await createKey(s, adminToken, 'operator') };
    const cluster = await s.request('POST', '/v1/clusters', {
      token: adminToken,
      body: { name: 'rb', deletion_protection: true, components: [{ name: 'f', type: 'directory', config: { path: 'rb' } }] },
    });
    const policy = await s.request('POST', '/v1/policies', { token: adminToken, body: { name: 'rbp' } });
    const ids = { cluster: cluster.body.id, policy: policy.body.id };
    for (const c of cases) {
      for (const role of ['viewer', 'operator'] as const) {
        const res = await s.request(c.method, c.url(ids), { token: tokens[role], body: c.body });
        if (rank[role] < rank[c.min]) {
          expect(res.status, `${role} ${c.method} ${c.url(ids)}`).toBe(403);
          expect(res.body.detail).toContain(c.min);
        } else expect(res.status, `${role} ${c.method} ${c.url(ids)}`).not.toBe(403);
      }
    }
  });
});

describe('tenant isolation: another tenant\'s id answers 404 exactly like a missing one', () => {
  it('holds for every resource', async () => {
    const a = await createTenant(s);
    const b = await createTenant(s);
    const { mkdir } = await import('node:fs/promises');
    await mkdir(`${a.dir}/iso`, { recursive: true });
    const cluster = await s.request('POST', '/v1/clusters', { token: a.adminToken, body: { name: 'iso', components: [{ name: 'f', type: 'directory', config: { path: 'iso' } }] } });
    const policy = await s.request('POST', '/v1/policies', { token: a.adminToken, body: { name: 'isop' } });
    const keyA = await s.request('POST', '/v1/api-keys', { token: a.adminToken, body: { name: 'k', role: 'viewer' } });
    const backup = await s.request('POST', `/v1/clusters/${cluster.body.id}/backups`, { token: a.adminToken });
    expect(backup.status).toBe(202);
    const missing = '00000000-0000-4000-8000-000000000001';
    const probes: [string, (id: string) => string, unknown?][] = [
      ['GET', (id) => `/v1/clusters/${id}`],
      ['PATCH', (id) => `/v1/clusters/${id}`, { region: 'eu-9' }],
      ['DELETE', (id) => `/v1/clusters/${id}`],
      ['GET', (id) => `/v1/clusters/${id}/backups`],
      ['POST', (id) => `/v1/clusters/${id}/backups`],
      ['GET', (id) => `/v1/clusters/${id}/retention`],
      ['GET', (id) => `/v1/policies/${id}`],
      ['PATCH', (id) => `/v1/policies/${id}`, { failed_count: 1 }],
      ['DELETE', (id) => `/v1/policies/${id}`],
      ['DELETE', (id) => `/v1/api-keys/${id}`],
    ];
    const owned: Record<string, string> = { clusters: cluster.body.id, policies: policy.body.id, 'api-keys': keyA.body.id };
    for (const [method, url, body] of probes) {
      const resource = url('X').split('/')[2]!;
      const foreign = await s.request(method, url(owned[resource]!), { token: b.adminToken, body });
      const absent = await s.request(method, url(missing), { token: b.adminToken, body });
      expect(foreign.status, `${method} ${url('id')}`).toBe(404);
      expect(absent.status).toBe(404);
      expect(foreign.body.detail).toBe(absent.body.detail);
    }
    const fb = await s.request('GET', `/v1/clusters/${cluster.body.id}/backups/${backup.body.id}`, { token: b.adminToken });
    expect(fb.status).toBe(404);
    const fd = await s.request('DELETE', `/v1/clusters/${cluster.body.id}/backups/${backup.body.id}`, { token: b.adminToken });
    expect(fd.status).toBe(404);
    // Lists never show another tenant's resources.
    for (const url of ['/v1/clusters', '/v1/policies', '/v1/api-keys']) {
      const list = await s.request('GET', url, { token: b.adminToken });
      expect(JSON.stringify(list.body)).not.toContain(owned[url.split('/')[2]!]!);
    }
    // A cluster cannot use another tenant's policy either.
    const cross = await s.request('POST', '/v1/clusters', { token: b.adminToken, body: { name: 'x', policy_id: policy.body.id, components: [{ name: 'f', type: 'directory', config: { path: 'iso' } }] } });
    expect(cross.status).toBe(422);
    expect(cross.body.errors).toContainEqual({ path: 'body.policy_id', message: 'no such policy' });
  });
});
