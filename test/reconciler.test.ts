import { randomUUID } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reconcile } from '../src/modules/backups/reconciler.js';
import { sweepRetention } from '../src/modules/retention/retention.sweep.js';
import { createTenant, startStack, waitFor, type Stack } from './helpers/stack.js';
import { plantBackup, plantRestore } from './helpers/jobs.js';
import { jobId } from '../src/queue/jobs.js';

let s: Stack;
let token: string;
let tenantId: string;
beforeAll(async () => {
  s = await startStack({ env: { RECONCILE_INTERVAL_MS: '1000' } });
  const t = await createTenant(s);
  token = t.adminToken;
  tenantId = t.tenantId;
  await mkdir(path.join(t.dir, 'rec'), { recursive: true });
  await writeFile(path.join(t.dir, 'rec', 'f'), 'data');
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
    const b = await plantBackup(s.rt, { id: randomUUID(), tenantId, clusterId: id, trigger: 'manual', status: 'queued', createdAt: ago(60_000), components: [{ name: "f", status: "queued" }] });
    const r = await reconcile(s.rt);
    expect(r.requeued).toBeGreaterThanOrEqual(1);
    await waitFor(async () => (await s.rt.db.backup.findUniqueOrThrow({ where: { id: b.id } })).status === 'completed', 20_000, 'requeued backup to complete');
  });

  it('fails a running backup whose lease expired ("worker lost") and frees the cluster', async () => {
    const id = await cluster('lost-worker');
    const b = await plantBackup(s.rt, { id: randomUUID(), tenantId, clusterId: id, trigger: 'manual', status: 'running', createdAt: ago(120_000), startedAt: ago(120_000), leaseExpiresAt: ago(1000), workerId: 'gone', components: [] });
    const r = await reconcile(s.rt);
    expect(r.lost).toBeGreaterThanOrEqual(1);
    const row = await s.rt.db.backup.findUniqueOrThrow({ where: { id: b.id } });
    expect(row.status).toBe('failed');
    expect(row.errorMessage).toMatch(/worker lost/);
    expect((await s.request('POST', `/v1/clusters/${id}/backups`, { token })).status).toBe(202);
  });

  it('resumes an interrupted deletion', async () => {
    const id = await cluster('half-deleted');
    const b = await plantBackup(s.rt, { id: randomUUID(), tenantId, clusterId: id, trigger: 'manual', status: 'deleting', createdAt: ago(60_000), components: [] });
    await reconcile(s.rt);
    await waitFor(async () => !(await s.rt.db.backup.findUnique({ where: { id: b.id } })), 10_000, 'deletion to finish');
  });

  it('the periodic retention sweep prunes clusters no backup has touched lately', async () => {
    const id = await cluster('swept', { manual_count: 1 });
    // Three completed manual backups that no prune has seen (as after a crash or a policy edit in SQL).
    for (let i = 3; i >= 1; i--)
      await plantBackup(s.rt, { id: randomUUID(), tenantId, clusterId: id, trigger: 'manual', status: 'completed', createdAt: ago(i * 3600_000), completedAt: ago(i * 3600_000), components: [] });
    // A backup ending marks its cluster for retention (the ledger does); rows planted here need the mark set by hand.
    await s.rt.db.cluster.update({ where: { id }, data: { retentionDirty: true } });
    expect(await sweepRetention(s.rt)).toBeGreaterThanOrEqual(1);
    await waitFor(async () => (await s.rt.db.backup.count({ where: { clusterId: id } })) === 1, 10_000, 'sweep prune');
    const [kept] = await s.rt.db.backup.findMany({ where: { clusterId: id } });
    expect(kept!.createdAt.getTime()).toBeGreaterThan(Date.now() - 3600_000 - 60_000); // the newest
  });
});

describe('reconciler: the ledger against BullMQ\'s real job state', () => {
  it('re-runs a queued backup whose BullMQ job failed before it claimed its row', async () => {
    const id = await cluster('failed-job');
    const b = await plantBackup(s.rt, { id: randomUUID(), tenantId, clusterId: id, trigger: 'manual', status: 'queued', createdAt: ago(60_000), components: [{ name: 'f', status: 'queued' }] });
    // A job that throws before the runner claims the row (here: a payload the worker rejects).
    await s.rt.queues.all.backups.add('run-backup', { tenant_id: 'not-a-uuid', backup_id: b.id }, { jobId: jobId('run-backup', b.id) });
    await waitFor(async () => (await s.rt.queues.all.backups.getJob(jobId('run-backup', b.id)))?.isFailed(), 10_000, 'the job to fail');
    expect((await s.rt.db.backup.findUniqueOrThrow({ where: { id: b.id } })).status).toBe('queued');
    const r = await reconcile(s.rt);
    expect(r.requeued).toBeGreaterThanOrEqual(1);
    await waitFor(async () => (await s.rt.db.backup.findUniqueOrThrow({ where: { id: b.id } })).status === 'completed', 20_000, 'the requeued backup to complete');
  });

  it('resumes a cluster deletion whose BullMQ job gave up', async () => {
    const id = await cluster('gave-up');
    await s.rt.db.cluster.update({ where: { id }, data: { status: 'deleting' } });
    await s.rt.queues.all.maintenance.add('delete-cluster', { tenant_id: tenantId, cluster_id: 'bad' }, { jobId: jobId('delete-cluster', id), attempts: 1 });
    await waitFor(async () => (await s.rt.queues.all.maintenance.getJob(jobId('delete-cluster', id)))?.isFailed(), 10_000, 'the job to fail');
    await reconcile(s.rt);
    await waitFor(async () => !(await s.rt.db.cluster.findUnique({ where: { id } })), 10_000, 'the cluster to be deleted');
  });

  it('frees a cluster left busy or restoring with no active job', async () => {
    const id = await cluster('stuck');
    // As an older version could leave it: restoring, with a slot naming a job that is gone.
    await s.rt.db.cluster.update({ where: { id }, data: { status: 'restoring', activeJobId: randomUUID(), activeJobKind: 'restore' } });
    const other = await cluster('stuck-2');
    await s.rt.db.cluster.update({ where: { id: other }, data: { activeJobId: randomUUID(), activeJobKind: 'backup' } });
    const r = await reconcile(s.rt);
    expect(r.freed).toBeGreaterThanOrEqual(2);
    for (const c of [id, other]) {
      const row = await s.rt.db.cluster.findUniqueOrThrow({ where: { id: c } });
      expect(row.status).toBe('active');
      expect(row.activeJobId).toBeNull();
      expect((await s.request('POST', `/v1/clusters/${c}/backups`, { token })).status).toBe(202);
    }
  });
});

describe('deleting a cluster whose backups a restore reads', () => {
  async function completedBackup(clusterId: string) {
    const b = await s.request('POST', `/v1/clusters/${clusterId}/backups`, { token });
    expect(b.status).toBe(202);
    await waitFor(async () => (await s.rt.db.backup.findUniqueOrThrow({ where: { id: b.body.id } })).status === 'completed', 20_000, 'backup');
    return b.body.id as string;
  }

  it('cancels a queued restore into another cluster and resets its target', async () => {
    const src = await cluster('src-queued');
    const dst = await cluster('dst-queued');
    const backupId = await completedBackup(src);
    // Queued, its job not yet taken by any worker.
    const restore = await plantRestore(s.rt, { id: randomUUID(), tenantId, backupId, sourceClusterId: src, clusterId: dst, components: ['f'], status: 'queued' });
    expect((await s.request('GET', `/v1/clusters/${dst}`, { token })).body.status).toBe('restoring');
    expect((await s.request('DELETE', `/v1/clusters/${src}`, { token })).status).toBe(202);
    await waitFor(async () => !(await s.rt.db.cluster.findUnique({ where: { id: src } })), 15_000, 'the source cluster to be deleted');
    const target = await s.request('GET', `/v1/clusters/${dst}`, { token });
    expect(target.body.status).toBe('active');
    expect((await s.rt.db.cluster.findUniqueOrThrow({ where: { id: dst } })).activeJobId).toBeNull();
    expect(await s.rt.db.restore.findUnique({ where: { id: restore.id } })).toBeNull(); // gone with the source's backups
    expect((await s.request('POST', `/v1/clusters/${dst}/backups`, { token })).status).toBe(202);
  });

  it('waits for a running restore (the deletion job comes back later, never fails), then deletes', async () => {
    const src = await cluster('src-running');
    const dst = await cluster('dst-running');
    const backupId = await completedBackup(src);
    const restore = await plantRestore(s.rt, {
      id: randomUUID(), tenantId, backupId, sourceClusterId: src, clusterId: dst, components: ['f'], status: 'running', startedAt: new Date(), workerId: 'elsewhere', leaseExpiresAt: new Date(Date.now() + 600_000),
    });
    expect((await s.request('DELETE', `/v1/clusters/${src}`, { token })).status).toBe(202);
    await new Promise((r) => setTimeout(r, 1500));
    const job = await s.rt.queues.all.maintenance.getJob(jobId('delete-cluster', src));
    expect(await job?.getState()).toBe('delayed');
    expect((await s.rt.db.cluster.findUniqueOrThrow({ where: { id: src } })).status).toBe('deleting');
    expect(await s.rt.ledger.complete('restore', restore.id, { completedAt: new Date() })).toBe(true);
    await waitFor(async () => !(await s.rt.db.cluster.findUnique({ where: { id: src } })), 15_000, 'the source cluster to be deleted');
    expect((await s.request('GET', `/v1/clusters/${dst}`, { token })).body.status).toBe('active');
  });
});
