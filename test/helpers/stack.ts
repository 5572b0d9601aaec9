import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { Writable } from 'node:stream';
import { createLogger } from '../../src/lib/logger.js';
import { inject } from 'vitest';
import { deleteKeysByPrefix } from '../../src/queue/keys.js';
import { loadConfig } from '../../src/config.js';
import { createRuntime, type Runtime } from '../../src/runtime.js';
import { createApiApp } from '../../src/roles/api.js';
import { startWorkerRole, type WorkerRole } from '../../src/roles/worker.js';
import type { App } from '../../src/http/types.js';
import { createTestDatabase } from './db.js';

export const ADMIN_TOKEN = 'test-platform-token-0123456789';

export interface Stack {
  rt: Runtime;
  app: App;
  worker: WorkerRole | null;
  dataRoot: string;
  storageRoot: string;
  databaseUrl: string;
  /** Every log line written so far (to check that no secret is logged). */
  logs(): string;
  request(method: string, url: string, opts?: { token?: string; body?: unknown; headers?: Record<string, string>; rawBody?: string }): Promise<Res>;
  close(): Promise<void>;
}

export interface Res {
  status: number;
  headers: Record<string, string | string[] | number | undefined>;
  body: any;
  text: string;
}

/** A whole service for one test file: its own database, queue prefix, data and storage roots; a real worker. */
export async function startStack(opts: { worker?: boolean; env?: Record<string, string>; now?: () => Date } = {}): Promise<Stack> {
  const db = await createTestDatabase();
  const base = await mkdtemp(path.join(tmpdir(), 'bk-test-'));
  const dataRoot = path.join(base, 'sources');
  const storageRoot = path.join(base, 'artifacts');
  const { mkdir } = await import('node:fs/promises');
  await mkdir(dataRoot, { recursive: true });
  await mkdir(storageRoot, { recursive: true });
  const prefix = `bktest-${randomBytes(5).toString('hex')}`;
  const config = loadConfig(
    {
      DATABASE_URL: db.url,
      REDIS_URL: inject('redisUrl'),
      ADMIN_TOKEN,
      DATA_ROOT: dataRoot,
      STORAGE_URL: pathToFileURL(storageRoot).href,
      ENCRYPTION_KEY: randomBytes(32).toString('base64'),
      QUEUE_PREFIX: prefix,
      DB_POOL_SIZE: '5',
      RATE_LIMIT_MAX: '100000',
      // The tenants' test server (and the closed or silent ports tests use) are on loopback.
      TARGET_ALLOWED_HOSTS: '127.0.0.1',
      ...opts.env,
    },
    base,
  );
  let logText = '';
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logText += chunk.toString();
      cb();
    },
  });
  const log = createLogger('info', sink);
  const rt = createRuntime(config, log, opts.now ? { now: opts.now } : {});
  const app = await createApiApp(rt);
  await app.ready();
  const worker = opts.worker === false ? null : startWorkerRole(rt);

  return {
    rt,
    app,
    worker,
    dataRoot,
    storageRoot,
    databaseUrl: db.url,
    logs: () => logText,
    async request(method, url, o = {}) {
      const headers: Record<string, string> = { ...o.headers };
      if (o.token) headers.authorization = `Bearer ${o.token}`;
      let payload: string | undefined = o.rawBody;
      if (o.body !== undefined) {
        payload = JSON.stringify(o.body);
        headers['content-type'] ??= 'application/json';
      } else if (o.rawBody !== undefined) headers['content-type'] ??= 'application/json';
      const res = await app.inject({ method: method as 'GET', url, headers, ...(payload !== undefined && { payload }) });
      let body: unknown = undefined;
      try {
        body = res.body ? JSON.parse(res.body) : undefined;
      } catch {
        body = res.body;
      }
      return { status: res.statusCode, headers: res.headers, body, text: res.body };
    },
    async close() {
      await worker?.close();
      await app.close();
      await deleteKeysByPrefix(inject('redisUrl'), prefix);
      await rt.close();
      await db.drop();
      await rm(base, { recursive: true, force: true });
    },
  };
}

/**
 * Creates a tenant and returns its admin token and ids, and `dir`: its folder DATA_ROOT/<data_dir>,
 * where its directory components' paths resolve (made by the service).
 */
export async function createTenant(stack: Stack, name = `t-${randomBytes(4).toString('hex')}`) {
  const res = await stack.request('POST', '/v1/tenants', { token: ADMIN_TOKEN, body: { name } });
  if (res.status !== 201) throw new Error(`tenant creation failed: ${res.status} ${res.text}`);
  return { tenantId: res.body.tenant.id as string, adminToken: res.body.api_key.token as string, dir: path.join(stack.dataRoot, res.body.tenant.data_dir as string) };
}

export async function createKey(stack: Stack, adminToken: string, role: 'viewer' | 'operator' | 'admin') {
  const res = await stack.request('POST', '/v1/api-keys', { token: adminToken, body: { name: `${role} key`, role } });
  if (res.status !== 201) throw new Error(`key creation failed: ${res.status} ${res.text}`);
  return res.body.token as string;
}

/** Polls until `fn` returns a truthy value (or throws after timeoutMs). */
export async function waitFor<T>(fn: () => Promise<T | null | undefined | false>, timeoutMs = 20_000, what = 'condition'): Promise<T> {
  const start = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function waitForBackup(stack: Stack, token: string, clusterId: string, backupId: string, statuses = ['completed', 'failed']) {
  return waitFor(
    async () => {
      const r = await stack.request('GET', `/v1/clusters/${clusterId}/backups/${backupId}`, { token });
      return statuses.includes(r.body?.status) ? r.body : null;
    },
    30_000,
    `backup ${backupId} to be ${statuses.join('/')}`,
  );
}
