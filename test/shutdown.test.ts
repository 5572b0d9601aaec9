import net from 'node:net';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorkerRole } from '../src/roles/worker.js';
import { createTenant, startStack, waitFor, type Stack } from './helpers/stack.js';

let s: Stack;
let silent: net.Server;
let port: number;
beforeAll(async () => {
  s = await startStack({ worker: false });
  // A "database" that accepts connections and never answers: pg_dump waits on it forever.
  silent = net.createServer(() => {});
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  port = (silent.address() as net.AddressInfo).port;
});
afterAll(async () => {
  silent.close();
  await s.close();
});

describe('graceful shutdown of a worker', () => {
  it('aborts a backup that outlives the grace period: failed cleanly, no artifacts, cluster free', async () => {
    const { adminToken } = await createTenant(s);
    await mkdir(path.join(s.dataRoot, 'sd'), { recursive: true });
    await writeFile(path.join(s.dataRoot, 'sd', 'f'), 'x'.repeat(100_000));
    const p = await s.request('POST', '/v1/policies', { token: adminToken, body: { name: 'no-limit', manual_rate_limit: null } });
    const c = await s.request('POST', '/v1/clusters', {
      token: adminToken,
      body: {
        name: 'slow',
        policy_id: p.body.id,
        components: [
          { name: 'files', type: 'directory', config: { path: 'sd' } },
          { name: 'db', type: 'postgres', config: { url: `postgresql://u:p@127.0.0.1:${port}/db` } },
        ],
      },
    });
    const worker = startWorkerRole(s.rt, { graceMs: 1000 });
    const b = await s.request('POST', `/v1/clusters/${c.body.id}/backups`, { token: adminToken });
    await waitFor(async () => (await s.rt.db.backup.findUnique({ where: { id: b.body.id } }))?.status === 'running', 10_000, 'backup running');
    const t0 = Date.now();
    await worker.close();
    expect(Date.now() - t0).toBeLessThan(10_000);
    const row = await s.rt.db.backup.findUniqueOrThrow({ where: { id: b.body.id } });
    expect(row.status).toBe('failed');
    expect(row.errorMessage).toMatch(/interrupted: the worker shut down/);
    const files = (await readdir(s.storageRoot, { recursive: true })).map(String);
    expect(files.filter((f) => f.includes(b.body.id))).toEqual([]);
    // The cluster takes backups again at once.
    const again = await s.request('POST', `/v1/clusters/${c.body.id}/backups`, { token: adminToken });
    expect(again.status).toBe(202);
  });
});
