import { access, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONSOLE_BUILD_DIR, CONSOLE_CSP, consolePlugin } from '../../src/http/console.js';
import { startStack, type Stack } from '../helpers/stack.js';

// How the API serves /console: headers, the SPA fallback, files only from the build, the build
// made when missing, and nothing of it in the API's document.
const run = process.env.CONSOLE_BROWSER_TESTS ? describe : describe.skip;

run('serving /console', () => {
  let s: Stack;
  beforeAll(async () => {
    s = await startStack({ worker: false });
  });
  afterAll(async () => s?.close());

  it('answers the page with a strict CSP and anti-framing headers; every page path gets index.html', async () => {
    const index = await readFile(path.join(CONSOLE_BUILD_DIR, 'index.html'), 'utf8').catch(() => null);
    expect(index, 'dist/console must be built (npm run build:console)').not.toBeNull();
    for (const url of ['/console', '/console/', '/console/clusters/7d0e8c1e-0000-4000-8000-000000000000/policy', '/console/events']) {
      const r = await s.request('GET', url);
      expect(r.status, url).toBe(200);
      expect(r.headers['content-type']).toMatch(/^text\/html/);
      expect(r.text).toBe(index);
      expect(r.headers['content-security-policy']).toBe(CONSOLE_CSP);
      expect(r.headers['x-frame-options']).toBe('DENY');
      expect(r.headers['x-content-type-options']).toBe('nosniff');
      expect(r.headers['referrer-policy']).toBe('no-referrer');
    }
    expect(CONSOLE_CSP).toContain("script-src 'self'");
    expect(CONSOLE_CSP).not.toMatch(/unsafe-(inline|eval)/);
    // No inline script or style in the page: everything comes from files under /console/assets.
    expect(index).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    expect(index).not.toMatch(/<style|\sstyle=/);
  });

  it('sends the hashed assets (cached for good) and 404s missing files instead of the page', async () => {
    const index = (await s.request('GET', '/console')).text;
    const js = /src="(\/console\/assets\/[^"]+\.js)"/.exec(index)![1]!;
    const r = await s.request('GET', js);
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/javascript/);
    expect(r.headers['cache-control']).toContain('immutable');
    expect(r.headers['content-security-policy']).toBe(CONSOLE_CSP);
    expect((await s.request('GET', '/console/assets/nope.js')).status).toBe(404);
    expect((await s.request('GET', '/console/..%2f..%2fpackage.json')).status).toBe(404);
    expect((await s.request('GET', '/console/%2e%2e/%2e%2e/package.json')).status).toBe(404);
  });

  it('is not in the API document, and API routes keep their own headers', async () => {
    const doc = (await s.request('GET', '/openapi.json')).body;
    expect(Object.keys(doc.paths).filter((p) => p.startsWith('/console'))).toEqual([]);
    expect(doc.paths['/v1/clusters/{id}/retention/preview'].post.operationId).toBe('previewRetention');
    const api = await s.request('GET', '/healthz');
    expect(api.headers['content-security-policy']).toBeUndefined();
  });

  it('builds the console on the first request when the build is missing', async () => {
    const root = path.join(await mkdtemp(path.join(tmpdir(), 'bk-console-')), 'console');
    const app = Fastify();
    await app.register(consolePlugin, { root });
    try {
      const r = await app.inject({ method: 'GET', url: '/console/clusters' });
      expect(r.statusCode).toBe(200);
      expect(r.body).toContain('/console/assets/');
      await access(path.join(root, 'index.html'));
    } finally {
      await app.close();
      await rm(path.dirname(root), { recursive: true, force: true });
    }
    // Without the build and not allowed to make it: 503 telling the operator what to run.
    const bare = Fastify();
    await bare.register(consolePlugin, { root: path.join(tmpdir(), 'bk-console-none-here'), buildIfMissing: false });
    const r = await bare.inject({ method: 'GET', url: '/console' });
    expect(r.statusCode).toBe(503);
    expect(r.body).toContain('npm run build:console');
    expect(r.headers['content-security-policy']).toBe(CONSOLE_CSP);
    await bare.close();
  });
});
