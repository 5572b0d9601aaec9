import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { createTenant, startStack, type Stack } from './helpers/stack.js';

/** A TCP server on 127.0.0.1 that counts every connection it sees. */
async function listen(): Promise<{ server: Server; port: number; connections: () => number }> {
  let n = 0;
  const server = createServer((socket) => {
    n++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('no port');
  return { server, port: address.port, connections: () => n };
}

/** Every spelling of an address a webhook must never reach, on `port`, with the problem the 422 names. */
function forbidden(scheme: 'http' | 'https', port: number): [string, RegExp][] {
  const loop = /is a loopback address, which webhooks may not call unless the operator allows it \(WEBHOOK_ALLOWED_HOSTS\)/;
  return [
    [`${scheme}://127.0.0.1:${port}/hook`, loop],
    [`${scheme}://127.1:${port}/hook`, loop],
    [`${scheme}://0x7f000001:${port}/hook`, loop],
    [`${scheme}://2130706433:${port}/hook`, loop],
    [`${scheme}://0177.0.0.1:${port}/hook`, loop],
    [`${scheme}://127.0.0.2:${port}/hook`, loop],
    [`${scheme}://[::1]:${port}/hook`, loop],
    [`${scheme}://[::ffff:127.0.0.1]:${port}/hook`, /host ::ffff:7f00:1 is a loopback address/],
    [`${scheme}://[0:0:0:0:0:ffff:7f00:1]:${port}/hook`, /host ::ffff:7f00:1 is a loopback address/],
    [`${scheme}://[::127.0.0.1]:${port}/hook`, /embeds an IPv4 address/],
    [`${scheme}://localhost:${port}/hook`, /host localhost resolves to a loopback address/],
    [`${scheme}://LocalHost.:${port}/hook`, /host localhost resolves to a loopback address/],
    [`${scheme}://0.0.0.0:${port}/hook`, /is an unspecified address/],
    [`${scheme}://10.0.0.1:${port}/`, /host 10.0.0.1 is a private address/],
    [`${scheme}://172.16.0.1:${port}/`, /host 172.16.0.1 is a private address/],
    [`${scheme}://192.168.1.1:${port}/`, /host 192.168.1.1 is a private address/],
    [`${scheme}://100.64.0.1:${port}/`, /host 100.64.0.1 is a private address/],
    [`${scheme}://[fd00::1]:${port}/`, /host fd00::1 is a private address/],
    [`${scheme}://169.254.1.1:${port}/`, /host 169.254.1.1 is a link-local address/],
    [`${scheme}://[fe80::1]:${port}/`, /host fe80::1 is a link-local address/],
    [`${scheme}://169.254.169.254/latest/meta-data/`, /host 169.254.169.254 is a cloud metadata address/],
    [`${scheme}://[::ffff:169.254.169.254]/`, /is a cloud metadata address/],
    [`${scheme}://metadata.google.internal/computeMetadata/v1/`, /host metadata.google.internal is a cloud metadata service/],
    [`${scheme}://user:secret@127.0.0.1:${port}/`, /must not carry credentials/],
    [`${scheme}://token@127.0.0.1:${port}/`, /must not carry credentials/],
    [`ftp://127.0.0.1:${port}/`, /scheme ftp is not allowed/],
    [`file:///etc/passwd`, /scheme file is not allowed/],
    [`gopher://127.0.0.1:${port}/`, /scheme gopher is not allowed/],
    [`${scheme}://nowhere.invalid/`, /host nowhere.invalid does not resolve/],
    [`//127.0.0.1:${port}/`, /is not an absolute URL/],
  ];
}

async function expectRefused(s: Stack, token: string, webhookId: string, cases: [string, RegExp][]) {
  for (const [url, problem] of cases) {
    const created = await s.request('POST', '/v1/webhooks', { token, body: { url, events: ['backup.failed'] } });
    expect(created.status, url).toBe(422);
    expect(created.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(created.body.errors, url).toEqual([{ path: 'body.url', message: expect.stringMatching(problem) }]);
    const patched = await s.request('PATCH', `/v1/webhooks/${webhookId}`, { token, body: { url } });
    expect(patched.status, url).toBe(422);
    expect(patched.body.errors, url).toEqual([{ path: 'body.url', message: expect.stringMatching(problem) }]);
  }
}

/** A webhook written straight into the database (no URL this stack allows would do). */
async function seedWebhook(s: Stack, tenantId: string, url: string) {
  const row = await s.rt.db.webhook.create({ data: { id: randomUUID(), tenantId, url, events: ['backup.failed'], secretEnc: s.rt.box.encrypt('whsec_x') } });
  return row;
}

describe('SSRF guard, default settings (public https only)', () => {
  let s: Stack;
  let receiver: Awaited<ReturnType<typeof listen>>;
  beforeAll(async () => {
    receiver = await listen();
    s = await startStack({ worker: false });
  });
  afterAll(async () => {
    await s.close();
    receiver.server.close();
  });

  it('refuses every loopback, private, link-local and metadata spelling at creation and at PATCH, and nothing connects', async () => {
    const { adminToken, tenantId } = await createTenant(s);
    const seeded = await seedWebhook(s, tenantId, 'https://hooks.example.com/in');
    await expectRefused(s, adminToken, seeded.id, forbidden('https', receiver.port));
    // http is refused as such before anything else
    await expectRefused(s, adminToken, seeded.id, [
      [`http://127.0.0.1:${receiver.port}/`, /^http is not allowed: use https \(the operator may allow http with WEBHOOK_ALLOW_HTTP\)$/],
      ['http://hooks.example.com/', /^http is not allowed/],
    ]);
    expect(receiver.connections()).toBe(0);
    expect(await s.rt.db.webhook.count({ where: { tenantId } })).toBe(1);
    expect(await s.rt.db.webhook.findUniqueOrThrow({ where: { id: seeded.id } })).toEqual(seeded);
    expect(s.logs()).not.toContain('user:secret');
  });
});

describe('SSRF guard with WEBHOOK_ALLOWED_HOSTS=127.0.0.1 and WEBHOOK_ALLOW_HTTP=true', () => {
  let s: Stack;
  let receiver: Awaited<ReturnType<typeof listen>>;
  let silent: Awaited<ReturnType<typeof listen>>;
  beforeAll(async () => {
    receiver = await listen();
    silent = await listen(); // never allowed under another name: the guard must not open it either
    s = await startStack({ worker: false, env: { WEBHOOK_ALLOWED_HOSTS: '127.0.0.1', WEBHOOK_ALLOW_HTTP: 'true' } });
  });
  afterAll(async () => {
    await s.close();
    receiver.server.close();
    silent.server.close();
  });

  it('lets a receiver on 127.0.0.1 through, under its spellings, without connecting to it', async () => {
    const { adminToken } = await createTenant(s);
    for (const url of [`http://127.0.0.1:${receiver.port}/hook`, `http://127.1:${receiver.port}/hook`, `http://[::ffff:127.0.0.1]:${receiver.port}/hook`, `https://127.0.0.1:${receiver.port}/`]) {
      const r = await s.request('POST', '/v1/webhooks', { token: adminToken, body: { url, events: ['backup.failed'] } });
      expect(r.status, url).toBe(201);
      expect(r.body.url).toBe(url); // kept as written; the guard checks it again at every delivery
    }
    expect(receiver.connections()).toBe(0);
  });

  it("never the service's own PostgreSQL or Redis, and nothing else on loopback", async () => {
    const { adminToken, tenantId } = await createTenant(s);
    const seeded = await seedWebhook(s, tenantId, `http://127.0.0.1:${receiver.port}/hook`);
    const pgPort = Number(new URL(s.databaseUrl).port || 5432);
    const redisPort = Number(new URL(inject('redisUrl')).port || 6379);
    const ownDb = /^that is the backup service's own database server$/;
    const ownRedis = /^that is the backup service's own Redis server$/;
    await expectRefused(s, adminToken, seeded.id, [
      [`http://127.0.0.1:${pgPort}/`, ownDb],
      [`http://127.1:${pgPort}/`, ownDb],
      [`http://[::ffff:127.0.0.1]:${pgPort}/`, ownDb],
      [`http://2130706433:${pgPort}/`, ownDb],
      [`http://localhost:${pgPort}/`, ownDb],
      [`http://127.0.0.1:${redisPort}/`, ownRedis],
      [`http://[::ffff:7f00:1]:${redisPort}/`, ownRedis],
      [`http://127.0.0.2:${silent.port}/`, /host 127.0.0.2 is a loopback address/],
      [`http://[::1]:${silent.port}/`, /host ::1 is a loopback address/],
      [`http://10.0.0.1:${silent.port}/`, /host 10.0.0.1 is a private address/],
      [`http://169.254.169.254/`, /cloud metadata address/],
      [`http://metadata.google.internal/`, /cloud metadata service/],
      [`http://u:p@127.0.0.1:${receiver.port}/`, /must not carry credentials/],
      [`http://nowhere.invalid/`, /does not resolve/],
    ]);
    expect(await s.rt.db.webhook.findUniqueOrThrow({ where: { id: seeded.id } })).toEqual(seeded);
    // a PATCH to an allowed URL is checked and kept
    const ok = await s.request('PATCH', `/v1/webhooks/${seeded.id}`, { token: adminToken, body: { url: `http://127.0.0.1:${receiver.port}/other` } });
    expect(ok.status).toBe(200);
    expect(ok.body.url).toBe(`http://127.0.0.1:${receiver.port}/other`);
    expect(receiver.connections() + silent.connections()).toBe(0);
  });
});
