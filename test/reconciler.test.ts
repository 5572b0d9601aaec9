import { randomUUID } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reconcile, sweepRetention } from '../src/modules/backups/reconciler.js';
import { createTenant, startStack, waitFor, type Stack } from './helpers/stack.js';

let s: Stack;
let token: string;
let tenantId: string;
beforeAll(async () => {
  s = await startStack({ env: { RECONCILE_INTERVAL_MS: '1000' } });
  const t = await createTenant(s);
  token = t.adminToken;
  tenantId = t.tenantId;
  await mkdir(path.join(s.dataRoot, 'rec'), { recursive: true });
  await writeFile(path.join(s.dataRoot, 'rec', 'f'), 'data');
});
afterAll(async () => s.close());

async function cluster(name: string, policy: Record<string, unknown> = {}) {
  const p = await s.request('POST', '/v1/policies', { token, body: { name: `p-${name}`, manual_rate_limit: null, ...policy } });
  const c = await s.request('POST', '/v1/clusters', { token, body: { name, policy_id: p.body.id, components: [{ name: 'f', type: 'directory', config: { path: 'rec' } }] } });
  return c.body.id as string;
}

const ago = (ms: number) => new Date(Date.now() - ms);

describe('reconciler: PostgreSQL is the record, Redis only carries jobs', () => {
  it('re-enqueues a queued backup whose job is missing, and it runs', async () => {
    const id = await cluster('lost-job');
    const b = await s.rt.db.backup.create({ data: { id: randomUUID(), tenantId, clusterId: id, trigger: 'manual', status: 'queued', createdAt: ago(60_000), components: [{ name: 'f', status: 'queued' }] } });
    const r = await reconcile(s.rt);
    expect(r.requeued).toBeGreaterThanOrEqual(1);
    await waitFor(async () => (await s.rt.db.backup.findUniqueOrThrow({ where: { id: b.id } })).status === 'completed', 20_000, 'requeued backup to complete');
  });

  it('fails a running backup whose lease expired ("worker lost") and frees the cluster', async () => {
    const id = await cluster('lost-worker');
    const b = await s.rt.db.backup.create({
      data: { id: randomUUID(), tenantId, clusterId: id, trigger: 'manual', status: 'running', createdAt: ago(120_000), startedAt: ago(120_000), leaseExpiresAt: ago(1000), workerId: 'gone', components: [] },
    });
    const r = await reconcile(s.rt);
    expect(r.lost).toBeGreaterThanOrEqual(1);
    const row = await s.rt.db.backup.findUniqueOrThrow({ where: { id: b.id } });
    expect(row.status).toBe('failed');
    expect(row.errorMessage).toMatch(/worker lost/);
    expect((await s.request('POST', `/v1/clusters/${id}/backups`, { token })).status).toBe(202);
  });

  it('resumes an interrupted deletion', async () => {
    const id = await cluster('half-deleted');
    const b = await s.rt.db.backup.create({ data: { id: randomUUID(), tenantId, clusterId: id, trigger: 'manual', status: 'deleting', createdAt: ago(60_000), components: [] } });
    await reconcile(s.rt);
    await waitFor(async () => !(await s.rt.db.backup.findUnique({ where: { id: b.id } })), 10_000, 'deletion to finish');
  });

  it('the periodic retention sweep prunes clusters no backup has touched lately', async () => {
    const id = await cluster('swept', { manual_count: 1 });
    // Three completed manual backups that no prune has seen (as after a crash or a policy edit in SQL).
    for (let i = 3; i >= 1; i--)
      await s.rt.db.backup.create({ data: { id: randomUUID(), tenantId, clusterId: id, trigger: 'manual', status: 'completed', createdAt: ago(i * 3600_000), completedAt: ago(i * 3600_000), components: [] } });
    expect(await sweepRetention(s.rt)).toBeGreaterThanOrEqual(1);
    await waitFor(async () => (await s.rt.db.backup.count({ where: { clusterId: id } })) === 1, 10_000, 'sweep prune');
    const [kept] = await s.rt.db.backup.findMany({ where: { clusterId: id } });
    expect(kept!.createdAt.getTime()).toBeGreaterThan(Date.now() - 3600_000 - 60_000); // the newest
  });
});
