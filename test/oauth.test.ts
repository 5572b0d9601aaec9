// SPEC section 9, OAuth2 client credentials: API clients, POST /oauth/token (RFC 6749 errors),
// JWT access tokens accepted wherever an API key is, with the client's role or a narrower scope.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { decodeJwt, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAccessTokens, deriveSigningKey } from '../src/modules/oauth/access-tokens.js';
import { createKey, createTenant, startStack, type Res, type Stack } from './helpers/stack.js';

const TTL = 120;
let s: Stack;
let a: Awaited<ReturnType<typeof createTenant>>;
let clusterId: string;

beforeAll(async () => {
  s = await startStack({ worker: false, env: { OAUTH_TOKEN_TTL_S: String(TTL) } });
  a = await createTenant(s);
  await mkdir(path.join(a.dir, 'site'), { recursive: true });
  const p = await s.request('POST', '/v1/policies', { token: a.adminToken, body: { name: 'no-limit', manual_rate_limit: null } });
  expect(p.status, p.text).toBe(201);
  const c = await s.request('POST', '/v1/clusters', { token: a.adminToken, body: { name: 'web', policy_id: p.body.id, components: [{ name: 'files', type: 'directory', config: { path: 'site' } }] } });
  expect(c.status, c.text).toBe(201);
  clusterId = c.body.id;
});
afterAll(async () => s.close());

async function createClient(adminToken: string, role: 'viewer' | 'operator' | 'admin', name = `${role}-client`) {
  const res = await s.request('POST', '/v1/api-clients', { token: adminToken, body: { name, role } });
  expect(res.status, res.text).toBe(201);
  return res.body as { id: string; client_id: string; client_secret: string; role: string };
}

const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;

/** POST /oauth/token with a form body; `auth` is an Authorization header value. */
async function tokenRequest(form: Record<string, string>, o: { auth?: string; contentType?: string } = {}): Promise<Res> {
  const headers: Record<string, string> = { 'content-type': o.contentType ?? 'application/x-www-form-urlencoded' };
  if (o.auth) headers.authorization = o.auth;
  return s.request('POST', '/oauth/token', { rawBody: new URLSearchParams(form).toString(), headers });
}

function expectOAuthError(res: Res, status: number, error: string) {
  expect(res.status, res.text).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  expect(res.headers['cache-control']).toBe('no-store');
  expect(res.headers.pragma).toBe('no-cache');
  expect(res.body).toEqual({ error, error_description: expect.any(String) });
  expect(res.body).not.toHaveProperty('access_token');
}

describe('API clients', () => {
  it('creates a client whose secret is shown once and only hashed, audited; lists it without secrets', async () => {
    const res = await s.request('POST', '/v1/api-clients', { token: a.adminToken, body: { name: 'cron', role: 'operator' } });
    expect(res.status, res.text).toBe(201);
    expect(res.headers.location).toBe(`/v1/api-clients/${res.body.id}`);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.body).toMatchObject({ id: expect.any(String), client_id: res.body.id, name: 'cron', role: 'operator', last_used_at: null, client_secret: expect.stringMatching(/^bkcs_/) });
    const stored = await s.rt.db.apiClient.findUniqueOrThrow({ where: { id: res.body.id } });
    expect(stored.secretHash).toMatch(/^[0-9a-f]{64}$/);
    expect(stored.secretHash).not.toContain(res.body.client_secret);

    const list = await s.request('GET', '/v1/api-clients', { token: a.adminToken });
    expect(list.status).toBe(200);
    expect(list.body.items.map((c: { id: string }) => c.id)).toContain(res.body.id);
    expect(JSON.stringify(list.body)).not.toContain(res.body.client_secret);
    const one = await s.request('GET', `/v1/api-clients/${res.body.id}`, { token: a.adminToken });
    expect(one.status).toBe(200);
    expect(one.body).toEqual({ id: res.body.id, client_id: res.body.id, name: 'cron', role: 'operator', created_at: res.body.created_at, last_used_at: null });

    const audit = await s.request('GET', `/v1/audit-events?action=api_client.create&target_id=${res.body.id}`, { token: a.adminToken });
    expect(audit.body.items).toHaveLength(1);
    expect(audit.body.items[0]).toMatchObject({ outcome: 'success', status_code: 201, target: { type: 'api_client', id: res.body.id } });
  });

  it('is an admin operation, and refuses an unknown role with 422', async () => {
    const operatorKey = await createKey(s, a.adminToken, 'operator');
    for (const [method, url] of [['POST', '/v1/api-clients'], ['GET', '/v1/api-clients'], ['GET', `/v1/api-clients/${randomUUID()}`], ['DELETE', `/v1/api-clients/${randomUUID()}`]] as const) {
      const r = await s.request(method, url, { token: operatorKey, ...(method === 'POST' && { body: { name: 'x', role: 'viewer' } }) });
      expect(r.status, `${method} ${url}`).toBe(403);
    }
    const bad = await s.request('POST', '/v1/api-clients', { token: a.adminToken, body: { name: 'x', role: 'root' } });
    expect(bad.status).toBe(422);
    expect(bad.headers['content-type']).toMatch(/^application\/problem\+json/);
  });
});

describe('POST /oauth/token', () => {
  it('issues a signed JWT for HTTP Basic credentials, accepted as a bearer token with the client role', async () => {
    const c = await createClient(a.adminToken, 'operator');
    const res = await tokenRequest({ grant_type: 'client_credentials' }, { auth: basic(c.client_id, c.client_secret) });
    expect(res.status, res.text).toBe(200);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.body).toEqual({ access_token: expect.any(String), token_type: 'Bearer', expires_in: TTL, scope: 'operator' });
    const claims = decodeJwt(res.body.access_token);
    expect(claims).toMatchObject({ iss: 'backup-service', aud: 'backup-service-api', sub: c.client_id, tenant: a.tenantId, scope: 'operator', jti: expect.any(String) });
    expect(claims.exp! - claims.iat!).toBe(TTL);

    const clusters = await s.request('GET', '/v1/clusters', { token: res.body.access_token });
    expect(clusters.status).toBe(200);
    expect(clusters.body.items.map((x: { id: string }) => x.id)).toContain(clusterId);
    const created = await s.request('POST', `/v1/clusters/${clusterId}/backups`, { token: res.body.access_token });
    expect(created.status, created.text).toBe(202);
    // Operator is not admin: the token cannot manage credentials.
    expect((await s.request('GET', '/v1/api-clients', { token: res.body.access_token })).status).toBe(403);
    const listed = await s.request('GET', `/v1/api-clients/${c.id}`, { token: a.adminToken });
    expect(listed.body.last_used_at).not.toBeNull();
  });

  it('takes the credentials from the body too; an admin token is audited as the API client', async () => {
    const c = await createClient(a.adminToken, 'admin');
    const res = await tokenRequest({ grant_type: 'client_credentials', client_id: c.client_id, client_secret: c.client_secret });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toMatchObject({ token_type: 'Bearer', scope: 'admin', expires_in: TTL });
    const made = await s.request('POST', '/v1/api-clients', { token: res.body.access_token, body: { name: 'made-by-client', role: 'viewer' } });
    expect(made.status).toBe(201);
    const audit = await s.request('GET', `/v1/audit-events?target_id=${made.body.id}`, { token: a.adminToken });
    expect(audit.body.items[0]).toMatchObject({ action: 'api_client.create', actor: { type: 'api_client', key_id: c.client_id } });
  });

  it('narrows the role to a lower scope: a viewer-scoped token reads but is refused a backup with 403', async () => {
    const c = await createClient(a.adminToken, 'operator');
    const res = await tokenRequest({ grant_type: 'client_credentials', scope: 'viewer' }, { auth: basic(c.client_id, c.client_secret) });
    expect(res.status, res.text).toBe(200);
    expect(res.body.scope).toBe('viewer');
    expect(decodeJwt(res.body.access_token).scope).toBe('viewer');
    expect((await s.request('GET', `/v1/clusters/${clusterId}/backups`, { token: res.body.access_token })).status).toBe(200);
    const before = await s.rt.db.backup.count({ where: { clusterId } });
    const refused = await s.request('POST', `/v1/clusters/${clusterId}/backups`, { token: res.body.access_token });
    expect(refused.status).toBe(403);
    expect(refused.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(refused.body.detail).toMatch(/operator/);
    expect(await s.rt.db.backup.count({ where: { clusterId } })).toBe(before);
  });

  it('refuses a scope above the role, or an unknown one, with invalid_scope', async () => {
    const c = await createClient(a.adminToken, 'viewer');
    for (const scope of ['operator', 'admin', 'viewer admin', 'backups:write']) {
      expectOAuthError(await tokenRequest({ grant_type: 'client_credentials', scope }, { auth: basic(c.client_id, c.client_secret) }), 400, 'invalid_scope');
    }
    const ok = await tokenRequest({ grant_type: 'client_credentials', scope: 'viewer' }, { auth: basic(c.client_id, c.client_secret) });
    expect(ok.body.scope).toBe('viewer');
  });

  it('answers invalid_client 401 with WWW-Authenticate: Basic for a wrong secret, an unknown client or no credentials', async () => {
    const c = await createClient(a.adminToken, 'viewer');
    const wrongBasic = await tokenRequest({ grant_type: 'client_credentials' }, { auth: basic(c.client_id, c.client_secret + 'x') });
    expectOAuthError(wrongBasic, 401, 'invalid_client');
    expect(wrongBasic.headers['www-authenticate']).toMatch(/^Basic /);
    const wrongBody = await tokenRequest({ grant_type: 'client_credentials', client_id: c.client_id, client_secret: 'bkcs_nope' });
    expectOAuthError(wrongBody, 401, 'invalid_client');
    expect(wrongBody.headers['www-authenticate']).toMatch(/^Basic /);
    expectOAuthError(await tokenRequest({ grant_type: 'client_credentials' }, { auth: basic(randomUUID(), c.client_secret) }), 401, 'invalid_client');
    expectOAuthError(await tokenRequest({ grant_type: 'client_credentials' }, { auth: basic('not-a-uuid', 'x') }), 401, 'invalid_client');
    expectOAuthError(await tokenRequest({ grant_type: 'client_credentials' }), 401, 'invalid_client');
    // The same answer for an unknown client and a wrong secret: ids cannot be probed.
    expect(wrongBody.body.error_description).toBe((await tokenRequest({ grant_type: 'client_credentials', client_id: randomUUID(), client_secret: 'x' })).body.error_description);
  });

  it('answers unsupported_grant_type and invalid_request as RFC 6749 section 5.2 says', async () => {
    const c = await createClient(a.adminToken, 'viewer');
    const auth = basic(c.client_id, c.client_secret);
    expectOAuthError(await tokenRequest({ grant_type: 'password', username: 'u', password: 'p' }, { auth }), 400, 'unsupported_grant_type');
    expectOAuthError(await tokenRequest({ grant_type: 'authorization_code', code: 'x' }, { auth }), 400, 'unsupported_grant_type');
    expectOAuthError(await tokenRequest({}, { auth }), 400, 'invalid_request');
    // Both authentication methods at once, a repeated parameter, a JSON body.
    expectOAuthError(await tokenRequest({ grant_type: 'client_credentials', client_id: c.client_id, client_secret: c.client_secret }, { auth }), 400, 'invalid_request');
    const twice = await s.request('POST', '/oauth/token', { rawBody: 'grant_type=client_credentials&scope=viewer&scope=viewer', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: auth } });
    expectOAuthError(twice, 400, 'invalid_request');
    const json = await s.request('POST', '/oauth/token', { body: { grant_type: 'client_credentials' }, headers: { authorization: auth } });
    expectOAuthError(json, 400, 'invalid_request');
    expectOAuthError(await tokenRequest({ grant_type: 'client_credentials' }, { auth, contentType: 'text/plain' }), 400, 'invalid_request');
    // Unknown parameters are ignored (RFC 6749 section 3.2).
    expect((await tokenRequest({ grant_type: 'client_credentials', resource: 'x' }, { auth })).status).toBe(200);
  });
});

describe('access tokens', () => {
  it('rejects an expired token with 401 problem+json', async () => {
    const c = await createClient(a.adminToken, 'operator');
    // Signed with the service's own key, an hour ago, with the configured lifetime.
    const past = createAccessTokens({ key: deriveSigningKey(s.rt.config.encryptionKey), ttlSeconds: TTL, now: () => new Date(Date.now() - 3600_000) });
    const expired = await past.sign({ clientId: c.client_id, tenantId: a.tenantId, scope: 'operator' });
    const res = await s.request('GET', '/v1/clusters', { token: expired });
    expect(res.status).toBe(401);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.headers['www-authenticate']).toContain('Bearer');
    expect(res.body).toMatchObject({ status: 401, detail: expect.stringMatching(/expired/) });
    // The same token a moment before expiry was good: only time made it invalid.
    const fresh = createAccessTokens({ key: deriveSigningKey(s.rt.config.encryptionKey), ttlSeconds: TTL, now: () => new Date(Date.now() - (TTL - 30) * 1000) });
    expect((await s.request('GET', '/v1/clusters', { token: await fresh.sign({ clientId: c.client_id, tenantId: a.tenantId, scope: 'operator' }) })).status).toBe(200);
  });

  it('rejects a tampered token, one signed with another key, and one with the wrong type', async () => {
    const c = await createClient(a.adminToken, 'viewer');
    const good = (await tokenRequest({ grant_type: 'client_credentials' }, { auth: basic(c.client_id, c.client_secret) })).body.access_token as string;
    const [h, p, sig] = good.split('.');
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString());
    const elevated = Buffer.from(JSON.stringify({ ...claims, scope: 'admin' })).toString('base64url');
    expect((await s.request('GET', '/v1/clusters', { token: `${h}.${elevated}.${sig}` })).status).toBe(401);
    const other = createAccessTokens({ key: deriveSigningKey(Buffer.alloc(32, 7)), ttlSeconds: TTL, now: () => new Date() });
    expect((await s.request('GET', '/v1/clusters', { token: await other.sign({ clientId: c.client_id, tenantId: a.tenantId, scope: 'viewer' }) })).status).toBe(401);
    // Right key, but not an access token (typ JWT instead of at+jwt).
    const plain = await new SignJWT({ tenant: a.tenantId, scope: 'viewer' })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setIssuer('backup-service').setAudience('backup-service-api').setSubject(c.client_id).setIssuedAt().setExpirationTime('5m').setJti(randomUUID())
      .sign(deriveSigningKey(s.rt.config.encryptionKey));
    expect((await s.request('GET', '/v1/clusters', { token: plain })).status).toBe(401);
    expect((await s.request('GET', '/v1/clusters', { token: good })).status).toBe(200);
  });

  it('deleting a client rejects its live token at once, and its credentials; audited', async () => {
    const c = await createClient(a.adminToken, 'operator');
    const auth = basic(c.client_id, c.client_secret);
    const live = (await tokenRequest({ grant_type: 'client_credentials' }, { auth })).body.access_token as string;
    expect((await s.request('GET', '/v1/clusters', { token: live })).status).toBe(200);
    const del = await s.request('DELETE', `/v1/api-clients/${c.id}`, { token: a.adminToken });
    expect(del.status).toBe(204);
    const after = await s.request('GET', '/v1/clusters', { token: live });
    expect(after.status).toBe(401);
    expect(after.headers['content-type']).toMatch(/^application\/problem\+json/);
    expectOAuthError(await tokenRequest({ grant_type: 'client_credentials' }, { auth }), 401, 'invalid_client');
    expect((await s.request('GET', `/v1/api-clients/${c.id}`, { token: a.adminToken })).status).toBe(404);
    expect((await s.request('DELETE', `/v1/api-clients/${c.id}`, { token: a.adminToken })).status).toBe(404);
    const list = await s.request('GET', '/v1/api-clients?limit=100', { token: a.adminToken });
    expect(list.body.items.map((x: { id: string }) => x.id)).not.toContain(c.id);
    const audit = await s.request('GET', `/v1/audit-events?action=api_client.delete&target_id=${c.id}`, { token: a.adminToken });
    expect(audit.body.items.map((e: { status_code: number }) => e.status_code).sort()).toEqual([204, 404]);
  });
});

describe('tenant isolation', () => {
  it("another tenant neither sees nor deletes a client, and a client's token reaches only its own tenant", async () => {
    const b = await createTenant(s);
    const c = await createClient(a.adminToken, 'admin', 'a-only');
    const aClientToken = (await tokenRequest({ grant_type: 'client_credentials' }, { auth: basic(c.client_id, c.client_secret) })).body.access_token as string;
    expect((await s.request('GET', `/v1/api-clients/${c.id}`, { token: b.adminToken })).status).toBe(404);
    const del = await s.request('DELETE', `/v1/api-clients/${c.id}`, { token: b.adminToken });
    expect(del.status).toBe(404);
    expect(del.body.detail).toBe((await s.request('DELETE', `/v1/api-clients/${randomUUID()}`, { token: b.adminToken })).body.detail);
    expect((await s.request('GET', '/v1/api-clients', { token: b.adminToken })).body.items).toEqual([]);
    // Unchanged for A: still listed, still issuing tokens that work.
    expect((await s.request('GET', `/v1/api-clients/${c.id}`, { token: a.adminToken })).status).toBe(200);
    expect((await s.request('GET', '/v1/api-clients', { token: aClientToken })).body.items.map((x: { id: string }) => x.id)).toContain(c.id);
    // A's token is bound to A: B's resources are 404 to it.
    const bPolicies = await s.request('GET', '/v1/policies', { token: b.adminToken });
    const bPolicy = bPolicies.body.items[0].id as string;
    expect((await s.request('GET', `/v1/policies/${bPolicy}`, { token: aClientToken })).status).toBe(404);
    expect((await s.request('GET', `/v1/policies/${bPolicy}`, { token: b.adminToken })).status).toBe(200);
  });
});
