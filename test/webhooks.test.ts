import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, createTenant, startStack, type Stack } from './helpers/stack.js';
import { EVENT_TYPES } from '../src/modules/events/outbox.js';
import { createWebhookService, MAX_WEBHOOKS } from '../src/modules/webhooks/webhooks.service.js';
import type { WebhookMessage } from '../src/modules/webhooks/sender.js';
import { startReceiver, verified } from './helpers/webhook-receiver.js';

const VIEW_FIELDS = ['created_at', 'description', 'disabled_at', 'disabled_reason', 'enabled', 'events', 'id', 'updated_at', 'url'];
const SECRET = /^whsec_([A-Za-z0-9+/]+={0,2})$/;

describe('webhooks API', () => {
  let s: Stack;
  let admin: string;
  let tenantId: string;
  // A receiver on loopback is allowed here, as in the other webhook tests; nothing listens on it (nothing is sent).
  const url = 'http://127.0.0.1:9/hook';

  beforeAll(async () => {
    s = await startStack({ worker: false, env: { WEBHOOK_ALLOWED_HOSTS: '127.0.0.1', WEBHOOK_ALLOW_HTTP: 'true' } });
    ({ adminToken: admin, tenantId } = await createTenant(s));
  });
  afterAll(async () => s.close());

  const create = (token: string, body: unknown) => s.request('POST', '/v1/webhooks', { token, body });

  it('creates, reads, lists, changes and deletes a webhook; the secret is shown once', async () => {
    const created = await create(admin, { url, events: ['backup.completed', 'backup.failed'], description: 'ops channel' });
    expect(created.status).toBe(201);
    expect(created.headers.location).toBe(`/v1/webhooks/${created.body.id}`);
    expect(created.headers['cache-control']).toBe('no-store');
    const { secret, ...view } = created.body;
    expect(Object.keys(view).sort()).toEqual(VIEW_FIELDS);
    expect(view).toMatchObject({ url, events: ['backup.completed', 'backup.failed'], description: 'ops channel', enabled: true, disabled_at: null, disabled_reason: null });
    expect(view.created_at).toBe(view.updated_at);
    // Standard Webhooks form: whsec_ + base64 of 32 random bytes
    const m = SECRET.exec(secret);
    expect(m).not.toBeNull();
    expect(Buffer.from(m![1]!, 'base64')).toHaveLength(32);
    const again = await create(admin, { url, events: ['backup.completed'] });
    expect(again.body.secret).not.toBe(secret);
    expect(again.body.description).toBeNull();

    // stored encrypted, never in the clear
    const row = await s.rt.db.webhook.findUniqueOrThrow({ where: { id: view.id } });
    expect(row.secretEnc).not.toContain(secret.slice(6));
    expect(s.rt.box.decrypt(row.secretEnc)).toBe(secret);

    const got = await s.request('GET', `/v1/webhooks/${view.id}`, { token: admin });
    expect(got.status).toBe(200);
    expect(got.body).toEqual(view);

    const list = await s.request('GET', '/v1/webhooks', { token: admin });
    expect(list.status).toBe(200);
    const { secret: _s, ...againView } = again.body;
    expect(list.body).toEqual({ items: [againView, view], next_cursor: null });

    const patched = await s.request('PATCH', `/v1/webhooks/${view.id}`, {
      token: admin,
      body: { url: 'http://127.0.0.1:10/other', events: ['restore.failed'], description: null },
    });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({ id: view.id, url: 'http://127.0.0.1:10/other', events: ['restore.failed'], description: null, enabled: true, created_at: view.created_at });
    expect(Date.parse(patched.body.updated_at)).toBeGreaterThanOrEqual(Date.parse(view.updated_at));
    expect(Object.keys(patched.body).sort()).toEqual(VIEW_FIELDS);
    expect((await s.request('GET', `/v1/webhooks/${view.id}`, { token: admin })).body).toEqual(patched.body);
    // an empty patch changes nothing
    expect((await s.request('PATCH', `/v1/webhooks/${view.id}`, { token: admin, body: {} })).body).toMatchObject({ url: 'http://127.0.0.1:10/other', events: ['restore.failed'] });

    for (const r of [got, list, patched]) expect(r.text).not.toContain(secret.slice(6));
    expect(s.logs()).not.toContain(secret.slice(6));
    expect(s.logs()).not.toContain(again.body.secret.slice(6));

    const del = await s.request('DELETE', `/v1/webhooks/${view.id}`, { token: admin });
    expect(del.status).toBe(204);
    expect((await s.request('GET', `/v1/webhooks/${view.id}`, { token: admin })).status).toBe(404);
    expect((await s.request('DELETE', `/v1/webhooks/${view.id}`, { token: admin })).status).toBe(404);
    expect((await s.request('GET', '/v1/webhooks', { token: admin })).body.items.map((w: { id: string }) => w.id)).toEqual([again.body.id]);
    await s.request('DELETE', `/v1/webhooks/${again.body.id}`, { token: admin });
  });

  it('pages the list newest first', async () => {
    const { adminToken } = await createTenant(s);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await create(adminToken, { url, events: ['backup.started'] })).body.id);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const r: Awaited<ReturnType<Stack['request']>> = await s.request('GET', `/v1/webhooks?limit=2${cursor ? `&cursor=${cursor}` : ''}`, { token: adminToken });
      expect(r.status).toBe(200);
      expect(r.body.items.length).toBeLessThanOrEqual(2);
      seen.push(...r.body.items.map((w: { id: string }) => w.id));
      cursor = r.body.next_cursor;
    } while (cursor);
    expect(seen).toEqual([...ids].reverse());
  });

  it('accepts every event type', async () => {
    const r = await create(admin, { url, events: [...EVENT_TYPES] });
    expect(r.status).toBe(201);
    expect(r.body.events).toEqual([...EVENT_TYPES]);
    await s.request('DELETE', `/v1/webhooks/${r.body.id}`, { token: admin });
  });

  it('answers 422 problem+json naming the field for bad input', async () => {
    const cases: [unknown, string, RegExp][] = [
      [{ events: ['backup.completed'] }, 'body.url', /./],
      [{ url, events: [] }, 'body.events', /at least one event type/],
      [{ url }, 'body.events', /./],
      [{ url, events: ['backup.completed', 'nope.never'] }, 'body.events.1', /unknown event type "nope.never"/],
      [{ url, events: ['backup.completed', 'backup.failed', 'backup.completed'] }, 'body.events.2', /duplicate event type "backup.completed"/],
      [{ url, events: 'backup.completed' }, 'body.events', /./],
      [{ url: 42, events: ['backup.completed'] }, 'body.url', /./],
      [{ url: `http://127.0.0.1:9/${'a'.repeat(2100)}`, events: ['backup.completed'] }, 'body.url', /./],
      [{ url: 'not a url', events: ['backup.completed'] }, 'body.url', /is not an absolute URL/],
      [{ url, events: ['backup.completed'], description: 'x'.repeat(501) }, 'body.description', /./],
      [{ url, events: ['backup.completed'], secret: 'whsec_mine' }, 'body', /secret/],
      [{ url, events: ['backup.completed'], enabled: false }, 'body', /enabled/],
    ];
    for (const [body, path, message] of cases) {
      const r = await create(admin, body);
      expect(r.status, JSON.stringify(body).slice(0, 80)).toBe(422);
      expect(r.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(r.body).toMatchObject({ status: 422, type: expect.any(String), title: expect.any(String), detail: expect.any(String) });
      const hit = r.body.errors.find((e: { path: string; message: string }) => e.path === path || (path === 'body' && message.test(e.message)));
      expect(hit, `${JSON.stringify(r.body.errors)} should name ${path}`).toBeDefined();
      expect(hit.message).toMatch(message);
    }
    // every problem in one answer
    const both = await create(admin, { url: 'ftp://127.0.0.1/', events: ['backup.failed', 'backup.failed'] });
    expect(both.body.errors.map((e: { path: string }) => e.path).sort()).toEqual(['body.events.1', 'body.url']);
    expect((await s.request('GET', '/v1/webhooks', { token: admin })).body.items).toEqual([]);

    const w = (await create(admin, { url, events: ['backup.failed'] })).body;
    for (const [body, path] of [
      [{ events: [] }, 'body.events'],
      [{ events: ['cluster.gone'] }, 'body.events.0'],
      [{ url: 'https://user:pw@127.0.0.1/' }, 'body.url'],
      [{ enabled: 'yes' }, 'body.enabled'],
      [{ description: 7 }, 'body.description'],
    ] as const) {
      const r = await s.request('PATCH', `/v1/webhooks/${w.id}`, { token: admin, body });
      expect(r.status).toBe(422);
      expect(r.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(r.body.errors.map((e: { path: string }) => e.path)).toContain(path);
    }
    const { secret: _, ...unchanged } = w;
    expect((await s.request('GET', `/v1/webhooks/${w.id}`, { token: admin })).body).toEqual(unchanged);
    expect((await s.request('GET', '/v1/webhooks/not-a-uuid', { token: admin })).status).toBe(404); // like every other id
    expect((await s.request('GET', '/v1/webhooks?cursor=garbage', { token: admin })).status).toBe(422);
    expect((await s.request('GET', `/v1/webhooks/${w.id}/deliveries?limit=0`, { token: admin })).status).toBe(422);
    await s.request('DELETE', `/v1/webhooks/${w.id}`, { token: admin });
  });

  it('only admins may create, read, change, delete or test webhooks', async () => {
    const w = (await create(admin, { url, events: ['backup.failed'] })).body;
    const count = await s.rt.db.webhook.count({ where: { tenantId } });
    for (const role of ['viewer', 'operator'] as const) {
      const token = await createKey(s, admin, role);
      expect((await create(token, { url, events: ['backup.failed'] })).status).toBe(403);
      expect((await s.request('GET', '/v1/webhooks', { token })).status).toBe(403);
      expect((await s.request('GET', `/v1/webhooks/${w.id}`, { token })).status).toBe(403);
      expect((await s.request('PATCH', `/v1/webhooks/${w.id}`, { token, body: { enabled: false } })).status).toBe(403);
      expect((await s.request('DELETE', `/v1/webhooks/${w.id}`, { token })).status).toBe(403);
      expect((await s.request('POST', `/v1/webhooks/${w.id}/test`, { token })).status).toBe(403);
      expect((await s.request('GET', `/v1/webhooks/${w.id}/deliveries`, { token })).status).toBe(403);
    }
    expect((await s.request('GET', '/v1/webhooks')).status).toBe(401);
    expect(await s.rt.db.webhook.count({ where: { tenantId } })).toBe(count);
    expect((await s.request('GET', `/v1/webhooks/${w.id}`, { token: admin })).body.enabled).toBe(true);
    await s.request('DELETE', `/v1/webhooks/${w.id}`, { token: admin });
  });

  it("another tenant's admin gets 404 for every route, and the webhook is unchanged", async () => {
    const w = (await create(admin, { url, events: ['backup.failed'], description: 'mine' })).body;
    const before = await s.rt.db.webhook.findUniqueOrThrow({ where: { id: w.id } });
    const other = await createTenant(s);
    const token = other.adminToken;
    for (const [method, path, body] of [
      ['GET', `/v1/webhooks/${w.id}`],
      ['PATCH', `/v1/webhooks/${w.id}`, { description: 'theirs', enabled: false, url: 'http://127.0.0.1:11/' }],
      ['DELETE', `/v1/webhooks/${w.id}`],
      ['POST', `/v1/webhooks/${w.id}/test`],
      ['GET', `/v1/webhooks/${w.id}/deliveries`],
      ['GET', `/v1/webhooks/${randomUUID()}`],
    ] as const) {
      const r = await s.request(method, path, { token, ...(body && { body }) });
      expect(r.status, `${method} ${path}`).toBe(404);
      expect(r.headers['content-type']).toMatch(/^application\/problem\+json/);
    }
    expect((await s.request('GET', '/v1/webhooks', { token })).body.items).toEqual([]);
    expect(await s.rt.db.webhook.findUniqueOrThrow({ where: { id: w.id } })).toEqual(before);
    await s.request('DELETE', `/v1/webhooks/${w.id}`, { token: admin });
  });

  it('enabled: false disables, true re-enables and clears what a failing run left', async () => {
    const w = (await create(admin, { url, events: ['backup.failed'] })).body;
    const off = await s.request('PATCH', `/v1/webhooks/${w.id}`, { token: admin, body: { enabled: false } });
    expect(off.body).toMatchObject({ enabled: false, disabled_reason: 'disabled through the API' });
    expect(off.body.disabled_at).not.toBeNull();
    // disabling again keeps the first disabled_at
    expect((await s.request('PATCH', `/v1/webhooks/${w.id}`, { token: admin, body: { enabled: false } })).body.disabled_at).toBe(off.body.disabled_at);
    const on = await s.request('PATCH', `/v1/webhooks/${w.id}`, { token: admin, body: { enabled: true } });
    expect(on.body).toMatchObject({ enabled: true, disabled_at: null, disabled_reason: null });

    // as the delivery worker disables one that failed for days
    const since = new Date(Date.now() - 6 * 86_400_000);
    await s.rt.db.webhook.update({ where: { id: w.id }, data: { enabled: false, disabledAt: new Date(), disabledReason: 'every attempt failed for 5 days', failingSince: since } });
    expect((await s.request('GET', `/v1/webhooks/${w.id}`, { token: admin })).body).toMatchObject({ enabled: false, disabled_reason: 'every attempt failed for 5 days' });
    const back = await s.request('PATCH', `/v1/webhooks/${w.id}`, { token: admin, body: { enabled: true, description: 'fixed' } });
    expect(back.status).toBe(200);
    expect(back.body).toMatchObject({ enabled: true, disabled_at: null, disabled_reason: null, description: 'fixed' });
    expect(await s.rt.db.webhook.findUniqueOrThrow({ where: { id: w.id } })).toMatchObject({ enabled: true, disabledAt: null, disabledReason: null, failingSince: null });
    await s.request('DELETE', `/v1/webhooks/${w.id}`, { token: admin });
  });

  it('lists every delivery attempt newest first, paged, of this webhook only', async () => {
    const w = (await create(admin, { url, events: ['backup.completed', 'backup.failed'] })).body;
    const w2 = (await create(admin, { url, events: ['backup.completed'] })).body;
    const db = s.rt.db;
    const base = Date.parse('2026-11-01T10:00:00.000Z');
    const event = async (type: string) =>
      (await db.event.create({ data: { id: randomUUID(), tenantId, type, clusterId: null, data: { x: 1 }, occurredAt: new Date(base) } })).id;
    const e1 = await event('backup.completed');
    const e2 = await event('backup.failed');
    const d1 = await db.webhookDelivery.create({ data: { id: randomUUID(), tenantId, webhookId: w.id, eventId: e1, status: 'delivered', attempts: 3 } });
    const d2 = await db.webhookDelivery.create({ data: { id: randomUUID(), tenantId, webhookId: w.id, eventId: e2, status: 'pending', attempts: 2 } });
    const d3 = await db.webhookDelivery.create({ data: { id: randomUUID(), tenantId, webhookId: w2.id, eventId: e1, status: 'delivered', attempts: 1 } });
    const attempt = async (d: { id: string; webhookId: string; eventId: string }, n: number, at: number, outcome: 'delivered' | 'failed', statusCode: number | null, error: string | null) =>
      (
        await db.webhookAttempt.create({
          data: { id: randomUUID(), tenantId, webhookId: d.webhookId, deliveryId: d.id, eventId: d.eventId, attempt: n, startedAt: new Date(base + at), durationMs: 10 + n, statusCode, outcome, error },
        })
      ).id;
    const a = [
      await attempt(d1, 1, 1000, 'failed', 500, 'the receiver answered 500'),
      await attempt(d1, 2, 2000, 'failed', null, 'timed out after 10000 ms'),
      await attempt(d1, 3, 3000, 'delivered', 204, null),
      await attempt(d2, 1, 3000, 'failed', 503, 'the receiver answered 503'), // same instant as the one before: id breaks the tie
      await attempt(d2, 2, 4000, 'failed', null, 'connection refused'),
    ];
    await attempt(d3, 1, 5000, 'delivered', 200, null);

    const pages: { id: string }[][] = [];
    let cursor: string | null = null;
    do {
      const r: Awaited<ReturnType<Stack['request']>> = await s.request('GET', `/v1/webhooks/${w.id}/deliveries?limit=2${cursor ? `&cursor=${cursor}` : ''}`, { token: admin });
      expect(r.status).toBe(200);
      pages.push(r.body.items);
      cursor = r.body.next_cursor;
    } while (cursor);
    expect(pages.map((p) => p.length)).toEqual([2, 2, 1]);
    const items = pages.flat() as unknown as Record<string, unknown>[];
    const tied = [a[2]!, a[3]!].sort().reverse();
    expect(items.map((i) => i.id)).toEqual([a[4], ...tied, a[1], a[0]]);
    expect(items[0]).toEqual({
      id: a[4], delivery_id: d2.id, event_id: e2, event_type: 'backup.failed', attempt: 2, started_at: new Date(base + 4000).toISOString(),
      duration_ms: 12, status_code: null, outcome: 'failed', error: 'connection refused', delivery_status: 'pending',
    });
    expect(items.at(-1)).toMatchObject({ id: a[0], event_type: 'backup.completed', status_code: 500, outcome: 'failed', error: 'the receiver answered 500', delivery_status: 'delivered' });
    expect(items.find((i) => i.id === a[2])).toMatchObject({ outcome: 'delivered', status_code: 204, error: null });

    const theirs = await s.request('GET', `/v1/webhooks/${w2.id}/deliveries`, { token: admin });
    expect(theirs.body.items.map((i: { delivery_id: string }) => i.delivery_id)).toEqual([d3.id]);
    const other = await createTenant(s);
    expect((await s.request('GET', `/v1/webhooks/${w.id}/deliveries`, { token: other.adminToken })).status).toBe(404);

    // deleting the webhook deletes its deliveries and attempts, not the events
    await s.request('DELETE', `/v1/webhooks/${w.id}`, { token: admin });
    expect(await db.webhookAttempt.count({ where: { webhookId: w.id } })).toBe(0);
    expect(await db.webhookDelivery.count({ where: { webhookId: w.id } })).toBe(0);
    expect(await db.webhookAttempt.count({ where: { webhookId: w2.id } })).toBe(1);
    expect(await db.event.count({ where: { id: { in: [e1, e2] } } })).toBe(2);
    await s.request('DELETE', `/v1/webhooks/${w2.id}`, { token: admin });
  });

  it('test sends one synthetic webhook.test event with the stored secret and answers its result', async () => {
    // The service over the real database, with a sender that records what it is asked to send
    // (the real sender, and its signature, are tested with it).
    const sent: { target: { url: string; secret: string }; message: WebhookMessage }[] = [];
    const at = new Date('2026-12-02T10:00:00.000Z');
    const service = createWebhookService({
      db: s.rt.db, box: s.rt.box, urlGuard: s.rt.webhookUrls, queues: s.rt.queues, settings: s.rt.config.webhooks, now: () => at, log: s.app.log as never,
      sender: { send: async (target, message) => (sent.push({ target, message }), { outcome: 'failed', statusCode: 401, durationMs: 7, error: 'the receiver answered 401' }) },
    });
    const created = (await create(admin, { url, events: ['backup.failed'] })).body;
    await s.request('PATCH', `/v1/webhooks/${created.id}`, { token: admin, body: { enabled: false } }); // a disabled webhook can be tested
    const events = await s.rt.db.event.count({ where: { tenantId } });
    const result = await service.test(tenantId, created.id);
    expect(sent).toHaveLength(1);
    const [{ target, message }] = sent as [(typeof sent)[number]];
    expect(target).toEqual({ url, secret: created.secret });
    expect(message.timestamp).toEqual(at);
    const body = JSON.parse(message.body);
    const { secret: _, ...view } = created;
    expect(body).toEqual({ id: message.id, type: 'webhook.test', occurred_at: at.toISOString(), cluster_id: null, data: { webhook: { ...view, enabled: false, disabled_at: expect.any(String), disabled_reason: 'disabled through the API', updated_at: expect.any(String) } } });
    expect(JSON.stringify(body)).not.toContain(created.secret.slice(6));
    expect(result).toEqual({ event_id: message.id, outcome: 'failed', status_code: 401, duration_ms: 7, error: 'the receiver answered 401' });
    // nothing recorded: a test is no event of the tenant's
    expect(await s.rt.db.event.count({ where: { tenantId } })).toBe(events);
    expect(await s.rt.db.webhookAttempt.count({ where: { webhookId: created.id } })).toBe(0);
    const other = await createTenant(s);
    await expect(service.test(other.tenantId, created.id)).rejects.toThrow('webhook not found');
    expect(sent).toHaveLength(1);
    await s.request('DELETE', `/v1/webhooks/${created.id}`, { token: admin });
  });

  it('POST /test delivers one signed webhook.test event to the receiver and answers the outcome', async () => {
    const receiver = await startReceiver();
    try {
      const created = (await create(admin, { url: receiver.url('/t'), events: ['backup.failed'] })).body;
      const ok = await s.request('POST', `/v1/webhooks/${created.id}/test`, { token: admin });
      expect(ok.status).toBe(200);
      expect(ok.body).toEqual({ event_id: expect.any(String), outcome: 'delivered', status_code: 200, duration_ms: expect.any(Number), error: null });
      expect(receiver.at('/t')).toHaveLength(1);
      const [got] = receiver.at('/t');
      expect(got!.headers['webhook-id']).toBe(ok.body.event_id);
      const body = verified(created.secret, got!); // the Standard Webhooks reference library
      expect(body).toMatchObject({ id: ok.body.event_id, type: 'webhook.test', cluster_id: null, data: { webhook: { id: created.id, url: receiver.url('/t') } } });

      receiver.reply('/t', () => 401);
      const refused = await s.request('POST', `/v1/webhooks/${created.id}/test`, { token: admin });
      expect(refused.status).toBe(200);
      expect(refused.body).toMatchObject({ outcome: 'failed', status_code: 401, error: expect.stringContaining('401') });

      const other = await createTenant(s);
      expect((await s.request('POST', `/v1/webhooks/${created.id}/test`, { token: other.adminToken })).status).toBe(404);
      expect(receiver.at('/t')).toHaveLength(2);
      expect(await s.rt.db.webhookAttempt.count({ where: { webhookId: created.id } })).toBe(0); // a test is not a delivery
      await s.request('DELETE', `/v1/webhooks/${created.id}`, { token: admin });
    } finally {
      await receiver.close();
    }
  });

  it('audits create, update, delete and test', async () => {
    const { adminToken } = await createTenant(s);
    const w = (await create(adminToken, { url, events: ['backup.failed'] })).body;
    await s.request('PATCH', `/v1/webhooks/${w.id}`, { token: adminToken, body: { description: 'x' } });
    await s.request('POST', `/v1/webhooks/${randomUUID()}/test`, { token: adminToken });
    await s.request('DELETE', `/v1/webhooks/${w.id}`, { token: adminToken });
    const r = await s.request('GET', '/v1/audit-events?limit=100', { token: adminToken });
    const mine = r.body.items.filter((e: { action: string }) => e.action.startsWith('webhook.'));
    expect(mine.map((e: { action: string }) => e.action)).toEqual(['webhook.delete', 'webhook.test', 'webhook.update', 'webhook.create']);
    expect(mine[3]).toMatchObject({ target: { type: 'webhook', id: w.id }, outcome: 'success', status_code: 201 });
    expect(mine[1]).toMatchObject({ outcome: 'failure', status_code: 404 });
    expect((await s.request('GET', '/v1/audit-events?action=webhook.test', { token: adminToken })).status).toBe(200);
  });
  it('caps a tenant at MAX_WEBHOOKS webhooks, also under concurrent creations (409 problem+json)', async () => {
    const { adminToken } = await createTenant(s);
    const make = (i: number) => s.request('POST', '/v1/webhooks', { token: adminToken, body: { url: `http://127.0.0.1:9/cap-${i}`, events: ['backup.failed'] } });
    const answers = await Promise.all(Array.from({ length: MAX_WEBHOOKS + 5 }, (_, i) => make(i)));
    expect(answers.filter((r) => r.status === 201)).toHaveLength(MAX_WEBHOOKS);
    const refused = answers.filter((r) => r.status !== 201);
    expect(refused).toHaveLength(5);
    for (const r of refused) {
      expect(r.status).toBe(409);
      expect(r.headers['content-type']).toContain('application/problem+json');
      expect(r.body.detail).toContain(`at most ${MAX_WEBHOOKS} webhooks`);
    }
    const list = await s.request('GET', '/v1/webhooks?limit=100', { token: adminToken });
    expect(list.body.items).toHaveLength(MAX_WEBHOOKS);
    // another tenant is not affected
    const other = await createTenant(s);
    expect((await s.request('POST', '/v1/webhooks', { token: other.adminToken, body: { url: 'http://127.0.0.1:9/x', events: ['backup.failed'] } })).status).toBe(201);
  });
});
