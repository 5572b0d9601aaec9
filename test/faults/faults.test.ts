import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, inject } from 'vitest';
import { createTestDatabase } from '../helpers/db.js';
import { faultEnv, freePort, http, kill, serviceSet, redisCli, report, startPostgres, startRedis, stopPostgres, stopRedis, waitUntil, type Service } from './procs.js';

const ADMIN = 'fault-suite-platform-token-0123';
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let base: string;
let env: Record<string, string>;
let api: Service;
let token: string;
let silent: net.Server;
let silentPort: number;

const procs = serviceSet(() => env);
const service = procs.start;

async function ready(s: Service) {
  await waitUntil(async () => (await http(s.port, 'GET', '/healthz')).status === 200, 30_000, 'service to listen');
}


async function cluster(name: string, opts: { slow?: boolean } = {}) {
  const p = await http(api.port, 'POST', '/v1/policies', token, { name: `p-${name}`, manual_rate_limit: null, schedule: [] });
  const components: unknown[] = [{ name: 'files', type: 'directory', config: { path: 'tree' } }];
  if (opts.slow) components.push({ name: 'db', type: 'postgres', config: { url: `postgresql://u:p@127.0.0.1:${silentPort}/db` } });
  const c = await http(api.port, 'POST', '/v1/clusters', token, { name, policy_id: p.body.id, components });
  expect(c.status, c.text).toBe(201);
  return c.body.id as string;
}

async function backupStatus(clusterId: string, id: string) {
  return (await http(api.port, 'GET', `/v1/clusters/${clusterId}/backups/${id}`, token)).body;
}

beforeAll(async () => {
  db = await createTestDatabase();
  base = await mkdtemp(path.join(tmpdir(), 'bk-faults-'));
  // The tenant's own folder (its data_dir, set below) holds its trees.
  await mkdir(path.join(base, 'sources', 'faults', 'tree'), { recursive: true });
  await writeFile(path.join(base, 'sources', 'faults', 'tree', 'data.txt'), 'fault suite\n'.repeat(10_000));
  // A "database" that accepts connections and never answers: a backup of it runs until stopped.
  silent = net.createServer(() => {});
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  silentPort = (silent.address() as net.AddressInfo).port;
  env = {
    ...faultEnv({ databaseUrl: db.url, redisUrl: inject('redisUrl'), adminToken: ADMIN, base, queuePrefix: 'bkfault' }),
    TARGET_ALLOWED_HOSTS: '127.0.0.1', // the silent "database" is on loopback
  };
  api = service({ ROLES: 'api,scheduler' }, await freePort());
  await ready(api);
  const t = await http(api.port, 'POST', '/v1/tenants', ADMIN, { name: 'faults', data_dir: 'faults' });
  token = t.body.api_key.token;
});

afterAll(async () => {
  // Whatever happened, leave the machine's services running.
  await startPostgres().catch(() => {});
  if ((await redisCli('ping').catch(() => '')) !== 'PONG') await startRedis().catch(() => {});
  await procs.killAll();
  silent.close();
  await db.drop().catch(() => {});
  await rm(base, { recursive: true, force: true });
});

describe('fault suite', () => {
  it('kill -9 of a worker mid-backup: the backup fails "worker lost", artifacts go, the cluster is free', async () => {
    const id = await cluster('killed', { slow: true });
    const worker = service({ ROLES: 'worker' });
    const b = await http(api.port, 'POST', `/v1/clusters/${id}/backups`, token);
    expect(b.status).toBe(202);
    await waitUntil(async () => (await backupStatus(id, b.body.id)).status === 'running', 30_000, 'backup running');
    await kill(worker, 'SIGKILL');
    const t0 = Date.now();
    const failed = await waitUntil(async () => {
      const s = await backupStatus(id, b.body.id);
      return s.status === 'failed' ? s : null;
    }, 120_000, 'backup marked failed');
    report('kill -9 worker mid-backup -> backup failed "worker lost"', Date.now() - t0);
    expect(failed.error.message).toMatch(/worker lost/);
    const files = (await readdir(path.join(base, 'artifacts'), { recursive: true }).catch(() => [])).map(String);
    expect(files.filter((f) => f.includes(b.body.id))).toEqual([]);
    expect((await http(api.port, 'POST', `/v1/clusters/${id}/backups`, token)).status).toBe(202);
  });

  it('FLUSHALL while backups are queued: they are re-enqueued from PostgreSQL and complete', async () => {
    const ids = [await cluster('flush-1'), await cluster('flush-2'), await cluster('flush-3')];
    const backups = [];
    for (const id of ids) backups.push((await http(api.port, 'POST', `/v1/clusters/${id}/backups`, token)).body);
    expect(backups.every((b) => b.status === 'queued')).toBe(true);
    await redisCli('flushall');
    const t0 = Date.now();
    const worker = service({ ROLES: 'worker' });
    for (const [i, b] of backups.entries()) {
      await waitUntil(async () => (await backupStatus(ids[i]!, b.id)).status === 'completed', 60_000, `backup ${i} completed`);
    }
    report('FLUSHALL with 3 queued backups -> all completed', Date.now() - t0);
    await kill(worker);
  });

  it('Redis stopped and started: reads keep working, /readyz is 503, a backup requested meanwhile runs afterwards', async () => {
    const worker = service({ ROLES: 'worker' });
    const id = await cluster('redis-down');
    await stopRedis();
    try {
      expect((await http(api.port, 'GET', '/v1/clusters', token)).status).toBe(200);
      const readyz = await http(api.port, 'GET', '/readyz');
      expect(readyz.status).toBe(503);
      expect(readyz.body.checks.redis).toBe('down');
      const b = await http(api.port, 'POST', `/v1/clusters/${id}/backups`, token);
      expect(b.status).toBe(202);
      expect(b.body.status).toBe('queued');
      await startRedis();
      const t0 = Date.now();
      await waitUntil(async () => (await backupStatus(id, b.body.id)).status === 'completed', 90_000, 'backup after Redis returned');
      report('Redis restart -> backup accepted during the outage completed', Date.now() - t0);
      await waitUntil(async () => (await http(api.port, 'GET', '/readyz')).status === 200, 30_000, 'ready again');
    } finally {
      if ((await redisCli('ping').catch(() => '')) !== 'PONG') await startRedis();
      await kill(worker);
    }
  });

  it('PostgreSQL stopped and started: 503 problem+json within seconds, then recovery by itself', async () => {
    const worker = service({ ROLES: 'worker' });
    const id = await cluster('pg-down');
    await stopPostgres();
    try {
      const t = Date.now();
      const res = await http(api.port, 'GET', '/v1/clusters', token);
      const took = Date.now() - t;
      expect(res.status).toBe(503);
      expect(res.headers.get('content-type')).toMatch(/problem\+json/);
      expect(took).toBeLessThan(10_000);
      console.log(`[fault] PostgreSQL down: request answered 503 in ${(took / 1000).toFixed(1)} s`);
      expect((await http(api.port, 'GET', '/readyz')).status).toBe(503);
      expect((await http(api.port, 'GET', '/healthz')).status).toBe(200);
    } finally {
      await startPostgres();
    }
    const t0 = Date.now();
    await waitUntil(async () => (await http(api.port, 'GET', '/v1/clusters', token)).status === 200, 60_000, 'API to recover');
    report('PostgreSQL restart -> API answers again', Date.now() - t0);
    const b = await http(api.port, 'POST', `/v1/clusters/${id}/backups`, token);
    expect(b.status).toBe(202);
    await waitUntil(async () => (await backupStatus(id, b.body.id)).status === 'completed', 60_000, 'backup after PostgreSQL returned');
    await kill(worker);
  });

  it('SIGTERM during a backup: stops accepting, hands the overdue backup back (queued, nothing stored), exits within 30 s', async () => {
    const port = await freePort();
    const all = service({}, port); // api + worker + scheduler in one process
    await ready(all);
    const id = await cluster('sigterm', { slow: true });
    const b = await http(port, 'POST', `/v1/clusters/${id}/backups`, token);
    await waitUntil(async () => (await backupStatus(id, b.body.id)).status === 'running', 30_000, 'backup running');
    const t0 = Date.now();
    all.proc.kill('SIGTERM');
    const exit = await all.exited;
    const took = Date.now() - t0;
    console.log(`[fault] SIGTERM during a backup: exited with code ${exit.code} after ${(took / 1000).toFixed(1)} s`);
    expect(exit.code).toBe(0);
    expect(took).toBeLessThan(30_000);
    const s = await backupStatus(id, b.body.id);
    expect(s.status).toBe('queued'); // handed back: the next worker to start runs it
    expect(s.error).toBeNull();
    expect(s.artifacts).toEqual([]);
    expect(all.logs()).toContain('shutting down');
  });
});
