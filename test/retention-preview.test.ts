import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, createTenant, startStack, waitForBackup, type Stack } from './helpers/stack.js';

// POST /v1/clusters/{id}/retention/preview: GET .../retention for a policy that is not saved.
let s: Stack;
let token: string;
let viewer: string;
let clusterId: string;
let policyId: string;
const backups: string[] = [];

beforeAll(async () => {
  s = await startStack();
  const t = await createTenant(s);
  token = t.adminToken;
  viewer = await createKey(s, token, 'viewer');
  await mkdir(path.join(t.dir, 'r'), { recursive: true });
  await writeFile(path.join(t.dir, 'r', 'f.txt'), 'data');
  const p = await s.request('POST', '/v1/policies', { token, body: { name: 'keep-three', manual_count: 3, max_backups: 10, manual_rate_limit: null } });
  expect(p.status, p.text).toBe(201);
  policyId = p.body.id;
  const c = await s.request('POST', '/v1/clusters', { token, body: { name: 'shop', policy_id: policyId, components: [{ name: 'files', type: 'directory', config: { path: 'r' } }] } });
  expect(c.status, c.text).toBe(201);
  clusterId = c.body.id;
  for (let i = 0; i < 3; i++) {
    const r = await s.request('POST', `/v1/clusters/${clusterId}/backups`, { token });
    expect(r.status, r.text).toBe(202);
    backups.push((await waitForBackup(s, token, clusterId, r.body.id)).id);
  }
});
afterAll(async () => s?.close());

const preview = (policy: unknown, tok = viewer, id = clusterId) => s.request('POST', `/v1/clusters/${id}/retention/preview`, { token: tok, body: { policy } });

describe('retention preview', () => {
  it('with the saved policy, answers exactly what GET .../retention answers (a viewer may ask)', async () => {
    const saved = await s.request('GET', `/v1/clusters/${clusterId}/retention`, { token: viewer });
    expect(saved.status).toBe(200);
    const policy = (await s.request('GET', `/v1/policies/${policyId}`, { token })).body;
    const { id: _id, is_default: _d, environment: _e, created_at: _c, updated_at: _u, ...fields } = policy;
    const full = await preview(fields);
    expect(full.status, full.text).toBe(200);
    expect(full.body).toEqual(saved.body);
    // An empty draft is the saved policy too.
    expect((await preview({})).body).toEqual(saved.body);
    expect(saved.body.items.map((i: { keep: boolean }) => i.keep)).toEqual([true, true, true]);
  });

  it('a changed policy lists what it would delete, and saves nothing', async () => {
    const before = await s.rt.db.policy.findUniqueOrThrow({ where: { id: policyId } });
    const r = await preview({ manual_count: 1 });
    expect(r.status, r.text).toBe(200);
    // Newest first: the newest manual backup is kept by manual_count, the two older ones would go.
    const byId = new Map(r.body.items.map((i: { backup_id: string }) => [i.backup_id, i]));
    expect(byId.get(backups[2]!)).toMatchObject({ keep: true, reasons: expect.arrayContaining(['manual_count']) });
    expect(byId.get(backups[1]!)).toMatchObject({ keep: false });
    expect(byId.get(backups[0]!)).toMatchObject({ keep: false });
    // Nothing saved, nothing pruned: the policy row is unchanged and every backup still completed.
    expect(await s.rt.db.policy.findUniqueOrThrow({ where: { id: policyId } })).toEqual(before);
    const rows = await s.rt.db.backup.findMany({ where: { clusterId } });
    expect(rows.map((b) => b.status)).toEqual(['completed', 'completed', 'completed']);
    const after = await s.request('GET', `/v1/clusters/${clusterId}/retention`, { token });
    expect(after.body.items.every((i: { keep: boolean }) => i.keep)).toBe(true);
  });

  it('a bad interval answers 422 with the message POST /v1/policies gives', async () => {
    const bad = { schedule: [{ interval: '5x', count: 2 }] };
    const create = await s.request('POST', '/v1/policies', { token, body: { name: 'bad', ...bad } });
    expect(create.status).toBe(422);
    const r = await preview(bad);
    expect(r.status).toBe(422);
    expect(r.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(r.body.detail).toBe(create.body.detail);
    expect(r.body.errors).toEqual(create.body.errors.map((e: { path: string; message: string }) => ({ path: e.path.replace(/^body\./, 'body.policy.'), message: e.message })));
    expect(r.body.errors).toEqual([{ path: 'body.policy.schedule.0.interval', message: 'invalid interval "5x" (expected <n><unit>, unit h|d|w|M|y)' }]);
    // Cross-field rules too, against the saved values the draft leaves out.
    const over = await preview({ max_backups: 2 });
    expect(over.status).toBe(422);
    expect(over.body.errors).toEqual([{ path: 'body.policy.manual_count', message: 'must not exceed max_backups (2)' }]);
  });

  it("another tenant's cluster is 404, unknown fields are 422", async () => {
    const other = await createTenant(s);
    const r = await preview({}, other.adminToken);
    expect(r.status).toBe(404);
    expect(r.headers['content-type']).toMatch(/^application\/problem\+json/);
    const unknown = await s.request('POST', `/v1/clusters/${clusterId}/retention/preview`, { token, body: { policy: { max_backup: 3 } } });
    expect(unknown.status).toBe(422);
    const none = await s.request('POST', `/v1/clusters/${clusterId}/retention/preview`, { token, body: {} });
    expect(none.status).toBe(422);
  });
});
