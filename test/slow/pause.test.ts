import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTenantDatabase } from '../helpers/db.js';
import { createTenant, startStack, waitFor, type Stack } from '../helpers/stack.js';

/**
 * SPEC section 11, the shortest pause: a PostgreSQL component's consistent point is its exported
 * snapshot, not the end of its dump. A cluster with one ~1 GB database dumps for seconds, yet
 * its pause (pre hook answered -> post hook called) stays under a second.
 */
let s: Stack;
let db: Awaited<ReturnType<typeof createTenantDatabase>>;
let receiver: Server;
const calls: { path: string; at: number }[] = [];

beforeAll(async () => {
  db = await createTenantDatabase();
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  await c.query(`CREATE TABLE big AS SELECT g AS id, repeat(md5(g::text), 6) AS pad FROM generate_series(1, 4500000) g`);
  const size = Number((await c.query(`SELECT pg_total_relation_size('big') AS n`)).rows[0].n);
  await c.end();
  console.log(`[pause] database of ${(size / 1e6).toFixed(0)} MB`);
  expect(size).toBeGreaterThan(900e6);
  receiver = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      calls.push({ path: req.url ?? '', at: Date.now() });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  s = await startStack({ env: { WEBHOOK_ALLOWED_HOSTS: '127.0.0.1', WEBHOOK_ALLOW_HTTP: 'true' } });
});

afterAll(async () => {
  await s?.close();
  receiver?.close();
  await db?.drop();
});

describe('the pause of a consistent backup', () => {
  it('lasts under 1,000 ms while the ~1 GB dump takes seconds', async () => {
    const t = await createTenant(s);
    const base = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
    const c = await s.request('POST', '/v1/clusters', {
      token: t.adminToken,
      body: {
        name: 'big-db',
        components: [{ name: 'db', type: 'postgres', config: { url: db.url } }],
        hooks: { pre_backup: { url: `${base}/pre`, timeout_s: 10 }, post_backup: { url: `${base}/post`, timeout_s: 10 } },
      },
    });
    expect(c.status, c.text).toBe(201);
    const res = await s.request('POST', `/v1/clusters/${c.body.id}/backups`, { token: t.adminToken, body: { live: false } });
    expect(res.status, res.text).toBe(202);
    const b = await waitFor(
      async () => {
        const g = await s.request('GET', `/v1/clusters/${c.body.id}/backups/${res.body.id}`, { token: t.adminToken });
        return ['completed', 'failed'].includes(g.body.status) ? g.body : null;
      },
      240_000,
      'the backup',
    );
    expect(b.status, JSON.stringify(b.error)).toBe('completed');
    const dumpMs = Date.parse(b.completed_at) - Date.parse(b.started_at);
    console.log(`[pause] backup of ${(b.size_bytes / 1e6).toFixed(0)} MB took ${dumpMs} ms; paused_ms ${b.paused_ms}`);
    expect(b.size_bytes).toBeGreaterThan(900e6);
    expect(dumpMs).toBeGreaterThan(2000);
    expect(b.paused_ms).toBeLessThan(1000);
    const pre = calls.find((x) => x.path === '/pre')!;
    const post = calls.find((x) => x.path === '/post')!;
    expect(post.at - pre.at).toBeLessThan(1000);
    expect(Date.parse(b.completed_at) - post.at).toBeGreaterThan(1000); // the dump went on long after the resume
  });
});
