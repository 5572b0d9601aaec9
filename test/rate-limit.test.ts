import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildApp } from '../src/app.js';
import { createServices, type Services } from '../src/services.js';
import { createBackupCounts, createMetrics } from '../src/modules/ops/metrics.js';
import type { ReadinessCheck } from '../src/modules/ops/ops.routes.js';
import type { App } from '../src/http/types.js';
import { createRedis } from '../src/queue/connection.js';
import type { Redis } from 'ioredis';
import { createTenant, startStack, waitFor, type Stack } from './helpers/stack.js';

const MAX = 5;
const METRICS_TOKEN = 'metrics-token-0123456789abcdef';

let s: Stack;
beforeAll(async () => {
  s = await startStack({ worker: false, env: { RATE_LIMIT_MAX: String(MAX), RATE_LIMIT_WINDOW_MS: '60000', METRICS_TOKEN } });
  // Until Redis answers, each instance counts in process instead; wait, so every count is shared.
  await waitFor(async () => s.rt.redis.status === 'ready', 10_000, 'Redis');
});
afterAll(async () => s.close());

/** The API as src/roles/api.ts builds it, with the pieces a test wants to watch or replace. */
async function build(opts: { services?: Services; metricsToken?: string; checks?: ReadinessCheck[]; redis?: Redis } = {}): Promise<App> {
  const app = await buildApp({
    services: opts.services ?? createServices(s.rt),
    adminToken: s.rt.config.adminToken,
    bodyLimitBytes: s.rt.config.bodyLimitBytes,
    metrics: createMetrics({ db: s.rt.db, queues: s.rt.queues, token: opts.metricsToken }),
    checks: opts.checks ?? [{ name: 'postgres', check: async () => void (await s.rt.db.$queryRaw`SELECT 1`) }],
    now: s.rt.now,
    rateLimit: { ...s.rt.config.rateLimit, redis: opts.redis ?? s.rt.redis, prefix: `${s.rt.config.queuePrefix}-${randomBytes(3).toString('hex')}` },
    logger: false,
  });
  await app.ready();
  return app;
}

async function hit(app: App, ip: string, opts: { token?: string; url?: string } = {}) {
  const res = await app.inject({
    method: 'GET',
    url: opts.url ?? '/v1/clusters',
    remoteAddress: ip,
    headers: opts.token ? { authorization: `Bearer ${opts.token}` } : {},
  });
  return { status: res.statusCode, headers: res.headers, body: res.body ? JSON.parse(res.body) : undefined, text: res.body };
}

const randomToken = () => `bk_${randomBytes(32).toString('base64url')}`;

describe('rate limit before authentication', () => {
  it('stops a flood without a token at 429, per client address', async () => {
    const statuses: number[] = [];
    let last;
    for (let i = 0; i < MAX + 3; i++) {
      last = await hit(s.app, '192.0.2.1');
      statuses.push(last.status);
    }
    expect(statuses).toEqual([...Array(MAX).fill(401), 429, 429, 429]);
    expect(last!.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(last!.body).toMatchObject({ status: 429, title: 'Too Many Requests' });
    expect(Number(last!.headers['retry-after'])).toBeGreaterThan(0);
    // Another address has its own budget.
    expect((await hit(s.app, '192.0.2.2')).status).toBe(401);
  });

  it('stops a flood of random tokens at 429, and past the limit they cost no database lookup', async () => {
    const services = createServices(s.rt);
    const lookups = vi.spyOn(services.repos.apiKeys, 'findActiveByHash');
    const app = await build({ services });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 3 * MAX; i++) statuses.push((await hit(app, '198.51.100.7', { token: randomToken() })).status);
      expect(statuses).toEqual([...Array(MAX).fill(401), ...Array(2 * MAX).fill(429)]);
      expect(lookups).toHaveBeenCalledTimes(MAX);
    } finally {
      await app.close();
    }
  });

  it('gives a credential that authenticated its own bucket, which failed attempts from its address do not drain', async () => {
    const { adminToken } = await createTenant(s);
    const app = await build();
    try {
      const ip = '203.0.113.9';
      expect((await hit(app, ip, { token: adminToken })).status).toBe(200); // counted against the address, then known
      for (let i = 0; i < MAX; i++) await hit(app, ip, { token: randomToken() });
      expect((await hit(app, ip, { token: randomToken() })).status).toBe(429);
      expect((await hit(app, ip)).status).toBe(429);
      // The known credential still has its own budget, and then runs out of it too.
      const own: number[] = [];
      for (let i = 0; i < MAX + 1; i++) own.push((await hit(app, ip, { token: adminToken })).status);
      expect(own).toEqual([...Array(MAX).fill(200), 429]);
      // Probes are never limited.
      for (let i = 0; i < MAX + 2; i++) expect((await hit(app, ip, { url: '/healthz' })).status).toBe(200);
    } finally {
      await app.close();
    }
  });

  it('keeps limiting, per instance, while Redis cannot answer', async () => {
    const down = createRedis('redis://127.0.0.1:1', 'producer');
    down.on('error', () => {});
    const app = await build({ redis: down });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < MAX + 2; i++) statuses.push((await hit(app, '198.51.100.99', { token: randomToken() })).status);
      expect(statuses).toEqual([...Array(MAX).fill(401), 429, 429]);
    } finally {
      await app.close();
      down.disconnect();
    }
  });
});

describe('/metrics', () => {
  it('is not served while METRICS_TOKEN is unset', async () => {
    const app = await build();
    try {
      const res = await hit(app, '192.0.2.50', { url: '/metrics' });
      expect(res.status).toBe(404);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(res.text).not.toContain('http_request_duration_seconds');
    } finally {
      await app.close();
    }
  });

  it('answers 401 without the token or with a wrong one, and the metrics with the right one', async () => {
    const app = await build({ metricsToken: s.rt.config.metricsToken });
    try {
      for (const token of [undefined, 'wrong-token-0123456789abcdef', randomToken()]) {
        const res = await hit(app, '192.0.2.51', { url: '/metrics', ...(token && { token }) });
        expect(res.status).toBe(401);
        expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
        expect(res.text).not.toContain('http_request_duration_seconds');
      }
      const ok = await app.inject({ method: 'GET', url: '/metrics', remoteAddress: '192.0.2.52', headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
      expect(ok.statusCode).toBe(200);
      expect(ok.body).toContain('# TYPE backups gauge');
      expect(ok.body).toMatch(/queue_jobs\{queue="backups",state="waiting"\} \d+/);
    } finally {
      await app.close();
    }
  });

  it('counts the active backups at each scrape and re-counts the finished ones at most once per period', async () => {
    const { tenantId } = await createTenant(s);
    const clusterId = randomUUID();
    await s.rt.db.cluster.create({
      data: { id: clusterId, tenantId, name: 'metrics', environment: 'production', region: 'eu-1', backupLocation: 'same_region', components: [] },
    });
    const backup = (status: 'completed' | 'deleting') =>
      s.rt.db.backup.create({ data: { id: randomUUID(), tenantId, clusterId, trigger: 'scheduled', status, components: [] } });
    let t = 1_000_000;
    const counts = createBackupCounts(s.rt.db, { ttlMs: 60_000, now: () => t });
    const of = async (status: string) => (await counts.read()).find((r) => r.status === status && r.trigger === 'scheduled')?.n ?? 0;

    await backup('completed');
    expect(await of('completed')).toBe(1);
    await backup('completed');
    await backup('deleting');
    t += 30_000;
    expect(await of('deleting')).toBe(1); // the active set (queued, running, deleting) is read at every scrape
    expect(await of('completed')).toBe(1); // the finished counts are reused within the period
    t += 30_000;
    expect(await of('completed')).toBe(2);
  });
});

describe('/readyz', () => {
  it('says which dependency is down, never why', async () => {
    const app = await build({
      checks: [
        { name: 'postgres', check: async () => void (await s.rt.db.$queryRaw`SELECT 1`) },
        { name: 'redis', check: async () => Promise.reject(new Error('connect ECONNREFUSED 10.1.2.3:6379 password=hunter2')) },
      ],
    });
    try {
      const res = await hit(app, '192.0.2.60', { url: '/readyz' });
      expect(res.status).toBe(503);
      expect(res.body.checks).toEqual({ postgres: 'ok', redis: 'down' });
      expect(res.text).not.toMatch(/ECONNREFUSED|10\.1\.2\.3|hunter2/);
    } finally {
      await app.close();
    }
  });
});
