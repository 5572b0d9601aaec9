import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/lib/logger.js';
import { createRuntime, type Runtime } from '../src/runtime.js';
import { startSchedulerRole, tick } from '../src/roles/scheduler.js';
import { nextRunAt } from '../src/scheduling/index.js';
import { createTenant, startStack, waitFor, type Stack } from './helpers/stack.js';
import { plantBackup } from './helpers/jobs.js';

let s: Stack;
let token: string;
let tenantId: string;
beforeAll(async () => {
  s = await startStack({ worker: false });
  const t = await createTenant(s);
  token = t.adminToken;
  tenantId = t.tenantId;
  await mkdir(path.join(t.dir, 'web'), { recursive: true });
});
afterAll(async () => s.close());

async function makeClusters(n: number, prefix: string, policy: Record<string, unknown> = {}): Promise<string[]> {
  const p = await s.request('POST', '/v1/policies', { token, body: { name: `p-${prefix}`, ...policy } });
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const c = await s.request('POST', '/v1/clusters', { token, body: { name: `${prefix}-${i}`, policy_id: p.body.id, components: [{ name: 'f', type: 'directory', config: { path: 'web' } }] } });
    expect(c.status).toBe(201);
    ids.push(c.body.id);
  }
  return ids;
}

function runtimeAt(now: () => Date): Runtime {
  return createRuntime(s.rt.config, createLogger('silent'), { now });
}

describe('scheduler', () => {
  it('three scheduler instances produce exactly one backup per due cluster', async () => {
    const ids = await makeClusters(60, 'multi');
    const past = new Date(Date.now() - 3600_000);
    await s.rt.db.cluster.updateMany({ where: { id: { in: ids } }, data: { nextBackupAt: past } });
    const rts = [runtimeAt(() => new Date()), runtimeAt(() => new Date()), runtimeAt(() => new Date())];
    try {
      // Small batches so the three really interleave.
      const drain = async (rt: Runtime) => {
        let created = 0;
        for (let i = 0; i < 50; i++) created += (await tick(rt, { batchSize: 7 })).created;
        return created;
      };
      const created = await Promise.all(rts.map(drain));
      expect(created.reduce((a, b) => a + b, 0)).toBe(60);
      expect(created.filter((n) => n > 0).length).toBeGreaterThan(1); // the work was shared
      const counts = await s.rt.db.backup.groupBy({ by: ['clusterId'], where: { clusterId: { in: ids } }, _count: { _all: true } });
      expect(counts).toHaveLength(60);
      expect(counts.every((c) => c._count._all === 1)).toBe(true);
      const backups = await s.rt.db.backup.findMany({ where: { clusterId: { in: ids } } });
      expect(backups.every((b) => b.trigger === 'scheduled' && b.status === 'queued')).toBe(true);
      // Each job is in the queue, with the backup id as its id.
      for (const b of backups.slice(0, 5)) expect(await s.rt.queues.all.backups.getJob(`run-backup-${b.id}`)).toBeTruthy();
      const after = await s.rt.db.cluster.findMany({ where: { id: { in: ids } } });
      expect(after.every((c) => c.nextBackupAt! > new Date())).toBe(true);
    } finally {
      for (const rt of rts) await rt.close();
    }
  });

  it('runs one catch-up backup after a long gap, not one per missed slot', async () => {
    const [id] = await makeClusters(1, 'gap', { schedule: [{ interval: '1h', count: 24 }] });
    const monthAgo = new Date(Date.now() - 30 * 24 * 3600_000);
    await s.rt.db.cluster.update({ where: { id }, data: { nextBackupAt: monthAgo } });
    const rt = runtimeAt(() => new Date());
    try {
      let created = 0;
      for (let i = 0; i < 5; i++) created += (await tick(rt, { batchSize: 100 })).created;
      expect(created).toBe(1);
      expect(await s.rt.db.backup.count({ where: { clusterId: id } })).toBe(1);
      const c = await s.rt.db.cluster.findUniqueOrThrow({ where: { id } });
      const policy = await s.rt.db.policy.findUniqueOrThrow({ where: { id: c.policyId! } });
      expect(c.nextBackupAt!.getTime()).toBeGreaterThan(Date.now());
      expect(c.nextBackupAt!.getTime() - Date.now()).toBeLessThanOrEqual(2 * 3600_000);
      expect(c.nextBackupAt).toEqual(nextRunAt({ timezone: policy.timezone, schedule: policy.schedule as never }, id!, new Date(c.nextBackupAt!.getTime() - 1)));
    } finally {
      await rt.close();
    }
  });

  it('skips the slot of a busy cluster and records it', async () => {
    const [busy, free] = await makeClusters(2, 'busy');
    await plantBackup(s.rt, { id: randomUUID(), tenantId, clusterId: busy!, trigger: 'manual', status: 'running', components: [] });
    const due = new Date(Date.now() - 1000);
    await s.rt.db.cluster.updateMany({ where: { id: { in: [busy!, free!] } }, data: { nextBackupAt: due } });
    let skipped = 0;
    const rt = runtimeAt(() => new Date());
    try {
      const r = await tick(rt, { batchSize: 100, onSkip: () => skipped++ });
      expect(r).toMatchObject({ created: 1, skipped: 1 });
      expect(skipped).toBe(1);
    } finally {
      await rt.close();
    }
    expect(await s.rt.db.backup.count({ where: { clusterId: busy, trigger: 'scheduled' } })).toBe(0);
    expect(await s.rt.db.backup.count({ where: { clusterId: free, trigger: 'scheduled' } })).toBe(1);
    const shown = await s.request('GET', `/v1/clusters/${busy}`, { token });
    expect(Date.parse(shown.body.last_skipped_at)).toBeGreaterThan(Date.now() - 60_000);
    expect(Date.parse(shown.body.next_backup_at)).toBeGreaterThan(Date.now());
  });

  it('the scheduler role starts a due backup that a real worker completes', async () => {
    const { startWorkerRole } = await import('../src/roles/worker.js');
    const [id] = await makeClusters(1, 'e2e');
    await s.rt.db.cluster.update({ where: { id }, data: { nextBackupAt: new Date(Date.now() - 1000) } });
    const worker = startWorkerRole(s.rt);
    const sched = startSchedulerRole(s.rt, { tickMs: 100 });
    try {
      const b = await waitFor(() => s.rt.db.backup.findFirst({ where: { clusterId: id, status: 'completed' } }), 20_000, 'scheduled backup');
      expect(b.trigger).toBe('scheduled');
    } finally {
      await sched.close();
      await worker.close();
    }
  });

  it('counts skipped slots in the process\'s /metrics (the registry main.ts shares between roles)', async () => {
    const { createMetrics } = await import('../src/modules/ops/metrics.js');
    const { createApiApp } = await import('../src/roles/api.js');
    const metrics = createMetrics({ db: s.rt.db, queues: s.rt.queues, token: 'scheduler-metrics-token-0123' });
    const app = await createApiApp(s.rt, { logger: false, metrics });
    try {
      const [busy] = await makeClusters(1, 'metric-busy');
      await plantBackup(s.rt, { id: randomUUID(), tenantId, clusterId: busy!, trigger: 'manual', status: 'running', components: [] });
      await s.rt.db.cluster.update({ where: { id: busy }, data: { nextBackupAt: new Date(Date.now() - 1000) } });
      await tick(s.rt, { batchSize: 100, onSkip: () => metrics.schedulerSkipped.inc() });
      const res = await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: 'Bearer scheduler-metrics-token-0123' } });
      expect(res.body).toMatch(/^scheduler_slots_skipped_total 1$/m);
    } finally {
      await app.close();
    }
  });

  it('a tick with nothing due creates nothing', async () => {
    expect(await tick(s.rt, { batchSize: 100 })).toEqual({ created: 0, skipped: 0 });
  });
});
