import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, inject } from 'vitest';
import { createTestDatabase } from '../helpers/db.js';
import { startReceiver, verified, type Receiver } from '../helpers/webhook-receiver.js';
import { faultEnv, freePort, http, kill, serviceSet, redisCli, report, startRedis, waitUntil, type Service } from './procs.js';

/**
 * At least once, whatever dies: a worker killed (kill -9) right after a backup committed, before
 * its event was delivered, and Redis losing every job (FLUSHALL). PostgreSQL holds the events and
 * deliveries; the reconciler (scheduler role) and the workers' dispatchers find them there.
 */
const ADMIN = 'fault-suite-platform-token-0123';
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let sql: pg.Client;
let base: string;
let env: Record<string, string>;
let api: Service;
let token: string;
let tenantId: string;
let rx: Receiver;

const procs = serviceSet(() => env);
const service = procs.start;


async function webhook(p: string, events: string[]) {
  const res = await http(api.port, 'POST', '/v1/webhooks', token, { url: rx.url(p), events });
  expect(res.status, res.text).toBe(201);
  return { id: res.body.id as string, secret: res.body.secret as string };
}

async function deliveriesOf(webhookId: string) {
  return (await sql.query<{ id: string; event_id: string; status: string; attempts: number }>(`SELECT id::text, event_id::text, status, attempts FROM webhook_deliveries WHERE webhook_id = $1`, [webhookId])).rows;
}

beforeAll(async () => {
  db = await createTestDatabase();
  sql = new pg.Client({ connectionString: db.url });
  await sql.connect();
  base = await mkdtemp(path.join(tmpdir(), 'bk-faults-webhooks-'));
  await mkdir(path.join(base, 'sources', 'hooks', 'tree'), { recursive: true });
  await writeFile(path.join(base, 'sources', 'hooks', 'tree', 'data.txt'), 'webhook faults\n'.repeat(1000));
  rx = await startReceiver();
  env = {
    ...faultEnv({ databaseUrl: db.url, redisUrl: inject('redisUrl'), adminToken: ADMIN, base, queuePrefix: 'bkfaulthooks' }),
    WEBHOOK_ALLOWED_HOSTS: '127.0.0.1',
    WEBHOOK_ALLOW_HTTP: 'true',
    WEBHOOK_TIMEOUT_MS: '3000',
    WEBHOOK_RETRY_BASE_MS: '200',
    WEBHOOK_RETRY_MAX_MS: '1000',
  };
  api = service({ ROLES: 'api,scheduler' }, await freePort());
  await waitUntil(async () => (await http(api.port, 'GET', '/healthz')).status === 200, 30_000, 'service to listen');
  const t = await http(api.port, 'POST', '/v1/tenants', ADMIN, { name: 'hooks', data_dir: 'hooks' });
  token = t.body.api_key.token;
  tenantId = t.body.tenant.id;
});

afterAll(async () => {
  if ((await redisCli('ping').catch(() => '')) !== 'PONG') await startRedis().catch(() => {});
  await procs.killAll();
  await rx?.close();
  await sql?.end().catch(() => {});
  await db?.drop().catch(() => {});
  if (base) await rm(base, { recursive: true, force: true });
});

describe('webhook fault suite', () => {
  /**
   * Starts a worker, makes an event (`emit`), waits until the first attempt of its delivery is at
   * the receiver (held there unanswered) and kills the worker: the event is committed, its delivery
   * not made. Another worker must deliver it, under the same webhook-id.
   */
  async function killDuringFirstAttempt(p: string, emit: () => Promise<void>) {
    rx.reply(p, (n) => (n === 1 ? 'hang' : 200));
    const hook = await webhook(p, ['backup.completed']);
    const worker = service({ ROLES: 'worker' });
    await emit();
    await waitUntil(async () => rx.at(p).length >= 1, 60_000, 'the first delivery attempt');
    await kill(worker, 'SIGKILL');
    const t0 = Date.now();
    expect((await deliveriesOf(hook.id)).map((d) => d.status)).toEqual(['pending']);
    const again = service({ ROLES: 'worker' });
    const [delivered] = await waitUntil(async () => {
      const ds = await deliveriesOf(hook.id);
      return ds[0]?.status === 'delivered' ? ds : null;
    }, 90_000, 'the delivery after the kill');
    const recovered = Date.now() - t0;
    const got = rx.at(p);
    expect(got.length).toBeGreaterThanOrEqual(2);
    // Retries only: every request is the same event, the same webhook-id, each correctly signed.
    const bodies = got.map((r) => {
      expect(r.headers['webhook-id']).toBe(delivered!.event_id);
      return verified(hook.secret, r);
    });
    await kill(again);
    return { bodies, recovered };
  }

  it('kill -9 of the worker right after a backup commits, before its event is delivered: the event is delivered afterwards, under the same webhook-id', async () => {
    const pol = await http(api.port, 'POST', '/v1/policies', token, { name: 'p-killed', manual_rate_limit: null, schedule: [] });
    const c = await http(api.port, 'POST', '/v1/clusters', token, { name: 'killed', policy_id: pol.body.id, components: [{ name: 'files', type: 'directory', config: { path: 'tree' } }] });
    expect(c.status, c.text).toBe(201);
    let backupId = '';
    const { bodies, recovered } = await killDuringFirstAttempt('/killed', async () => {
      const b = await http(api.port, 'POST', `/v1/clusters/${c.body.id}/backups`, token);
      expect(b.status).toBe(202);
      backupId = b.body.id;
    });
    report('kill -9 worker after a backup committed -> its event delivered by another worker', recovered);
    for (const body of bodies) expect(body).toMatchObject({ type: 'backup.completed', cluster_id: c.body.id, data: { backup: { id: backupId } } });
  });

  it('kill -9 of the worker during the attempt of an event recorded in SQL: delivered afterwards by another worker', async () => {
    const eventId = randomUUID();
    const { bodies, recovered } = await killDuringFirstAttempt('/killed-sql', async () => {
      await sql.query(`INSERT INTO events (id, tenant_id, type, occurred_at, cluster_id, data) VALUES ($1::uuid, $2::uuid, 'backup.completed', now(), NULL, '{}'::jsonb)`, [eventId, tenantId]);
    });
    report('kill -9 worker mid-delivery -> event delivered by another worker', recovered);
    for (const body of bodies) expect(body.id).toBe(eventId);
  });

  it('Redis FLUSHALL with a delivery waiting in the queue: the reconciler enqueues it again from PostgreSQL and it is delivered once', async () => {
    const hook = await webhook('/flushed', ['backup.completed']);
    // No worker runs: the event stays undispatched until the scheduler's reconciler fans it out
    // and enqueues its first attempt, which then waits in Redis.
    const eventId = randomUUID();
    await sql.query(
      `INSERT INTO events (id, tenant_id, type, occurred_at, cluster_id, data) VALUES ($1::uuid, $2::uuid, 'backup.completed', now(), NULL, $3::jsonb)`,
      [eventId, tenantId, JSON.stringify({ backup: { id: randomUUID(), status: 'completed' } })],
    );
    const [d] = await waitUntil(async () => {
      const ds = await deliveriesOf(hook.id);
      return ds.length ? ds : null;
    }, 30_000, 'the reconciler to dispatch the event');
    const jobKey = `${env.QUEUE_PREFIX}:webhooks:deliver-${d!.id}-1`;
    await waitUntil(async () => (await redisCli('exists', jobKey)) === '1', 30_000, 'the delivery job in Redis');
    await redisCli('flushall');
    const t0 = Date.now();
    expect(await redisCli('exists', jobKey)).toBe('0');
    const worker = service({ ROLES: 'worker' });
    await waitUntil(async () => (await deliveriesOf(hook.id))[0]?.status === 'delivered', 60_000, 'the delivery after FLUSHALL');
    report('FLUSHALL with a queued delivery -> delivered', Date.now() - t0);
    await new Promise((r) => setTimeout(r, 1500));
    const got = rx.at('/flushed');
    expect(got.map((r) => r.headers['webhook-id'])).toEqual([eventId]);
    expect(verified(hook.secret, got[0]!)).toMatchObject({ id: eventId, type: 'backup.completed' });
    await kill(worker);
  });
});
