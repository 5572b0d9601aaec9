import { randomUUID } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import https from 'node:https';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTenant, startStack, waitFor, waitForBackup, type Stack } from './helpers/stack.js';
import { startReceiver, verified, type Receiver } from './helpers/webhook-receiver.js';
import { recordEvent, type EventType } from '../src/modules/events/outbox.js';
import { generateWebhookSecret } from '../src/modules/webhooks/webhooks.service.js';
import { createWebhookSender } from '../src/modules/webhooks/sender.js';
import { startDispatcher } from '../src/modules/webhooks/dispatcher.js';
import { recordAttempt } from '../src/modules/webhooks/deliveries.repo.js';
import { createUrlGuard } from '../src/net/url-guard.js';
import { parseAllowedHosts } from '../src/components/targets.js';
import { reconcile } from '../src/modules/backups/reconciler.js';
import { createMetrics } from '../src/modules/ops/metrics.js';

/** Loopback allowed for the test receiver only through the operator's settings, with short timings. */
const WEBHOOK_ENV = {
  WEBHOOK_ALLOWED_HOSTS: '127.0.0.1',
  WEBHOOK_ALLOW_HTTP: 'true',
  WEBHOOK_TIMEOUT_MS: '400',
  WEBHOOK_RETRY_BASE_MS: '100',
  WEBHOOK_RETRY_MAX_MS: '400',
  WEBHOOK_RETRY_WINDOW_MS: '60000',
  WEBHOOK_DISABLE_AFTER_MS: '86400000',
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function addWebhook(s: Stack, tenantId: string, url: string, events: string[] = ['backup.completed', 'backup.failed']) {
  const id = randomUUID();
  const secret = generateWebhookSecret();
  await s.rt.db.$executeRaw`INSERT INTO webhooks (id, tenant_id, url, events, secret_enc) VALUES (${id}::uuid, ${tenantId}::uuid, ${url}, ${events}::text[], ${s.rt.box.encrypt(secret)})`;
  return { id, secret };
}

async function emit(s: Stack, tenantId: string, type: EventType = 'backup.completed', data: Record<string, unknown> = { backup: { id: randomUUID(), status: 'completed' } }) {
  return s.rt.db.$transaction((tx) => recordEvent(tx, { tenantId, type, clusterId: null, data, occurredAt: new Date() }));
}

type Attempt = { attempt: number; outcome: string; status_code: number | null; error: string | null; started_at: Date; duration_ms: number };
async function attemptsOf(s: Stack, eventId: string, webhookId: string): Promise<Attempt[]> {
  return s.rt.db.$queryRaw`SELECT attempt, outcome, status_code, error, started_at, duration_ms FROM webhook_attempts WHERE event_id = ${eventId}::uuid AND webhook_id = ${webhookId}::uuid ORDER BY attempt`;
}
async function deliveryOf(s: Stack, eventId: string, webhookId: string) {
  const [d] = await s.rt.db.$queryRaw<{ id: string; status: string; attempts: number }[]>`
    SELECT id::text, status, attempts FROM webhook_deliveries WHERE event_id = ${eventId}::uuid AND webhook_id = ${webhookId}::uuid`;
  return d;
}
async function waitDelivery(s: Stack, eventId: string, webhookId: string, status: string, timeoutMs = 15_000) {
  return waitFor(async () => {
    const d = await deliveryOf(s, eventId, webhookId);
    return d?.status === status ? d : null;
  }, timeoutMs, `delivery ${status}`);
}

/** Every request a receiver got on `p` carries one webhook-id: retries only ever repeat the same id. */
function idsAt(r: Receiver, p: string) {
  return r.at(p).map((x) => x.headers['webhook-id']);
}

describe('webhook delivery', () => {
  let s: Stack;
  let rx: Receiver;
  beforeAll(async () => {
    s = await startStack({ env: WEBHOOK_ENV });
    rx = await startReceiver();
  });
  afterAll(async () => {
    await rx?.close();
    await s?.close();
  });

  it('delivers an event once, signed (Standard Webhooks), with the event as its JSON body', async () => {
    const { tenantId } = await createTenant(s);
    const hook = await addWebhook(s, tenantId, rx.url('/once'));
    const other = await addWebhook(s, tenantId, rx.url('/other-types'), ['restore.completed']);
    const eventId = await emit(s, tenantId, 'backup.completed', { backup: { id: 'b-1', status: 'completed' } });
    await waitDelivery(s, eventId, hook.id, 'delivered');
    const [got] = rx.at('/once');
    expect(rx.at('/once')).toHaveLength(1);
    expect(got!.headers['content-type']).toBe('application/json');
    expect(got!.headers['webhook-id']).toBe(eventId);
    expect(Math.abs(Number(got!.headers['webhook-timestamp']) - Date.now() / 1000)).toBeLessThan(30);
    expect(got!.headers['webhook-signature']).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);
    const body = verified(hook.secret, got!);
    expect(body).toEqual({ id: eventId, type: 'backup.completed', occurred_at: expect.any(String), cluster_id: null, data: { backup: { id: 'b-1', status: 'completed' } } });
    // Another secret does not verify it.
    expect(() => verified(generateWebhookSecret(), got!)).toThrow();
    // Not subscribed to the type: no delivery at all.
    expect(await deliveryOf(s, eventId, other.id)).toBeUndefined();
    expect(rx.at('/other-types')).toHaveLength(0);
    expect(await attemptsOf(s, eventId, hook.id)).toMatchObject([{ attempt: 1, outcome: 'delivered', status_code: 200, error: null }]);
    // Dispatching again (the reconciler, more dispatchers) sends nothing more.
    await reconcile(s.rt);
    await sleep(300);
    expect(rx.at('/once')).toHaveLength(1);
  });

  it('a receiver answering 500 twice then 200 gets the event on the third attempt, with backoff between', async () => {
    const { tenantId } = await createTenant(s);
    rx.reply('/flaky', (n) => (n <= 2 ? 500 : 200));
    const hook = await addWebhook(s, tenantId, rx.url('/flaky'));
    const eventId = await emit(s, tenantId);
    await waitDelivery(s, eventId, hook.id, 'delivered');
    const attempts = await attemptsOf(s, eventId, hook.id);
    expect(attempts.map((a) => [a.attempt, a.outcome, a.status_code])).toEqual([
      [1, 'failed', 500],
      [2, 'failed', 500],
      [3, 'delivered', 200],
    ]);
    expect(attempts[0]!.error).toMatch(/500/);
    const gaps = [1, 2].map((i) => attempts[i]!.started_at.getTime() - attempts[i - 1]!.started_at.getTime());
    expect(gaps[0]).toBeGreaterThanOrEqual(100); // base
    expect(gaps[1]).toBeGreaterThanOrEqual(200); // doubled
    expect(new Set(idsAt(rx, '/flaky'))).toEqual(new Set([eventId]));
    expect(rx.at('/flaky')).toHaveLength(3);
    for (const r of rx.at('/flaky')) expect(verified(hook.secret, r).id).toBe(eventId);
    expect(await deliveryOf(s, eventId, hook.id)).toMatchObject({ status: 'delivered', attempts: 3 });
    const [w] = await s.rt.db.$queryRaw<{ failing_since: Date | null }[]>`SELECT failing_since FROM webhooks WHERE id = ${hook.id}::uuid`;
    expect(w!.failing_since).toBeNull(); // reset by the success
  });

  it('a receiver that hangs past the timeout is a failed attempt, retried', async () => {
    const { tenantId } = await createTenant(s);
    rx.reply('/slow', (n) => (n === 1 ? 'hang' : 200));
    const hook = await addWebhook(s, tenantId, rx.url('/slow'));
    const eventId = await emit(s, tenantId);
    await waitDelivery(s, eventId, hook.id, 'delivered');
    const [first, second] = await attemptsOf(s, eventId, hook.id);
    expect(first).toMatchObject({ outcome: 'failed', status_code: null, error: expect.stringMatching(/timed out after 400 ms/) });
    expect(first!.duration_ms).toBeGreaterThanOrEqual(390);
    expect(first!.duration_ms).toBeLessThan(2000);
    expect(second).toMatchObject({ outcome: 'delivered', status_code: 200 });
    expect(idsAt(rx, '/slow')).toEqual([eventId, eventId]);
  });

  it('a receiver that is down for a while gets the event once it is back', async () => {
    const { tenantId } = await createTenant(s);
    const later = await startReceiver();
    const port = later.port;
    await later.close(); // nothing listens there now
    const hook = await addWebhook(s, tenantId, `http://127.0.0.1:${port}/back`);
    const eventId = await emit(s, tenantId);
    await waitFor(async () => (await attemptsOf(s, eventId, hook.id)).length >= 2, 10_000, 'two refused attempts');
    const back = await startReceiver({ port });
    try {
      await waitDelivery(s, eventId, hook.id, 'delivered');
      const attempts = await attemptsOf(s, eventId, hook.id);
      expect(attempts.at(-1)).toMatchObject({ outcome: 'delivered' });
      expect(attempts.slice(0, -1).every((a) => a.outcome === 'failed' && a.status_code === null && /refused/.test(a.error ?? ''))).toBe(true);
      expect(idsAt(back, '/back')).toEqual([eventId]);
    } finally {
      await back.close();
    }
  });

  it('a redirect is not followed: a failed attempt, and the other port never hears of it', async () => {
    const { tenantId } = await createTenant(s);
    const elsewhere = await startReceiver();
    try {
      rx.reply('/moved', (n) => (n === 1 ? { status: 302, location: elsewhere.url('/stolen') } : 200));
      const hook = await addWebhook(s, tenantId, rx.url('/moved'));
      const eventId = await emit(s, tenantId);
      await waitDelivery(s, eventId, hook.id, 'delivered');
      const [first] = await attemptsOf(s, eventId, hook.id);
      expect(first).toMatchObject({ outcome: 'failed', status_code: 302, error: expect.stringMatching(/redirect \(302\).*not followed/) });
      expect(elsewhere.connections()).toBe(0);
      expect(elsewhere.received).toHaveLength(0);
    } finally {
      await elsewhere.close();
    }
  });

  it('an SSRF refusal at delivery (the URL changed behind the API) is a failed attempt and nothing connects; a deleted webhook gets no more attempts', async () => {
    const { tenantId } = await createTenant(s);
    // 127.0.0.2 is loopback too, but WEBHOOK_ALLOWED_HOSTS lists 127.0.0.1 only.
    const trap = await startReceiver({ host: '127.0.0.2' });
    try {
      const hook = await addWebhook(s, tenantId, rx.url('/fine'));
      await s.rt.db.$executeRaw`UPDATE webhooks SET url = ${trap.url('/trap')} WHERE id = ${hook.id}::uuid`;
      const eventId = await emit(s, tenantId);
      await waitFor(async () => (await attemptsOf(s, eventId, hook.id)).length >= 2, 10_000, 'two refused attempts');
      const attempts = await attemptsOf(s, eventId, hook.id);
      expect(attempts[0]).toMatchObject({ outcome: 'failed', status_code: null, error: expect.stringMatching(/^URL refused: .*127\.0\.0\.2/) });
      expect(trap.connections()).toBe(0);
      // Deleted: its deliveries go with it (cascade) and no attempt follows.
      await s.rt.db.$executeRaw`DELETE FROM webhooks WHERE id = ${hook.id}::uuid`;
      const [{ n: before }] = await s.rt.db.$queryRaw<[{ n: number }]>`SELECT count(*)::int AS n FROM webhook_attempts WHERE event_id = ${eventId}::uuid`;
      expect(before).toBe(0);
      await sleep(800);
      expect(await deliveryOf(s, eventId, hook.id)).toBeUndefined();
      expect(trap.connections()).toBe(0);
    } finally {
      await trap.close();
    }
  });

  it('a disabled webhook gets no further attempts: its pending delivery ends failed', async () => {
    const { tenantId } = await createTenant(s);
    rx.reply('/off', () => 503);
    const hook = await addWebhook(s, tenantId, rx.url('/off'));
    const eventId = await emit(s, tenantId);
    await waitFor(async () => (await attemptsOf(s, eventId, hook.id)).length >= 1, 10_000, 'a failed attempt');
    await s.rt.db.$executeRaw`UPDATE webhooks SET enabled = false WHERE id = ${hook.id}::uuid`;
    await waitDelivery(s, eventId, hook.id, 'failed', 5_000);
    const seen = rx.at('/off').length;
    await sleep(800);
    expect(rx.at('/off').length).toBe(seen);
    // A new event is not fanned out to it at all.
    const next = await emit(s, tenantId);
    await sleep(300);
    expect(await deliveryOf(s, next, hook.id)).toBeUndefined();
  });

  it('fan-out is idempotent: several dispatchers and the reconciler at once make one delivery per webhook and event', async () => {
    const { tenantId } = await createTenant(s);
    const a = await addWebhook(s, tenantId, rx.url('/fan-a'));
    const b = await addWebhook(s, tenantId, rx.url('/fan-b'));
    const extra = [1, 2, 3].map(() => startDispatcher({ db: s.rt.db, databaseUrl: s.databaseUrl, queues: s.rt.queues, now: s.rt.now, log: s.rt.log, pollMs: 50 }));
    try {
      await Promise.all(extra.map((d) => d.ready));
      const ids = await Promise.all(Array.from({ length: 40 }, () => emit(s, tenantId)));
      await reconcile(s.rt);
      await waitFor(async () => rx.at('/fan-a').length >= 40 && rx.at('/fan-b').length >= 40, 20_000, 'all delivered');
      await sleep(500);
      for (const p of ['/fan-a', '/fan-b']) expect(idsAt(rx, p).sort()).toEqual([...ids].sort());
      const [{ n }] = await s.rt.db.$queryRaw<[{ n: number }]>`SELECT count(*)::int AS n FROM webhook_deliveries WHERE webhook_id IN (${a.id}::uuid, ${b.id}::uuid) AND status = 'delivered'`;
      expect(n).toBe(80);
    } finally {
      await Promise.all(extra.map((d) => d.close()));
    }
  });

  it('a pending delivery whose job Redis lost is enqueued again by the reconciler', async () => {
    const { tenantId } = await createTenant(s);
    const hook = await addWebhook(s, tenantId, rx.url('/lost'));
    const q = s.rt.queues.all.webhooks;
    // The queue paused, the first attempt's job waits in Redis; then it is dropped, as FLUSHALL would.
    await q.pause();
    let eventId: string;
    try {
      eventId = await emit(s, tenantId);
      await waitFor(async () => (await deliveryOf(s, eventId, hook.id)) && (await q.count()) > 0, 5_000, 'the delivery and its job');
      await q.obliterate({ force: true });
    } finally {
      await q.resume();
    }
    await sleep(600);
    expect(await deliveryOf(s, eventId, hook.id)).toMatchObject({ status: 'pending', attempts: 0 });
    expect(rx.at('/lost')).toHaveLength(0);
    const { requeued } = await reconcile({ ...s.rt, config: { ...s.rt.config, reconcileIntervalMs: 100 } });
    expect(requeued).toBeGreaterThanOrEqual(1);
    await waitDelivery(s, eventId, hook.id, 'delivered');
    expect(idsAt(rx, '/lost')).toEqual([eventId]);
  });

  it('an event committed while no dispatcher listened is dispatched by the reconciler', async () => {
    const { tenantId } = await createTenant(s);
    const hook = await addWebhook(s, tenantId, rx.url('/late'));
    // An event as it stands when its worker died before fan-out: recorded, never dispatched. Marked
    // dispatched for the running dispatcher's benefit, then put back without a notification.
    const eventId = await emit(s, tenantId);
    await waitDelivery(s, eventId, hook.id, 'delivered');
    await s.rt.db.$executeRaw`DELETE FROM webhook_deliveries WHERE event_id = ${eventId}::uuid`;
    await s.rt.db.$executeRaw`UPDATE events SET dispatched_at = NULL WHERE id = ${eventId}::uuid`;
    await reconcile(s.rt);
    await waitDelivery(s, eventId, hook.id, 'delivered');
    expect(idsAt(rx, '/late')).toEqual([eventId, eventId]); // at least once: the same webhook-id again
  });

  it('reports deliveries by outcome and the oldest undelivered event on /metrics', async () => {
    const metrics = createMetrics({ db: s.rt.db, queues: s.rt.queues, finishedTtlMs: 0 });
    const text = await metrics.registry.metrics();
    const value = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);
    expect(value(/^webhook_deliveries_total\{outcome="delivered"\} (\d+)/m)).toBeGreaterThanOrEqual(5);
    expect(value(/^webhook_deliveries_total\{outcome="retried"\} (\d+)/m)).toBeGreaterThanOrEqual(3);
    expect(value(/^webhook_deliveries_total\{outcome="failed"\} (\d+)/m)).toBeGreaterThanOrEqual(1);
    expect(value(/^webhook_oldest_undelivered_event_age_seconds ([\d.e+-]+)/m)).toBeGreaterThanOrEqual(0);
    // An event of a minute ago whose delivery is still pending (its next attempt an hour away) shows as a minute.
    const { tenantId } = await createTenant(s);
    const hook = await addWebhook(s, tenantId, rx.url('/pending'));
    const ev = randomUUID();
    await s.rt.db.$executeRaw`INSERT INTO events (id, tenant_id, type, occurred_at, data, dispatched_at) VALUES (${ev}::uuid, ${tenantId}::uuid, 'backup.completed', now() - interval '60 seconds', '{}'::jsonb, now())`;
    await s.rt.db.$executeRaw`INSERT INTO webhook_deliveries (id, tenant_id, webhook_id, event_id, next_attempt_at) VALUES (${randomUUID()}::uuid, ${tenantId}::uuid, ${hook.id}::uuid, ${ev}::uuid, now() + interval '1 hour')`;
    const age = Number(/^webhook_oldest_undelivered_event_age_seconds ([\d.e+-]+)/m.exec(await metrics.registry.metrics())?.[1]);
    expect(age).toBeGreaterThanOrEqual(59);
  });

  it('a completed backup and a failed backup each deliver exactly one signed event', async () => {
    const t = await createTenant(s);
    const hook = await addWebhook(s, t.tenantId, rx.url('/backups'));
    await mkdir(path.join(t.dir, 'tree'), { recursive: true });
    await writeFile(path.join(t.dir, 'tree', 'a.txt'), 'hello\n');
    await mkdir(path.join(t.dir, 'leaky'), { recursive: true });
    const cluster = async (name: string, dir: string) => {
      const c = await s.request('POST', '/v1/clusters', { token: t.adminToken, body: { name, components: [{ name: 'files', type: 'directory', config: { path: dir } }] } });
      expect(c.status, c.text).toBe(201);
      return c.body.id as string;
    };
    const ok = await cluster('ok', 'tree');
    const bad = await cluster('bad', 'leaky');
    await symlink('/etc/passwd', path.join(t.dir, 'leaky', 'passwd')); // escapes the tenant's folder: the backup fails
    const b1 = await s.request('POST', `/v1/clusters/${ok}/backups`, { token: t.adminToken });
    const b2 = await s.request('POST', `/v1/clusters/${bad}/backups`, { token: t.adminToken });
    expect((await waitForBackup(s, t.adminToken, ok, b1.body.id)).status).toBe('completed');
    expect((await waitForBackup(s, t.adminToken, bad, b2.body.id)).status).toBe('failed');
    await waitFor(async () => rx.at('/backups').length >= 2, 15_000, 'two backup events delivered');
    await sleep(500);
    const bodies = rx.at('/backups').map((r) => verified(hook.secret, r));
    expect(bodies).toHaveLength(2);
    expect(bodies.map((b) => [b.type, b.cluster_id, b.data.backup.id]).sort()).toEqual(
      [
        ['backup.completed', ok, b1.body.id],
        ['backup.failed', bad, b2.body.id],
      ].sort(),
    );
    expect(bodies.find((b) => b.type === 'backup.completed').data.backup.status).toBe('completed');
    expect(new Set(idsAt(rx, '/backups')).size).toBe(2);
  });
});

describe('webhook retries end with the window', () => {
  let s: Stack;
  let rx: Receiver;
  beforeAll(async () => {
    s = await startStack({ env: { ...WEBHOOK_ENV, WEBHOOK_RETRY_BASE_MS: '100', WEBHOOK_RETRY_MAX_MS: '150', WEBHOOK_RETRY_WINDOW_MS: '600' } });
    rx = await startReceiver();
  });
  afterAll(async () => {
    await rx?.close();
    await s?.close();
  });

  it('stops retrying after WEBHOOK_RETRY_WINDOW_MS, the last attempt no earlier than its end, and records the delivery failed', async () => {
    const { tenantId } = await createTenant(s);
    rx.reply('/never', () => 500);
    const hook = await addWebhook(s, tenantId, rx.url('/never'));
    const eventId = await emit(s, tenantId);
    await waitDelivery(s, eventId, hook.id, 'failed');
    const attempts = await attemptsOf(s, eventId, hook.id);
    expect(attempts.length).toBeGreaterThanOrEqual(3);
    expect(attempts.every((a) => a.outcome === 'failed')).toBe(true);
    expect(attempts.at(-1)!.started_at.getTime() - attempts[0]!.started_at.getTime()).toBeGreaterThanOrEqual(600);
    const seen = rx.at('/never').length;
    expect(seen).toBe(attempts.length);
    await sleep(700);
    expect(rx.at('/never').length).toBe(seen);
    // The webhook itself stays enabled (5 days are not up).
    const [w] = await s.rt.db.$queryRaw<{ enabled: boolean; failing_since: Date | null }[]>`SELECT enabled, failing_since FROM webhooks WHERE id = ${hook.id}::uuid`;
    expect(w).toMatchObject({ enabled: true, failing_since: attempts[0]!.started_at });
  });
});

describe('webhooks failing for WEBHOOK_DISABLE_AFTER_MS', () => {
  let s: Stack;
  let rx: Receiver;
  beforeAll(async () => {
    s = await startStack({ env: { ...WEBHOOK_ENV, WEBHOOK_RETRY_BASE_MS: '100', WEBHOOK_RETRY_MAX_MS: '100', WEBHOOK_DISABLE_AFTER_MS: '500' } });
    rx = await startReceiver();
  });
  afterAll(async () => {
    await rx?.close();
    await s?.close();
  });

  it('are disabled, raising webhook.disabled (delivered to other subscribers) and an audit entry', async () => {
    const { tenantId, adminToken } = await createTenant(s);
    rx.reply('/dead', () => 500);
    const dead = await addWebhook(s, tenantId, rx.url('/dead'), ['backup.completed', 'webhook.disabled']);
    const watcher = await addWebhook(s, tenantId, rx.url('/watcher'), ['webhook.disabled']);
    const eventId = await emit(s, tenantId);
    const w = await waitFor(async () => {
      const [row] = await s.rt.db.$queryRaw<{ enabled: boolean; disabled_at: Date | null; disabled_reason: string | null }[]>`SELECT enabled, disabled_at, disabled_reason FROM webhooks WHERE id = ${dead.id}::uuid`;
      return row && !row.enabled ? row : null;
    }, 10_000, 'webhook disabled');
    expect(w.disabled_at).toBeInstanceOf(Date);
    expect(w.disabled_reason).toMatch(/WEBHOOK_DISABLE_AFTER_MS/);
    // Disabled once its run of failures (from the first failed attempt) had lasted WEBHOOK_DISABLE_AFTER_MS.
    const attempts = await attemptsOf(s, eventId, dead.id);
    expect(attempts.length).toBeGreaterThanOrEqual(2);
    expect(attempts.every((a) => a.outcome === 'failed')).toBe(true);
    expect(w.disabled_at!.getTime() - attempts[0]!.started_at.getTime()).toBeGreaterThanOrEqual(500);
    expect((await deliveryOf(s, eventId, dead.id))!.status).toBe('failed');
    // The event, in the same transaction; delivered to the webhook that watches for it (not to the disabled one).
    const [ev] = await s.rt.db.$queryRaw<{ id: string; data: any }[]>`SELECT id::text, data FROM events WHERE tenant_id = ${tenantId}::uuid AND type = 'webhook.disabled'`;
    expect(ev!.data.webhook).toMatchObject({ id: dead.id, enabled: false, url: rx.url('/dead') });
    expect(JSON.stringify(ev!.data)).not.toContain('secret');
    await waitFor(async () => rx.at('/watcher').length >= 1, 10_000, 'webhook.disabled delivered');
    expect(verified(watcher.secret, rx.at('/watcher')[0]!)).toMatchObject({ id: ev!.id, type: 'webhook.disabled' });
    expect(await deliveryOf(s, ev!.id, dead.id)).toBeUndefined();
    // The audit entry, as GET /v1/audit-events shows it.
    const audit = await s.request('GET', `/v1/audit-events?target_id=${dead.id}`, { token: adminToken });
    expect(audit.status).toBe(200);
    expect(audit.body.items).toMatchObject([{ action: 'webhook.disable', actor: { type: 'platform', key_id: null }, target: { type: 'webhook', id: dead.id }, outcome: 'success' }]);
    // No further attempts.
    const seen = rx.at('/dead').length;
    await sleep(500);
    expect(rx.at('/dead').length).toBe(seen);
  });

  it('a failed attempt that finishes after a newer success (its lease had expired) is history only: no run of failures starts, nothing is disabled', async () => {
    const { tenantId } = await createTenant(s);
    const hook = await addWebhook(s, tenantId, rx.url('/healthy'), ['backup.completed']);
    const eventId = await emit(s, tenantId);
    const delivery = await waitFor(async () => {
      const d = await deliveryOf(s, eventId, hook.id);
      return d?.status === 'delivered' ? d : null;
    }, 10_000, 'delivered');
    const [row] = await s.rt.db.$queryRaw<{ id: string; attempts: number }[]>`SELECT id::text, attempts FROM webhook_deliveries WHERE event_id = ${eventId}::uuid AND webhook_id = ${hook.id}::uuid`;
    const late = new Date(Date.now() - 60_000);
    // disableAfterMs 0: were this failure counted, it would disable the webhook at once.
    const outcome = await recordAttempt(s.rt.db, {
      tenantId, deliveryId: row!.id, webhookId: hook.id, eventId, attempt: row!.attempts, startedAt: late,
      result: { outcome: 'failed', statusCode: null, durationMs: 10_000, error: 'timed out after 10000 ms' }, retryAt: new Date(Date.now() + 1000), now: new Date(), disableAfterMs: 0,
    });
    expect(outcome.disabled).toBe(false);
    const [w] = await s.rt.db.$queryRaw<{ enabled: boolean; failing_since: Date | null }[]>`SELECT enabled, failing_since FROM webhooks WHERE id = ${hook.id}::uuid`;
    expect(w).toEqual({ enabled: true, failing_since: null });
    expect((await deliveryOf(s, eventId, hook.id))!.status).toBe(delivery.status);
    expect((await attemptsOf(s, eventId, hook.id)).map((a) => a.outcome).sort()).toEqual(['delivered', 'failed']); // the late attempt is kept as history
  });
});

describe('the sender', () => {
  let rx: Receiver;
  beforeAll(async () => {
    rx = await startReceiver();
  });
  afterAll(async () => rx?.close());
  const message = () => ({ id: randomUUID(), timestamp: new Date(), body: '{"x":1}' });

  it('connects only to the address the guard checked, whatever the name resolves to', async () => {
    const guard = createUrlGuard({ allowedHosts: parseAllowedHosts('127.0.0.1'), allowHttp: true, resolve: async () => ['127.0.0.1'] });
    const sender = createWebhookSender({ urlGuard: guard, timeoutMs: 2000 });
    const secret = generateWebhookSecret();
    const m = message();
    // The name does not exist in DNS: the request reaches the receiver only through the pinned address.
    const res = await sender.send({ url: `http://pinned.invalid:${rx.port}/pinned`, secret }, m);
    expect(res).toMatchObject({ outcome: 'delivered', statusCode: 200, error: null });
    const [got] = rx.at('/pinned');
    expect(got!.headers.host).toBe(`pinned.invalid:${rx.port}`);
    expect(verified(secret, got!)).toEqual({ x: 1 });
  });

  it('refuses a name that resolves to a loopback address it does not allow, without connecting', async () => {
    const trap = await startReceiver({ host: '127.0.0.2' });
    try {
      const guard = createUrlGuard({ allowedHosts: parseAllowedHosts('127.0.0.1'), allowHttp: true, resolve: async () => ['127.0.0.2'] });
      const res = await createWebhookSender({ urlGuard: guard, timeoutMs: 2000 }).send({ url: `http://rebind.invalid:${trap.port}/x`, secret: generateWebhookSecret() }, message());
      expect(res).toMatchObject({ outcome: 'failed', statusCode: null, refused: true, error: expect.stringMatching(/^URL refused/) });
      expect(trap.connections()).toBe(0);
    } finally {
      await trap.close();
    }
  });

  it('https: connects to the checked address with the name in the URL as TLS server name, and checks the certificate', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'bk-tls-'));
    try {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', path.join(dir, 'k.pem'), '-out', path.join(dir, 'c.pem'), '-days', '1', '-subj', '/CN=pinned.test'], { stdio: 'ignore' });
      const creds = { key: readFileSync(path.join(dir, 'k.pem')), cert: readFileSync(path.join(dir, 'c.pem')) };
      const names: string[] = [];
      let requests = 0;
      const server = https.createServer({ ...creds, SNICallback: (name, cb) => (names.push(name), cb(null, tls.createSecureContext(creds))) }, (_req, res) => (requests++, res.end()));
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      try {
        const port = (server.address() as { port: number }).port;
        const guard = createUrlGuard({ allowedHosts: parseAllowedHosts('127.0.0.1'), allowHttp: false, resolve: async () => ['127.0.0.1'] });
        const res = await createWebhookSender({ urlGuard: guard, timeoutMs: 2000 }).send({ url: `https://pinned.test:${port}/tls`, secret: generateWebhookSecret() }, message());
        // A self-signed certificate is not trusted: the attempt fails at the handshake, before any request.
        expect(res).toMatchObject({ outcome: 'failed', statusCode: null, error: expect.stringMatching(/TLS handshake with pinned\.test failed/) });
        expect(names).toEqual(['pinned.test']);
        expect(requests).toBe(0);
      } finally {
        server.closeAllConnections();
        await new Promise<void>((r) => server.close(() => r()));
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('counts a DNS lookup that outlasts the timeout against the same timeout', async () => {
    const guard = createUrlGuard({ allowedHosts: parseAllowedHosts('127.0.0.1'), allowHttp: true, resolve: () => new Promise((r) => setTimeout(() => r(['127.0.0.1']), 1000)) });
    const started = Date.now();
    const res = await createWebhookSender({ urlGuard: guard, timeoutMs: 200 }).send({ url: `http://slow-dns.invalid:${rx.port}/dns`, secret: generateWebhookSecret() }, message());
    expect(res).toMatchObject({ outcome: 'failed', error: expect.stringMatching(/timed out/) });
    expect(Date.now() - started).toBeLessThan(800);
    expect(rx.at('/dns')).toHaveLength(0);
  });
});
