import { mkdir } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, createTenant, startStack, type Stack } from './helpers/stack.js';

/** SPEC section 11: a cluster's hooks, configured by admins, guarded like webhooks. */
let s: Stack;
let token: string;
let receiver: Server;
let hits = 0;
let hookUrl: string;
beforeAll(async () => {
  receiver = createServer((req, res) => {
    hits++;
    req.resume();
    req.on('end', () => res.writeHead(204).end());
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
  s = await startStack({ worker: false, env: { WEBHOOK_ALLOWED_HOSTS: '127.0.0.1', WEBHOOK_ALLOW_HTTP: 'true' } });
  const t = await createTenant(s);
  token = t.adminToken;
  await mkdir(path.join(t.dir, 'app'), { recursive: true });
});
afterAll(async () => {
  await s.close();
  receiver.close();
});

const components = [{ name: 'files', type: 'directory', config: { path: 'app' } }];
const NONE = { pre_backup: null, post_backup: null, pre_restore: null, post_restore: null };

describe('cluster hooks', () => {
  it('are saved and shown, with the signing secret in the answer that gave the first hook only', async () => {
    const plain = await s.request('POST', '/v1/clusters', { token, body: { name: 'no-hooks', components } });
    expect(plain.status).toBe(201);
    expect(plain.body.hooks).toEqual(NONE);
    expect(plain.body.hooks_secret).toBeUndefined();

    const res = await s.request('POST', '/v1/clusters', { token, body: { name: 'hooked', components, hooks: { pre_backup: { url: hookUrl, timeout_s: 5 }, post_backup: { url: hookUrl, timeout_s: 5 } } } });
    expect(res.status, res.text).toBe(201);
    expect(res.body.hooks).toEqual({ ...NONE, pre_backup: { url: hookUrl, timeout_s: 5 }, post_backup: { url: hookUrl, timeout_s: 5 } });
    expect(res.body.hooks_secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    const got = await s.request('GET', `/v1/clusters/${res.body.id}`, { token });
    expect(got.body.hooks).toEqual(res.body.hooks);
    expect(got.text).not.toContain(res.body.hooks_secret);
    expect((await s.request('GET', '/v1/clusters', { token })).text).not.toContain(res.body.hooks_secret);
    const row = await s.rt.db.cluster.findUniqueOrThrow({ where: { id: res.body.id } });
    expect(row.hooksSecretEnc).toMatch(/^enc:v1:/);
    expect(s.rt.box.decrypt(row.hooksSecretEnc!)).toBe(res.body.hooks_secret);
    expect(s.logs()).not.toContain(res.body.hooks_secret);

    // a change keeps the hooks not named, null removes one, and the secret is not shown again
    const patched = await s.request('PATCH', `/v1/clusters/${res.body.id}`, { token, body: { hooks: { post_backup: null, pre_restore: { url: `${hookUrl}?stop=1`, timeout_s: 300 } } } });
    expect(patched.status, patched.text).toBe(200);
    expect(patched.body.hooks).toEqual({ ...NONE, pre_backup: { url: hookUrl, timeout_s: 5 }, pre_restore: { url: `${hookUrl}?stop=1`, timeout_s: 300 } });
    expect(patched.body.hooks_secret).toBeUndefined();

    // a cluster that gets its first hook by a change is given its secret then
    const later = await s.request('PATCH', `/v1/clusters/${plain.body.id}`, { token, body: { hooks: { pre_restore: { url: hookUrl, timeout_s: 1 } } } });
    expect(later.body.hooks_secret).toMatch(/^whsec_/);
    expect(hits).toBe(0); // saving calls nothing
  });

  it('refuse a timeout outside 1..300 and a URL the SSRF guard refuses, naming each, changing nothing', async () => {
    const c = await s.request('POST', '/v1/clusters', { token, body: { name: 'bad-hooks', components } });
    const bad = await s.request('PATCH', `/v1/clusters/${c.body.id}`, {
      token,
      body: {
        hooks: {
          pre_backup: { url: hookUrl, timeout_s: 0 },
          post_backup: { url: hookUrl, timeout_s: 301 },
          pre_restore: { url: 'http://169.254.169.254/latest/meta-data', timeout_s: 10 },
          post_restore: { url: 'ftp://example.com/x', timeout_s: 10 },
        },
      },
    });
    expect(bad.status).toBe(422);
    expect(bad.headers['content-type']).toContain('application/problem+json');
    expect(bad.body.errors.map((e: { path: string }) => e.path).sort()).toEqual([
      'body.hooks.post_backup.timeout_s',
      'body.hooks.post_restore.url',
      'body.hooks.pre_backup.timeout_s',
      'body.hooks.pre_restore.url',
    ]);
    expect((await s.request('GET', `/v1/clusters/${c.body.id}`, { token })).body.hooks).toEqual(NONE);
    const credentials = await s.request('POST', '/v1/clusters', { token, body: { name: 'cred-hooks', components, hooks: { pre_backup: { url: 'https://user:pw@example.com/h', timeout_s: 5 } } } });
    expect(credentials.status).toBe(422);
    expect(credentials.body.errors[0].path).toBe('body.hooks.pre_backup.url');
    const fraction = await s.request('POST', '/v1/clusters', { token, body: { name: 'frac-hooks', components, hooks: { pre_backup: { url: hookUrl, timeout_s: 1.5 } } } });
    expect(fraction.status).toBeGreaterThanOrEqual(400);
    expect(fraction.status).toBeLessThan(500);
  });

  it('are changed by admins only', async () => {
    const c = await s.request('POST', '/v1/clusters', { token, body: { name: 'admin-hooks', components } });
    const operator = await createKey(s, token, 'operator');
    const res = await s.request('PATCH', `/v1/clusters/${c.body.id}`, { token: operator, body: { hooks: { pre_backup: { url: hookUrl, timeout_s: 5 } } } });
    expect(res.status).toBe(403);
    expect((await s.request('GET', `/v1/clusters/${c.body.id}`, { token })).body.hooks).toEqual(NONE);
  });
});
