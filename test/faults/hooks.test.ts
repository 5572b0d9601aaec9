import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, inject } from 'vitest';
import { createTestDatabase } from '../helpers/db.js';
import { faultEnv, freePort, http, kill, serviceSet, report, waitUntil, type Service } from './procs.js';

/**
 * SPEC section 11: once a pre hook has succeeded, the post hook is owed whatever happens. A
 * worker killed with kill -9 in the pause cannot call it: the reconciler does, once the lease
 * has expired and the backup is failed ("worker lost").
 */
const ADMIN = 'hooks-fault-platform-token-0123';
const LEASE_MS = 4000;
const RECONCILE_MS = 1000;
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let base: string;
let env: Record<string, string>;
let api: Service;
let token: string;
let silent: net.Server;
let silentPort: number;
let receiver: Server;
let hookBase: string;
const calls: { path: string; body: any; at: number; id: string }[] = [];

const procs = serviceSet(() => env);
const service = procs.start;


beforeAll(async () => {
  db = await createTestDatabase();
  base = await mkdtemp(path.join(tmpdir(), 'bk-hook-faults-'));
  await mkdir(path.join(base, 'sources', 'hooks', 'tree'), { recursive: true });
  await writeFile(path.join(base, 'sources', 'hooks', 'tree', 'data.txt'), 'paused\n'.repeat(1000));
  // A "database" that accepts connections and never answers: its snapshot never comes, so the
  // backup stays in its pause until it is stopped.
  silent = net.createServer(() => {});
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  silentPort = (silent.address() as net.AddressInfo).port;
  receiver = createServer((req, res) => {
    let text = '';
    req.on('data', (c) => (text += c));
    req.on('end', () => {
      calls.push({ path: req.url ?? '', body: JSON.parse(text || '{}'), at: Date.now(), id: String(req.headers['webhook-id']) });
      // /slow-pre answers only after the test is over: the worker dies while waiting for it
      if (req.url === '/slow-pre') setTimeout(() => res.writeHead(204).end(), 60_000).unref();
      else res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  hookBase = `http://127.0.0.1:${(receiver.address() as net.AddressInfo).port}`;
  env = {
    ...faultEnv({ databaseUrl: db.url, redisUrl: inject('redisUrl'), adminToken: ADMIN, base, queuePrefix: 'bkhookfault' }),
    WORKER_LEASE_MS: String(LEASE_MS),
    RECONCILE_INTERVAL_MS: String(RECONCILE_MS),
    TARGET_ALLOWED_HOSTS: '127.0.0.1',
    WEBHOOK_ALLOWED_HOSTS: '127.0.0.1',
    WEBHOOK_ALLOW_HTTP: 'true',
  };
  api = service({ ROLES: 'api,scheduler' }, await freePort());
  await waitUntil(async () => (await http(api.port, 'GET', '/healthz')).status === 200, 30_000, 'service to listen');
  const t = await http(api.port, 'POST', '/v1/tenants', ADMIN, { name: 'hooks', data_dir: 'hooks' });
  token = t.body.api_key.token;
});

afterAll(async () => {
  await procs.killAll();
  silent.close();
  receiver.close();
  await db.drop().catch(() => {});
  await rm(base, { recursive: true, force: true });
});

describe('hooks under faults', () => {
  it('kill -9 of the worker between the pre and post hooks: the post hook still comes, once, within the lease bound', async () => {
    const p = await http(api.port, 'POST', '/v1/policies', token, { name: 'p', manual_rate_limit: null, schedule: [] });
    const c = await http(api.port, 'POST', '/v1/clusters', token, {
      name: 'paused',
      policy_id: p.body.id,
      components: [
        { name: 'files', type: 'directory', config: { path: 'tree' } },
        { name: 'db', type: 'postgres', config: { url: `postgresql://u:p@127.0.0.1:${silentPort}/db` } },
      ],
      hooks: { pre_backup: { url: `${hookBase}/pre`, timeout_s: 5 }, post_backup: { url: `${hookBase}/post`, timeout_s: 5 } },
    });
    expect(c.status, c.text).toBe(201);
    const worker = service({ ROLES: 'worker' });
    const b = await http(api.port, 'POST', `/v1/clusters/${c.body.id}/backups`, token);
    expect(b.status, b.text).toBe(202);
    expect(b.body.live).toBe(false);
    await waitUntil(async () => calls.some((x) => x.path === '/pre'), 30_000, 'the pre hook');
    // in the pause: the directory is read, the database's snapshot never comes
    await new Promise((r) => setTimeout(r, 500));
    expect(calls.filter((x) => x.path === '/post')).toEqual([]);
    const killed = await kill(worker, 'SIGKILL');
    expect(killed.signal).toBe('SIGKILL');
    const t0 = Date.now();
    const post = await waitUntil(async () => calls.find((x) => x.path === '/post'), 60_000, 'the post hook');
    const after = post.at - t0;
    report('kill -9 of the worker in a pause -> post hook called', after);
    expect(post.body).toEqual({ hook: 'post_backup', cluster_id: c.body.id, backup_id: b.body.id, live: false });
    // within the lease bound: the lease expires, the next reconcile fails the backup and calls the hook
    expect(after).toBeLessThan(LEASE_MS + 3 * RECONCILE_MS + 2000);
    const failed = (await http(api.port, 'GET', `/v1/clusters/${c.body.id}/backups/${b.body.id}`, token)).body;
    expect(failed.status).toBe('failed');
    expect(failed.error.message).toMatch(/worker lost/);
    // once: later reconciles do not call it again
    await new Promise((r) => setTimeout(r, 4 * RECONCILE_MS));
    expect(calls.filter((x) => x.path === '/post')).toHaveLength(1);
    // the same pause: the two calls' webhook-ids name the backup, the hook and one pause start
    const pre = calls.find((x) => x.path === '/pre')!;
    expect(pre.id).toMatch(new RegExp(`^${b.body.id}\\.pre_backup\\.\\d{13}$`));
    expect(post.id).toBe(pre.id.replace('.pre_backup.', '.post_backup.'));
  });

  it('kill -9 of the worker while its pre hook is still answering: the post hook comes all the same, once (the writers may have paused)', async () => {
    const p = await http(api.port, 'POST', '/v1/policies', token, { name: 'p2', manual_rate_limit: null, schedule: [] });
    const c = await http(api.port, 'POST', '/v1/clusters', token, {
      name: 'pausing',
      policy_id: p.body.id,
      components: [{ name: 'files', type: 'directory', config: { path: 'tree' } }],
      hooks: { pre_backup: { url: `${hookBase}/slow-pre`, timeout_s: 3 }, post_backup: { url: `${hookBase}/post2`, timeout_s: 5 } },
    });
    expect(c.status, c.text).toBe(201);
    const worker = service({ ROLES: 'worker' });
    const b = await http(api.port, 'POST', `/v1/clusters/${c.body.id}/backups`, token);
    expect(b.status, b.text).toBe(202);
    await waitUntil(async () => calls.some((x) => x.path === '/slow-pre'), 30_000, 'the pre hook');
    const killed = await kill(worker, 'SIGKILL');
    expect(killed.signal).toBe('SIGKILL');
    const t0 = Date.now();
    const post = await waitUntil(async () => calls.find((x) => x.path === '/post2'), 60_000, 'the post hook');
    report('kill -9 of the worker during its pre hook -> post hook called', post.at - t0);
    expect(post.body).toEqual({ hook: 'post_backup', cluster_id: c.body.id, backup_id: b.body.id, live: false });
    // never while the pre call could still be under way (its 3 s timeout from the call, plus the margin) ...
    const pre = calls.find((x) => x.path === '/slow-pre')!;
    expect(post.at - pre.at).toBeGreaterThanOrEqual(3000);
    // ... and soon after that and the lease
    expect(post.at - t0).toBeLessThan(LEASE_MS + 3 * RECONCILE_MS + 4000);
    const failed = (await http(api.port, 'GET', `/v1/clusters/${c.body.id}/backups/${b.body.id}`, token)).body;
    expect(failed).toMatchObject({ status: 'failed', paused_ms: null });
    await new Promise((r) => setTimeout(r, 4 * RECONCILE_MS));
    expect(calls.filter((x) => x.path === '/post2')).toHaveLength(1);
  });
});
