import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTenant, startStack, waitFor, waitForBackup, type Stack } from './helpers/stack.js';
import { plantRestore } from './helpers/jobs.js';
import { artifactOf, manifestOf, packsOnlyOf, readAllChunks, runGc, sha256, storedPacks, unreferencedStoredPacks } from './helpers/repo.js';

let s: Stack;
let token: string;
let tenantId: string;
let home: string;
beforeAll(async () => {
  s = await startStack();
  const t = await createTenant(s);
  token = t.adminToken;
  tenantId = t.tenantId;
  home = t.dir;
  await mkdir(path.join(t.dir, 'r'), { recursive: true });
  await writeFile(path.join(t.dir, 'r', 'f.txt'), 'data');
});
afterAll(async () => s.close());

async function setup(name: string, policy: Record<string, unknown>, components?: unknown[]) {
  const p = await s.request('POST', '/v1/policies', { token, body: { name: `p-${name}`, manual_rate_limit: null, ...policy } });
  expect(p.status, p.text).toBe(201);
  const c = await s.request('POST', '/v1/clusters', {
    token,
    body: { name, policy_id: p.body.id, components: components ?? [{ name: 'f', type: 'directory', config: { path: 'r' } }] },
  });
  expect(c.status, c.text).toBe(201);
  return { clusterId: c.body.id as string, policyId: p.body.id as string };
}

async function backup(clusterId: string) {
  const r = await s.request('POST', `/v1/clusters/${clusterId}/backups`, { token });
  expect(r.status, r.text).toBe(202);
  return waitForBackup(s, token, clusterId, r.body.id);
}

const ids = async (clusterId: string) => (await s.rt.db.backup.findMany({ where: { clusterId, status: { not: 'deleting' } }, orderBy: { createdAt: 'asc' } })).map((b) => b.id);

describe('retention', () => {
  it('a third manual backup with manual_count 2 prunes the oldest only after the new one completes', async () => {
    const { clusterId } = await setup('third', { manual_count: 2 });
    // Each backup with data of its own, so that the pruned one leaves something for GC to take.
    const b1 = await backup(clusterId);
    await writeFile(path.join(home, 'r', 'f.txt'), 'data of the second backup');
    const b2 = await backup(clusterId);
    expect(await ids(clusterId)).toEqual([b1.id, b2.id]);
    const onlyB1 = await packsOnlyOf(s, [b1.id]);
    expect(onlyB1.length).toBeGreaterThan(0);
    await writeFile(path.join(home, 'r', 'f.txt'), 'data of the third backup');
    const r3 = await s.request('POST', `/v1/clusters/${clusterId}/backups`, { token });
    // Until the third completes, the first is never touched.
    const seen: string[] = [];
    const done = await waitFor(async () => {
      const third = await s.rt.db.backup.findUniqueOrThrow({ where: { id: r3.body.id } });
      const first = await s.rt.db.backup.findUnique({ where: { id: b1.id } });
      if (third.status !== 'completed') seen.push(first?.status ?? 'gone');
      return third.status === 'completed' ? third : null;
    });
    expect(done.status).toBe('completed');
    expect(seen.every((st) => st === 'completed')).toBe(true);
    await waitFor(async () => !(await s.rt.db.backup.findUnique({ where: { id: b1.id } })), 10_000, 'oldest pruned');
    expect(await ids(clusterId)).toEqual([b2.id, r3.body.id]);
    const files = await readdir(s.storageRoot, { recursive: true });
    expect(files.filter((f) => String(f).includes(b1.id))).toEqual([]); // its snapshot record
    expect(await s.rt.db.backupChunk.count({ where: { backupId: b1.id } })).toBe(0);
    // Pruning never breaks the backups kept: after GC (no grace) every one of them still reads back.
    await runGc(s, tenantId);
    expect(await unreferencedStoredPacks(s, s.storageRoot, tenantId)).toEqual([]);
    expect((await storedPacks(s.storageRoot, tenantId)).filter((p) => onlyB1.includes(p))).toEqual([]);
    for (const id of [b2.id, r3.body.id]) {
      const a = await artifactOf(s, id, 'f');
      expect(sha256(await manifestOf(s, tenantId, a))).toBe(a.sha256);
      expect(await readAllChunks(s, tenantId, a)).toBeGreaterThan(0);
    }
  });

  it('a failed backup displaces nothing', async () => {
    const { clusterId } = await setup('failing', { manual_count: 2, failed_count: 1 });
    const b1 = await backup(clusterId);
    const b2 = await backup(clusterId);
    // Break the cluster: its directory disappears, the next backup fails.
    await s.rt.db.cluster.update({ where: { id: clusterId }, data: { components: [{ name: 'f', type: 'directory', config: { path: 'gone-dir' } }] } });
    const f1 = await backup(clusterId);
    const f2 = await backup(clusterId);
    expect([f1.status, f2.status]).toEqual(['failed', 'failed']);
    // The older failed backup goes (failed_count 1); both completed ones stay.
    await waitFor(async () => !(await s.rt.db.backup.findUnique({ where: { id: f1.id } })), 10_000, 'older failed pruned');
    expect(await ids(clusterId)).toEqual([b1.id, b2.id, f2.id]);
  });

  it('lowering manual_count prunes promptly', async () => {
    const { clusterId, policyId } = await setup('lower', { manual_count: 3 });
    const b1 = await backup(clusterId);
    const b2 = await backup(clusterId);
    const b3 = await backup(clusterId);
    expect(await ids(clusterId)).toEqual([b1.id, b2.id, b3.id]);
    const r = await s.request('PATCH', `/v1/policies/${policyId}`, { token, body: { manual_count: 1 } });
    expect(r.status).toBe(200);
    await waitFor(async () => (await ids(clusterId)).length === 1, 10_000, 'prune after policy change');
    expect(await ids(clusterId)).toEqual([b3.id]);
  });

  it('shows, for every backup, whether it is kept and which rule keeps it', async () => {
    const { clusterId } = await setup('explain', { manual_count: 1, failed_count: 1 });
    const b1 = await backup(clusterId);
    const res = await s.request('GET', `/v1/clusters/${clusterId}/retention`, { token });
    expect(res.status).toBe(200);
    expect(res.body.items).toEqual([expect.objectContaining({ backup_id: b1.id, keep: true, reasons: expect.arrayContaining(['manual_count', 'newest']) })]);
    // A backup that a restore (into another cluster) reads is kept whatever the policy says.
    const other = await setup('explain-target', {});
    const c = await s.rt.db.cluster.findUniqueOrThrow({ where: { id: clusterId } });
    const { randomUUID } = await import('node:crypto');
    await plantRestore(s.rt, { id: randomUUID(), tenantId: c.tenantId, backupId: b1.id, sourceClusterId: clusterId, clusterId: other.clusterId, components: ['f'], status: 'running' });
    const b2 = await backup(clusterId);
    const again = await s.request('GET', `/v1/clusters/${clusterId}/retention`, { token });
    const byId = Object.fromEntries(again.body.items.map((i: { backup_id: string }) => [i.backup_id, i]));
    expect(byId[b1.id]).toMatchObject({ keep: true, reasons: ['in use'] });
    expect(byId[b2.id]).toMatchObject({ keep: true });
    await new Promise((r) => setTimeout(r, 300));
    expect(await s.rt.db.backup.findUnique({ where: { id: b1.id } })).not.toBeNull();
  });
});
