import { randomUUID } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tick } from '../src/roles/scheduler.js';
import { backupTransitions, restoreTransitions } from '../src/jobs/ledger.js';
import { createTenant, startStack, type Stack } from './helpers/stack.js';

// No worker: jobs stay queued, so "active" is exactly what the API and the scheduler created.
let s: Stack;
let token: string;
let tenantId: string;
let dir: string;
beforeAll(async () => {
  s = await startStack({ worker: false });
  const t = await createTenant(s);
  token = t.adminToken;
  tenantId = t.tenantId;
  const root = (await s.rt.db.tenant.findUniqueOrThrow({ where: { id: tenantId } })) as { dataDir?: string };
  dir = path.join(s.dataRoot, root.dataDir ?? '', 'ledger');
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'f'), 'data');
});
afterAll(async () => s.close());

async function policy(name: string) {
  const p = await s.request('POST', '/v1/policies', { token, body: { name, manual_rate_limit: null, schedule: [{ interval: '1h', count: 3 }] } });
  expect(p.status).toBe(201);
  return p.body.id as string;
}

async function clusters(n: number, policyId: string, prefix: string): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const c = await s.request('POST', '/v1/clusters', { token, body: { name: `${prefix}-${i}`, policy_id: policyId, components: [{ name: 'f', type: 'directory', config: { path: 'ledger' } }] } });
    expect(c.status, c.text).toBe(201);
    ids.push(c.body.id);
  }
  return ids;
}

async function activePerCluster(ids: string[]) {
  const rows = await s.rt.db.$queryRaw<{ cluster_id: string; n: number }[]>`
    SELECT cluster_id::text, count(*)::int AS n FROM (
      SELECT cluster_id FROM backups WHERE status IN ('queued', 'running') AND cluster_id = ANY(${ids}::uuid[])
      UNION ALL SELECT cluster_id FROM restores WHERE status IN ('queued', 'running') AND cluster_id = ANY(${ids}::uuid[])) j
    GROUP BY cluster_id`;
  return new Map(rows.map((r) => [r.cluster_id, r.n]));
}

describe('the job ledger: one active job per cluster is a database fact', () => {
  it('declares a transition table for backups and restores that ends every active state', () => {
    for (const table of [backupTransitions, restoreTransitions] as Record<string, readonly string[]>[])
      for (const targets of Object.values(table)) for (const t of targets) expect(Object.keys(table)).toContain(t);
    expect(backupTransitions.running).toContain('queued'); // handed back at shutdown
    expect(restoreTransitions.completed).toEqual([]);
  });

  it('the database refuses a second active job on a cluster, whoever writes it', async () => {
    const [id] = await clusters(1, await policy('db-fact'), 'db-fact');
    expect((await s.request('POST', `/v1/clusters/${id}/backups`, { token })).status).toBe(202);
    // Raw writes that bypass the ledger are refused by the unique partial index and the slot trigger.
    await expect(
      s.rt.db.backup.create({ data: { id: randomUUID(), tenantId, clusterId: id!, trigger: 'scheduled', status: 'queued', components: [] } }),
    ).rejects.toThrow(/unique|one_active/i);
    const queued = await s.rt.db.backup.findFirstOrThrow({ where: { clusterId: id! } });
    const b = await s.rt.db.backup.create({ data: { id: randomUUID(), tenantId, clusterId: id!, trigger: 'scheduled', status: 'completed', components: [] } });
    expect(b.status).toBe('completed');
    await expect(s.rt.db.backup.update({ where: { id: b.id }, data: { status: 'running' } })).rejects.toThrow(/unique|one_active/i);
    await expect(
      s.rt.db.restore.create({ data: { id: randomUUID(), tenantId, backupId: b.id, sourceClusterId: id!, clusterId: id!, components: ['f'], status: 'queued' } }),
    ).rejects.toThrow(/one_active|active job/i);
    expect((await activePerCluster([id!])).get(id!)).toBe(1);
    expect(queued.status).toBe('queued');
  });

  it('a scheduler claim racing manual POSTs never leaves two active jobs on a cluster (40 runs)', async () => {
    // A claim of 2,000 due clusters takes long enough for a POST to land while it runs; the POST
    // targets the cluster the claim locks last (the latest next_backup_at).
    const pid = await policy('race');
    const [template] = await clusters(1, pid, 'race-template');
    await s.rt.db.$executeRaw`
      INSERT INTO clusters (id, tenant_id, name, environment, region, backup_location, policy_id, components, status)
      SELECT gen_random_uuid(), tenant_id, 'race-' || g, environment, region, backup_location, policy_id, components, status
      FROM clusters, generate_series(1, 1999) g WHERE id = ${template}::uuid`;
    const ids = (await s.rt.db.cluster.findMany({ where: { policyId: pid }, select: { id: true } })).map((c) => c.id);
    expect(ids).toHaveLength(2000);
    const reset = async (target: string) => {
      await s.rt.db.$executeRaw`UPDATE backups SET status = 'failed', completed_at = now() WHERE cluster_id = ANY(${ids}::uuid[]) AND status IN ('queued', 'running')`;
      await s.rt.db.$executeRaw`
        UPDATE clusters SET active_job_id = NULL, active_job_kind = NULL,
               next_backup_at = now() - CASE WHEN id = ${target}::uuid THEN interval '1 second' ELSE interval '1 hour' END
        WHERE id = ANY(${ids}::uuid[])`;
    };
    await reset(ids[0]!);
    const t0 = Date.now();
    await tick(s.rt, { batchSize: 5000 });
    const claimMs = Date.now() - t0;
    let manualWins = 0;
    let schedulerWins = 0;
    for (let run = 0; run < 40; run++) {
      const target = ids[run]!;
      await reset(target);
      // The POST starts from 20 ms before to 19 ms after the claim, 1 ms apart: around the
      // claim's statement start, where its snapshot and its row locks part.
      const offset = run - 20;
      const after = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));
      const [claim, post] = await Promise.all([
        after(-offset).then(() => tick(s.rt, { batchSize: 5000 })),
        after(offset).then(() => s.request('POST', `/v1/clusters/${target}/backups`, { token })),
      ]);
      expect([202, 409]).toContain(post.status);
      const active = await activePerCluster(ids);
      const doubled = ids.filter((id) => (active.get(id) ?? 0) !== 1);
      expect(doubled, `run ${run}: clusters without exactly one active job`).toEqual([]);
      expect(claim.created + (post.status === 202 ? 1 : 0)).toBe(2000);
      if (post.status === 202) manualWins++;
      else schedulerWins++;
    }
    console.log(`race (claim of 2000 takes ~${claimMs} ms): manual won ${manualWins}, scheduler won ${schedulerWins}`);
    // The race really happened both ways: some POSTs landed before the claim reached their cluster.
    expect(manualWins).toBeGreaterThan(0);
    expect(schedulerWins).toBeGreaterThan(0);
  }, 180_000);

  it('concurrent requests with one Idempotency-Key create one backup and all get its answer', async () => {
    const [id] = await clusters(1, await policy('idem-race'), 'idem-race');
    const answers = await Promise.all(
      Array.from({ length: 12 }, () => s.request('POST', `/v1/clusters/${id}/backups`, { token, headers: { 'idempotency-key': 'nightly-2026-12-02' } })),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(12).fill(202));
    expect(new Set(answers.map((a) => a.body.id)).size).toBe(1);
    expect(answers.filter((a) => a.headers['idempotent-replayed'] === 'true')).toHaveLength(11);
    expect(await s.rt.db.backup.count({ where: { clusterId: id! } })).toBe(1);
  });

  it('a restore takes the target\'s slot: no backup while it is queued, and the slot is freed when it ends', async () => {
    const pid = await policy('restore-slot');
    const [src, dst] = await clusters(2, pid, 'restore-slot');
    const b = await s.rt.db.$transaction(async (tx) => {
      const row = await tx.backup.create({ data: { id: randomUUID(), tenantId, clusterId: src!, trigger: 'manual', status: 'completed', completedAt: new Date(), components: [{ name: 'f', status: 'completed' }] } });
      await tx.backupArtifact.create({ data: { id: randomUUID(), backupId: row.id, component: 'f', key: 'k', bytes: 1n, sha256: '0'.repeat(64), locations: [] } });
      return row;
    });
    const r = await s.request('POST', `/v1/clusters/${src}/backups/${b.id}/restore`, { token, body: { target_cluster_id: dst } });
    expect(r.status, r.text).toBe(202);
    expect((await s.request('GET', `/v1/clusters/${dst}`, { token })).body.status).toBe('restoring');
    expect((await s.request('POST', `/v1/clusters/${dst}/backups`, { token })).status).toBe(409);
    expect(await s.rt.ledger.fail('restore', r.body.id, { component: null, message: 'test' }, { now: new Date(), from: ['queued'] })).toBe(true);
    const after = await s.rt.db.cluster.findUniqueOrThrow({ where: { id: dst! } });
    expect(after.status).toBe('active');
    expect(after.activeJobId).toBeNull();
    expect((await s.request('POST', `/v1/clusters/${dst}/backups`, { token })).status).toBe(202);
  });

  it('refuses transitions the table does not allow, and treats a lost race as stale (no write)', async () => {
    const [id] = await clusters(1, await policy('stale'), 'stale');
    const post = await s.request('POST', `/v1/clusters/${id}/backups`, { token });
    await expect(s.rt.ledger.transition('backup', post.body.id, ['queued'], 'completed')).rejects.toThrow(/not allowed/);
    expect(await s.rt.ledger.start('backup', tenantId, post.body.id, { workerId: 'a', now: new Date(), leaseMs: 60_000 })).toBe(true);
    expect(await s.rt.ledger.start('backup', tenantId, post.body.id, { workerId: 'b', now: new Date(), leaseMs: 60_000 })).toBe(false);
    // Another tenant's id moves nothing.
    expect(await s.rt.ledger.start('backup', randomUUID(), post.body.id, { workerId: 'c', now: new Date(), leaseMs: 60_000 })).toBe(false);
    expect(await s.rt.ledger.handBack('backup', post.body.id, 'not-the-worker')).toBe(false);
    expect(await s.rt.ledger.handBack('backup', post.body.id, 'a')).toBe(true);
    const row = await s.rt.db.backup.findUniqueOrThrow({ where: { id: post.body.id } });
    expect(row.status).toBe('queued');
    expect(row.workerId).toBeNull();
    expect((await s.rt.db.cluster.findUniqueOrThrow({ where: { id: id! } })).activeJobId).toBe(post.body.id);
  });

  it('writes the event of each transition that is one, in its transaction, and none for queueing, handing back or deleting', async () => {
    const [id] = await clusters(1, await policy('events'), 'events');
    const typesOf = async (jobId: string) =>
      (await s.rt.db.$queryRaw<{ type: string; status: string }[]>`
        SELECT type, coalesce(data->'backup'->>'status', data->'restore'->>'status') AS status FROM events
        WHERE coalesce(data->'backup'->>'id', data->'restore'->>'id') = ${jobId} ORDER BY seq`).map((e) => `${e.type}:${e.status}`);
    const post = await s.request('POST', `/v1/clusters/${id}/backups`, { token });
    const b = post.body.id as string;
    expect(await typesOf(b)).toEqual([]); // queued is no event
    const o = { workerId: 'w', now: new Date(), leaseMs: 60_000 };
    expect(await s.rt.ledger.start('backup', tenantId, b, o)).toBe(true);
    expect(await s.rt.ledger.start('backup', tenantId, b, o)).toBe(false); // lost race: no second event
    expect(await s.rt.ledger.handBack('backup', b, 'w')).toBe(true);
    expect(await s.rt.ledger.start('backup', tenantId, b, o)).toBe(true);
    expect(await s.rt.ledger.fail('backup', b, { component: 'f', message: 'test' }, { now: new Date() })).toBe(true);
    expect(await s.rt.ledger.fail('backup', b, { component: 'f', message: 'test' }, { now: new Date() })).toBe(false);
    expect(await typesOf(b)).toEqual(['backup.started:running', 'backup.started:running', 'backup.failed:failed']);
    const [e] = await s.rt.db.event.findMany({ where: { type: 'backup.failed', data: { path: ['backup', 'id'], equals: b } } });
    expect(e).toMatchObject({ tenantId, clusterId: id, dispatchedAt: null });
    expect((await s.request('GET', `/v1/clusters/${id}/backups/${b}`, { token })).body).toEqual((e!.data as { backup: unknown }).backup);

    // Deleting: no event while deleting, one when the row goes, none from a second deleter.
    await s.rt.db.$transaction(async (tx) => expect(await s.rt.ledger.markDeleting(tx, id!, b)).toBe(true));
    expect(await typesOf(b)).toHaveLength(3);
    expect(await Promise.all([s.rt.ledger.removeDeleted(b), s.rt.ledger.removeDeleted(b)])).toEqual(expect.arrayContaining([{ count: 1 }, { count: 0 }]));
    expect((await typesOf(b)).slice(3)).toEqual(['backup.deleted:deleting']);

    // A queued backup cancelled with its cluster's deletion fails with its event.
    const q = (await s.request('POST', `/v1/clusters/${id}/backups`, { token })).body.id as string;
    expect(await s.rt.ledger.cancelQueued('backup', { clusterId: id! }, new Date(), 'cancelled: test')).toBe(1);
    expect(await typesOf(q)).toEqual(['backup.failed:failed']);

    // Restores likewise: queueing is no event; start and the end are.
    const done = await s.rt.db.$transaction(async (tx) => {
      const row = await tx.backup.create({ data: { id: randomUUID(), tenantId, clusterId: id!, trigger: 'manual', status: 'completed', completedAt: new Date(), components: [{ name: 'f', status: 'completed' }] } });
      await tx.backupArtifact.create({ data: { id: randomUUID(), backupId: row.id, component: 'f', key: 'k', bytes: 1n, sha256: '0'.repeat(64), locations: [] } });
      return row;
    });
    const r = await s.request('POST', `/v1/clusters/${id}/backups/${done.id}/restore`, { token, body: {} });
    expect(r.status, r.text).toBe(202);
    expect(await typesOf(r.body.id)).toEqual([]);
    expect(await s.rt.ledger.start('restore', tenantId, r.body.id, o)).toBe(true);
    expect(await s.rt.ledger.complete('restore', r.body.id, { completedAt: new Date() })).toBe(true);
    expect(await typesOf(r.body.id)).toEqual(['restore.started:running', 'restore.completed:completed']);
  });
});
