import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTenant, startStack, type Stack } from './helpers/stack.js';

let s: Stack;
let token: string;
beforeAll(async () => {
  s = await startStack({ worker: false, env: { METRICS_TOKEN: 'test-metrics-token-0123456789' } });
  token = (await createTenant(s)).adminToken;
});
afterAll(async () => s.close());

const isProblem = (res: { headers: Record<string, unknown>; body: any }, status: number) => {
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(res.body).toMatchObject({ type: expect.any(String), title: expect.any(String), status, detail: expect.any(String) });
  expect(JSON.stringify(res.body)).not.toMatch(/ at .*\.(ts|js):\d+/); // no stack trace
};

describe('HTTP hygiene', () => {
  it('answers malformed JSON with 400 problem+json', async () => {
    const res = await s.request('POST', '/v1/policies', { token, rawBody: '{"name": ' });
    expect(res.status).toBe(400);
    isProblem(res, 400);
    expect(res.body.detail).toMatch(/JSON/);
  });

  it('answers an unknown route with 404 problem+json', async () => {
    const res = await s.request('GET', '/v1/nothing-here', { token });
    expect(res.status).toBe(404);
    isProblem(res, 404);
  });

  it('answers an oversized body with 413 problem+json', async () => {
    const res = await s.request('POST', '/v1/policies', { token, rawBody: JSON.stringify({ name: 'x'.repeat(2 * 1024 * 1024) }) });
    expect(res.status).toBe(413);
    isProblem(res, 413);
  });

  it('answers a wrong content type with 415 problem+json', async () => {
    const res = await s.request('POST', '/v1/policies', { token, rawBody: 'name=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(res.status).toBe(415);
    isProblem(res, 415);
  });

  it('answers validation errors with 422 and the failing fields', async () => {
    const res = await s.request('POST', '/v1/clusters', { token, body: { name: 5, environment: 'prod', components: 'x', surprise: true } });
    expect(res.status).toBe(422);
    isProblem(res, 422);
    const paths = res.body.errors.map((e: { path: string }) => e.path);
    expect(paths).toEqual(expect.arrayContaining(['body.name', 'body.environment', 'body.components']));
  });

  it('answers a malformed id like a missing resource (404)', async () => {
    const res = await s.request('GET', '/v1/clusters/not-a-uuid', { token });
    expect(res.status).toBe(404);
    isProblem(res, 404);
  });

  it('paginates with limit 1..100 and next_cursor, newest first, without gaps or repeats', async () => {
    const names = Array.from({ length: 7 }, (_, i) => `page-${i}`);
    for (const name of names) await s.request('POST', '/v1/policies', { token, body: { name } });
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const res: any = await s.request('GET', `/v1/policies?limit=3${cursor ? `&cursor=${cursor}` : ''}`, { token });
      expect(res.status).toBe(200);
      expect(res.body.items.length).toBeLessThanOrEqual(3);
      seen.push(...res.body.items.map((p: { name: string }) => p.name));
      cursor = res.body.next_cursor;
    } while (cursor);
    // newest first: the policies created here, then the tenant's three environment defaults
    // (created together, so among themselves in id order)
    expect(seen.slice(0, names.length)).toEqual([...names].reverse());
    expect(seen.slice(names.length).sort()).toEqual(['development default', 'production default', 'staging default']);
    for (const bad of ['limit=0', 'limit=101', 'limit=abc', 'cursor=garbage']) {
      const res = await s.request('GET', `/v1/policies?${bad}`, { token });
      expect(res.status, bad).toBe(422);
      isProblem(res, 422);
    }
  });

  it('returns the request id on every response and logs it', async () => {
    const res = await s.request('GET', '/v1/clusters', { token, headers: { 'x-request-id': 'trace-abc-123' } });
    expect(res.headers['x-request-id']).toBe('trace-abc-123');
    const gen = await s.request('GET', '/healthz');
    expect(gen.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    const lines = s.logs().trim().split('\n').map((l) => JSON.parse(l));
    const mine = lines.filter((l) => l.request_id === 'trace-abc-123');
    expect(mine.length).toBeGreaterThanOrEqual(2); // incoming request and completed response
    expect(lines.every((l) => !l.req || l.request_id)).toBe(true);
    expect(s.logs()).not.toContain(token);
  });
});

describe('ops endpoints', () => {
  it('/healthz answers', async () => {
    expect((await s.request('GET', '/healthz')).body).toEqual({ status: 'ok' });
  });

  it('/readyz is 200 when PostgreSQL and Redis answer', async () => {
    const res = await s.request('GET', '/readyz');
    expect(res.status).toBe(200);
    expect(res.body.checks).toEqual({ postgres: 'ok', redis: 'ok' });
  });

  it('/metrics exposes request durations, backups by status and trigger, and queue depth', async () => {
    expect((await s.request('GET', '/metrics')).status).toBe(401);
    const res = await s.request('GET', '/metrics', { token: 'test-metrics-token-0123456789' });
    expect(res.status).toBe(200);
    expect(res.text).toMatch(/backup_replication_unfinished\{state="degraded"\} \d+/);
    expect(res.text).toContain('http_request_duration_seconds_bucket');
    expect(res.text).toContain('# TYPE backups gauge');
    expect(res.text).toMatch(/queue_jobs\{queue="backups",state="waiting"\} \d+/);
  });

  it('serves the OpenAPI 3.1 document and the docs UI', async () => {
    const doc = await s.request('GET', '/openapi.json');
    expect(doc.body.openapi).toBe('3.1.0');
    expect(Object.keys(doc.body.paths)).toEqual(expect.arrayContaining(['/v1/clusters/{id}/backups', '/v1/tenants', '/v1/clusters/{id}/retention']));
    // Every operation documents its error answers.
    for (const [p, ops] of Object.entries<any>(doc.body.paths)) {
      for (const [m, op] of Object.entries<any>(ops)) {
        if (!p.startsWith('/v1/')) continue;
        expect(Object.keys(op.responses), `${m} ${p}`).toEqual(expect.arrayContaining(['401', '403', '422']));
      }
    }
    const ui = await s.request('GET', '/docs/');
    expect(ui.status).toBe(200);
  });

  it('the committed openapi/openapi.json is up to date (npm run openapi:check)', async () => {
    const { stdout } = await promisify(execFile)('npx', ['tsx', 'scripts/openapi.ts', '--check'], { timeout: 60_000 });
    expect(stdout).toContain('up to date');
  });
});
