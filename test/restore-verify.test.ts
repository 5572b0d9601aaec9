import { createHookCaller } from '../src/modules/hooks/hooks.js';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorkerRole } from '../src/roles/worker.js';
import { createRestoreRunner } from '../src/modules/restores/restores.jobs.js';
import { tenantRootOf } from '../src/modules/tenants/tenant-folder.js';
import type { ArtifactStore } from '../src/storage/types.js';
import { createRepoService } from '../src/repo/service.js';
import { packKey } from '../src/repo/layout.js';
import { packsOfBackup } from './helpers/repo.js';
import { createTenant, startStack, waitFor, type Stack } from './helpers/stack.js';

let s: Stack;
beforeAll(async () => {
  s = await startStack({ worker: false });
});
afterAll(async () => s.close());

/**
 * The store as the restore sees it: honest for the first read of each byte range of a pack; later
 * reads of the same range get the bytes at that range of another backup's pack (`swap`), well-formed
 * sealed data of the same tenant, so only the chunks' authentication can tell.
 */
function changingStore(real: ArtifactStore, swap: (key: string) => string | null): ArtifactStore & { swapped: number } {
  const reads = new Map<string, number>();
  let swapped = 0;
  return new Proxy(real, {
    get(target, prop, receiver) {
      if (prop === 'swapped') return swapped;
      if (prop !== 'getRange') return Reflect.get(target, prop, receiver);
      return async (key: string, start: number, end: number) => {
        const id = `${key} ${start} ${end}`;
        const n = (reads.get(id) ?? 0) + 1;
        reads.set(id, n);
        const other = swap(key);
        if (n === 1 || !other) return target.getRange(key, start, end);
        swapped++;
        const size = await target.size(other);
        return target.getRange(other, Math.min(start, size - (end - start)), Math.min(end, size));
      };
    },
  }) as ArtifactStore & { swapped: number };
}

describe('a restore applies only the bytes it verified', () => {
  it('an artifact that changes between verification and apply fails the restore and leaves the target untouched', async () => {
    const { adminToken, tenantId } = await createTenant(s);
    const dirs = ['site', 'site2'].map((d) => path.join(s.dataRoot, tenantId, d));
    for (const dir of dirs) {
      await mkdir(dir, { recursive: true });
      for (let i = 0; i < 20; i++) await writeFile(path.join(dir, `f${i}`), `first backup ${path.basename(dir)} ${i} `.repeat(500));
    }
    // Two components: a restore of several reads and verifies every chunk of all of them first,
    // then applies each, reading its chunks again.
    const c = await s.request('POST', '/v1/clusters', {
      token: adminToken,
      body: {
        name: 'v',
        components: [
          { name: 'files', type: 'directory', config: { path: 'site' } },
          { name: 'files2', type: 'directory', config: { path: 'site2' } },
        ],
      },
    });
    expect(c.status, c.text).toBe(201);
    const p = await s.request('POST', '/v1/policies', { token: adminToken, body: { name: 'no-limit', manual_rate_limit: null } });
    await s.request('PATCH', `/v1/clusters/${c.body.id}`, { token: adminToken, body: { policy_id: p.body.id } });
    const worker = startWorkerRole(s.rt);
    const backup = async () => {
      const b = await s.request('POST', `/v1/clusters/${c.body.id}/backups`, { token: adminToken });
      expect(b.status, b.text).toBe(202);
      await waitFor(async () => (await s.rt.db.backup.findUniqueOrThrow({ where: { id: b.body.id } })).status === 'completed', 20_000, 'backup');
      return b.body.id as string;
    };
    const first = await backup();
    for (const dir of dirs) for (let i = 0; i < 20; i++) await writeFile(path.join(dir, `f${i}`), `other backup ${path.basename(dir)} ${i} `.repeat(500));
    const other = await backup();
    await worker.close();
    const firstPacks = await packsOfBackup(s, first);
    const otherPacks = (await packsOfBackup(s, other)).filter((x) => !firstPacks.includes(x));
    expect(firstPacks.length).toBeGreaterThan(0);
    expect(otherPacks.length).toBeGreaterThan(0);

    // The trees move on after the backup; a restore would replace them.
    for (const dir of dirs) for (let i = 0; i < 20; i++) await writeFile(path.join(dir, `f${i}`), `current content ${i}`);
    const contents = () => Promise.all(dirs.map(async (dir) => Promise.all((await readdir(dir)).sort().map(async (f) => [f, await readFile(path.join(dir, f), 'utf8')]))));
    const before = await contents();
    const r = await s.request('POST', `/v1/clusters/${c.body.id}/backups/${first}/restore`, { token: adminToken, body: {} });
    expect(r.status, r.text).toBe(202);

    // No worker runs queues here: this runner reads through a store whose bytes change after the check.
    const swapTo = new Map(firstPacks.map((id, i) => [packKey(tenantId, id), packKey(tenantId, otherPacks[i % otherPacks.length] as string)]));
    const primary = changingStore(s.rt.store, (key) => swapTo.get(key) ?? null);
    const repo = createRepoService({ db: s.rt.db, masterKey: s.rt.config.encryptionKey, primary, secondary: null, settings: s.rt.repo.settings, seal: s.rt.repo.seal });
    const run = createRestoreRunner({
      db: s.rt.db,
      ledger: s.rt.ledger,
      repo,
      box: s.rt.box,
      hooks: createHookCaller({ urlGuard: s.rt.webhookUrls, box: s.rt.box, now: s.rt.now }),
      dataRootOf: tenantRootOf(s.rt.db, s.rt.config.dataRoot),
      targets: s.rt.targets,
      workerId: 'test',
      now: () => new Date(),
      log: s.rt.log,
      leaseMs: 60_000,
    });
    await run({ tenant_id: tenantId, restore_id: r.body.id });
    expect(primary.swapped).toBeGreaterThan(0);
    const done = await s.rt.db.restore.findUniqueOrThrow({ where: { id: r.body.id } });
    expect(done.status).toBe('failed');
    expect(done.errorComponent).toBe('files');
    expect(done.errorMessage).toMatch(/component "files": integrity check failed/);
    expect(done.errorMessage).not.toMatch(new RegExp(s.dataRoot.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
    // The targets are exactly as they were, with nothing left beside them, and the cluster is free.
    expect(await contents()).toEqual(before);
    expect((await readdir(path.dirname(dirs[0] as string))).filter((n) => n.startsWith('.site'))).toEqual([]);
    expect((await s.request('GET', `/v1/clusters/${c.body.id}`, { token: adminToken })).body.status).toBe('active');
  });
});
