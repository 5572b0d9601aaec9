import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTenant, startStack, type Stack } from './helpers/stack.js';

let s: Stack;
let token: string;
let home: string; // the tenant's folder, DATA_ROOT/<data_dir>
beforeAll(async () => {
  s = await startStack({ worker: false });
  const t = await createTenant(s);
  token = t.adminToken;
  home = t.dir;
});
afterAll(async () => s.close());

describe('policies', () => {
  it('creates with defaults for omitted fields and answers with Location', async () => {
    const res = await s.request('POST', '/v1/policies', { token, body: { name: 'daily' } });
    expect(res.status).toBe(201);
    expect(res.headers.location).toBe(`/v1/policies/${res.body.id}`);
    expect(res.body).toMatchObject({ name: 'daily', is_default: false, timezone: 'UTC', schedule: [{ interval: '1d', count: 2 }], max_backups: 10, manual_count: 3, manual_rate_limit: '1h', failed_count: 3 });
  });

  it('lists every problem of an invalid policy in one 422', async () => {
    const res = await s.request('POST', '/v1/policies', {
      token,
      body: {
        name: 'bad',
        timezone: 'Mars/Olympus',
        schedule: [{ interval: '1d', count: 0 }, { interval: '1d', count: 3 }, { interval: '0w', count: 1 }, { interval: '5x', count: 1 }],
        max_backups: 2,
        manual_count: 5,
        manual_rate_limit: 'soon',
        failed_count: -1,
      },
    });
    expect(res.status).toBe(422);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    const paths = res.body.errors.map((e: { path: string }) => e.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        'body.timezone',
        'body.schedule.0.count',
        'body.schedule.1.interval',
        'body.schedule.2.interval',
        'body.schedule.3.interval',
        'body.manual_count',
        'body.manual_rate_limit',
        'body.failed_count',
      ]),
    );
    expect(res.body.errors.find((e: { path: string }) => e.path === 'body.schedule.1.interval').message).toMatch(/duplicate/);
    expect(res.body.errors.find((e: { path: string }) => e.path === 'body.manual_count').message).toMatch(/max_backups/);
  });

  it('lists type errors of several fields at once', async () => {
    const res = await s.request('POST', '/v1/policies', { token, body: { name: '', max_backups: 'ten', schedule: 'daily', extra: 1 } });
    expect(res.status).toBe(422);
    expect(res.body.errors.length).toBeGreaterThanOrEqual(3);
  });

  it('accepts manual_rate_limit null and an empty schedule', async () => {
    const res = await s.request('POST', '/v1/policies', { token, body: { name: 'manual-only', schedule: [], manual_rate_limit: null } });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ schedule: [], manual_rate_limit: null });
  });

  it('patches with validation of the merged result', async () => {
    const p = await s.request('POST', '/v1/policies', { token, body: { name: 'patchme', max_backups: 5, manual_count: 2 } });
    const bad = await s.request('PATCH', `/v1/policies/${p.body.id}`, { token, body: { max_backups: 1 } });
    expect(bad.status).toBe(422);
    expect(bad.body.errors[0].path).toBe('body.manual_count');
    const ok = await s.request('PATCH', `/v1/policies/${p.body.id}`, { token, body: { schedule: [{ interval: '1d', count: 7 }, { interval: '1w', count: 4 }], timezone: 'Europe/Berlin' } });
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ max_backups: 5, manual_count: 2, timezone: 'Europe/Berlin', schedule: [{ interval: '1d', count: 7 }, { interval: '1w', count: 4 }] });
    expect((await s.request('GET', `/v1/policies/${p.body.id}`, { token })).body).toEqual(ok.body);
  });

  it('takes recovery_window on create and patch, null by default, and refuses a bad one naming the field', async () => {
    const plain = await s.request('POST', '/v1/policies', { token, body: { name: 'no-window' } });
    expect(plain.body.recovery_window).toBeNull();
    const p = await s.request('POST', '/v1/policies', { token, body: { name: 'pitr', recovery_window: '14d' } });
    expect(p.status, p.text).toBe(201);
    expect(p.body.recovery_window).toBe('14d');
    const patched = await s.request('PATCH', `/v1/policies/${p.body.id}`, { token, body: { recovery_window: '12h' } });
    expect(patched.status).toBe(200);
    expect((await s.request('GET', `/v1/policies/${p.body.id}`, { token })).body).toMatchObject({ recovery_window: '12h' });
    // Leaving it out of a patch keeps it; null clears it.
    expect((await s.request('PATCH', `/v1/policies/${p.body.id}`, { token, body: { max_backups: 12 } })).body.recovery_window).toBe('12h');
    expect((await s.request('PATCH', `/v1/policies/${p.body.id}`, { token, body: { recovery_window: null } })).body.recovery_window).toBeNull();
    for (const bad of [
      await s.request('POST', '/v1/policies', { token, body: { name: 'bad-window', recovery_window: '2 weeks' } }),
      await s.request('PATCH', `/v1/policies/${p.body.id}`, { token, body: { recovery_window: '0d' } }),
    ]) {
      expect(bad.status).toBe(422);
      expect(bad.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(bad.body.errors).toEqual([{ path: 'body.recovery_window', message: expect.stringMatching(/invalid interval/) }]);
    }
    expect((await s.request('GET', `/v1/policies/${p.body.id}`, { token })).body.recovery_window).toBeNull();
  });

  it('lets the environment defaults be changed but never deleted (SPEC section 11)', async () => {
    const list = await s.request('GET', '/v1/policies?limit=100', { token });
    const defaults = list.body.items.filter((p: { is_default: boolean }) => p.is_default);
    expect(defaults.map((p: { environment: string }) => p.environment).sort()).toEqual(['development', 'production', 'staging']);
    for (const def of defaults) {
      const changed = await s.request('PATCH', `/v1/policies/${def.id}`, { token, body: { max_backups: 99 } });
      expect(changed.status).toBe(200);
      expect(changed.body).toMatchObject({ id: def.id, is_default: true, environment: def.environment, max_backups: 99 });
      const del = await s.request('DELETE', `/v1/policies/${def.id}`, { token });
      expect(del.status).toBe(409);
      expect(del.body.detail).toContain(`${def.environment} environment's default policy`);
      expect((await s.request('GET', `/v1/policies/${def.id}`, { token })).status).toBe(200);
    }
  });

  it('refuses a duplicate name (409) and deletes an unused policy', async () => {
    await s.request('POST', '/v1/policies', { token, body: { name: 'twice' } });
    expect((await s.request('POST', '/v1/policies', { token, body: { name: 'twice' } })).status).toBe(409);
    const p = await s.request('POST', '/v1/policies', { token, body: { name: 'gone' } });
    expect((await s.request('DELETE', `/v1/policies/${p.body.id}`, { token })).status).toBe(204);
    expect((await s.request('GET', `/v1/policies/${p.body.id}`, { token })).status).toBe(404);
  });

  it('refuses to delete a policy that a cluster uses (409)', async () => {
    const { mkdir } = await import('node:fs/promises');
    await mkdir(`${home}/pol`, { recursive: true });
    const p = await s.request('POST', '/v1/policies', { token, body: { name: 'used' } });
    const c = await s.request('POST', '/v1/clusters', { token, body: { name: 'uses', policy_id: p.body.id, components: [{ name: 'f', type: 'directory', config: { path: 'pol' } }] } });
    expect(c.status).toBe(201);
    const res = await s.request('DELETE', `/v1/policies/${p.body.id}`, { token });
    expect(res.status).toBe(409);
    expect(res.body.detail).toMatch(/used by 1 cluster/);
  });
});
