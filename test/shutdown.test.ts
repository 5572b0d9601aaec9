import net from 'node:net';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorkerRole } from '../src/roles/worker.js';
import { createTenantDatabase } from './helpers/db.js';
import { runGc, storedPacks } from './helpers/repo.js';
import { createTenant, startStack, waitFor, type Stack } from './helpers/stack.js';

let s: Stack;
let proxy: net.Server;
let port: number;
let tenantDb: Awaited<ReturnType<typeof createTenantDatabase>>;
let connections = 0;
const held: net.Socket[] = [];
beforeAll(async () => {
  s = await startStack({ worker: false });
  tenantDb = await createTenantDatabase();
  const upstream = new URL(tenantDb.url);
  // The tenant's database behind a proxy whose first connection accepts and never answers
  // (pg_dump waits on it forever); later connections reach the real server.
  proxy = net.createServer((sock) => {
    sock.on('error', () => {});
    if (++connections === 1) {
      held.push(sock);
      return;
    }
    const up = net.connect(Number(upstream.port || 5432), upstream.hostname);
    up.on('error', () => sock.destroy());
    sock.pipe(up).pipe(sock);
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  port = (proxy.address() as net.AddressInfo).port;
});
afterAll(async () => {
  for (const h of held) h.destroy();
  proxy.close();
  await s.close();
  await tenantDb.drop();
});

describe('graceful shutdown of a worker', () => {
  it('hands back a backup that outlives the grace period: queued again, nothing stored, and another worker completes it', async () => {
    const { adminToken, tenantId } = await createTenant(s);
    const dir = path.join(s.dataRoot, tenantId, 'sd');
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'f'), 'x'.repeat(100_000));
    const p = await s.request('POST', '/v1/policies', { token: adminToken, body: { name: 'no-limit', manual_rate_limit: null } });
    const upstream = new URL(tenantDb.url);
    const c = await s.request('POST', '/v1/clusters', {
      token: adminToken,
      body: {
        name: 'slow',
        policy_id: p.body.id,
        components: [
          { name: 'files', type: 'directory', config: { path: 'sd' } },
          { name: 'db', type: 'postgres', config: { url: `postgresql://${upstream.username || 'postgres'}@127.0.0.1:${port}${upstream.pathname}` } },
        ],
      },
    });
    expect(c.status, c.text).toBe(201);
    const first = startWorkerRole(s.rt, { graceMs: 1000 });
    const b = await s.request('POST', `/v1/clusters/${c.body.id}/backups`, { token: adminToken });
    expect(b.status).toBe(202);
    await waitFor(async () => (await s.rt.db.backup.findUnique({ where: { id: b.body.id } }))?.status === 'running', 10_000, 'backup running');
    const t0 = Date.now();
    await first.close();
    expect(Date.now() - t0).toBeLessThan(10_000);

    // Handed back: queued, no worker, no lease, the cluster's slot kept, partial data removed.
    const row = await s.rt.db.backup.findUniqueOrThrow({ where: { id: b.body.id } });
    expect(row.status).toBe('queued');
    expect(row.workerId).toBeNull();
    expect(row.leaseExpiresAt).toBeNull();
    expect(row.errorMessage).toBeNull();
    expect((await s.rt.db.cluster.findUniqueOrThrow({ where: { id: c.body.id } })).activeJobId).toBe(b.body.id);
    const files = (await readdir(s.storageRoot, { recursive: true })).map(String);
    expect(files.filter((f) => f.includes(b.body.id))).toEqual([]); // no snapshot record
    expect(await s.rt.db.backupChunk.count({ where: { backupId: b.body.id } })).toBe(0);
    expect(await s.rt.db.backupArtifact.count({ where: { backupId: b.body.id } })).toBe(0);
    // What it uploaded is referenced by nothing: GC (no grace; no worker runs now) takes all of it.
    await runGc(s, tenantId);
    expect(await storedPacks(s.storageRoot, tenantId)).toEqual([]);
    expect(await s.rt.db.pack.count({ where: { tenantId } })).toBe(0);
    expect((await s.request('POST', `/v1/clusters/${c.body.id}/backups`, { token: adminToken })).status).toBe(409);

    // Another worker takes it from BullMQ (the job was delayed, not failed) and completes it.
    const second = startWorkerRole(s.rt);
    try {
      const done = await waitFor(
        async () => {
          const r = await s.rt.db.backup.findUniqueOrThrow({ where: { id: b.body.id } });
          return r.status === 'completed' || r.status === 'failed' ? r : null;
        },
        30_000,
        'the handed-back backup to finish',
      );
      expect(done.errorMessage).toBeNull();
      expect(done.status).toBe('completed');
      expect(done.workerId).toBe(second.id);
      expect(connections).toBeGreaterThanOrEqual(2);
      expect((await s.request('POST', `/v1/clusters/${c.body.id}/backups`, { token: adminToken })).status).toBe(202);
    } finally {
      await second.close();
    }
  }, 60_000);
});
