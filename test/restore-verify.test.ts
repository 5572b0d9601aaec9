import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorkerRole } from '../src/roles/worker.js';
import { createRestoreRunner } from '../src/modules/restores/restores.jobs.js';
import { tenantRootOf } from '../src/modules/tenants/tenant-folder.js';
import type { ArtifactStore } from '../src/storage/types.js';
import { createTenant, startStack, waitFor, type Stack } from './helpers/stack.js';

let s: Stack;
beforeAll(async () => {
  s = await startStack({ worker: false });
});
afterAll(async () => s.close());

/**
 * The store as the restore sees it: honest for the first read of each key; later reads get
 * `swap`'s bytes, a well-formed artifact of another backup (so only the checksum can tell).
 */
function changingStore(real: ArtifactStore, swap: (key: string) => string | null): ArtifactStore {
  const reads = new Map<string, number>();
  return new Proxy(real, {
    get(target, prop, receiver) {
      if (prop !== 'get') return Reflect.get(target, prop, receiver);
      return async (key: string) => {
        const n = (reads.get(key) ?? 0) + 1;
        reads.set(key, n);
        const other = swap(key);
        return n === 1 || !other ? target.get(key) : target.get(other);
      };
    },
  });
}

describe('a restore applies only the bytes it verified', () => {
  it('an artifact that changes between verification and apply fails the restore and leaves the target untouched', async () => {
    const { adminToken, tenantId } = await createTenant(s);
    const dir = path.join(s.dataRoot, tenantId, 'site');
    await mkdir(dir, { recursive: true });
    for (let i = 0; i < 20; i++) await writeFile(path.join(dir, `f${i}`), `backup-time content ${i} `.repeat(500));
    const c = await s.request('POST', '/v1/clusters', { token: adminToken, body: { name: 'v', components: [{ name: 'files', type: 'directory', config: { path: 'site' } }] } });
    expect(c.status, c.text).toBe(201);
    const p = await s.request('POST', '/v1/policies', { token: adminToken, body: { name: 'no-limit', manual_rate_limit: null } });
    await s.request('PATCH', `/v1/clusters/${c.body.id}`, { token: adminToken, body: { policy_id: p.body.id } });
    const worker = startWorkerRole(s.rt);
    const backup = async () => {
      const b = await s.request('POST', `/v1/clusters/${c.body.id}/backups`, { token: adminToken });
      expect(b.status, b.text).toBe(202);
      await waitFor(async () => (await s.rt.db.backup.findUniqueOrThrow({ where: { id: b.body.id } })).status === 'completed', 20_000, 'backup');
      return (await s.rt.db.backupArtifact.findFirstOrThrow({ where: { backupId: b.body.id } })).key;
    };
    const b = { body: { id: '' } };
    const firstKey = await backup();
    b.body.id = (await s.rt.db.backupArtifact.findFirstOrThrow({ where: { key: firstKey } })).backupId;
    for (let i = 0; i < 20; i++) await writeFile(path.join(dir, `f${i}`), `another backup's content ${i}`);
    const otherKey = await backup();
    await worker.close();

    // The tree moves on after the backup; a restore would replace it.
    for (let i = 0; i < 20; i++) await writeFile(path.join(dir, `f${i}`), `current content ${i}`);
    const before = await Promise.all((await readdir(dir)).sort().map(async (f) => [f, await readFile(path.join(dir, f), 'utf8')]));
    const r = await s.request('POST', `/v1/clusters/${c.body.id}/backups/${b.body.id}/restore`, { token: adminToken, body: {} });
    expect(r.status, r.text).toBe(202);

    // No worker runs queues here: this runner reads through a store whose bytes change after the check.
    const run = createRestoreRunner({
      db: s.rt.db,
      ledger: s.rt.ledger,
      stores: { primary: changingStore(s.rt.store, (key) => (key === firstKey ? otherKey : null)), secondary: null },
      box: s.rt.box,
      dataRootOf: tenantRootOf(s.rt.db, s.rt.config.dataRoot),
      postgresTargets: s.rt.postgresTargets,
      workerId: 'test',
      now: () => new Date(),
      log: s.rt.log,
      leaseMs: 60_000,
    });
    await run({ tenant_id: tenantId, restore_id: r.body.id });
    const done = await s.rt.db.restore.findUniqueOrThrow({ where: { id: r.body.id } });
    expect(done.status).toBe('failed');
    expect(done.errorComponent).toBe('files');
    expect(done.errorMessage).toMatch(/sha256|checksum|changed/i);
    expect(done.errorMessage).not.toMatch(new RegExp(s.dataRoot.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
    // The target is exactly as it was, with nothing left beside it, and the cluster is free.
    const after = await Promise.all((await readdir(dir)).sort().map(async (f) => [f, await readFile(path.join(dir, f), 'utf8')]));
    expect(after).toEqual(before);
    expect((await readdir(path.dirname(dir))).filter((n) => n.startsWith('.site.'))).toEqual([]);
    expect((await s.request('GET', `/v1/clusters/${c.body.id}`, { token: adminToken })).body.status).toBe('active');
  });
});
