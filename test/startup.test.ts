import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import pg from 'pg';
import { adminUrl, createTestDatabase, withAdmin } from './helpers/db.js';
import { keyFingerprint } from '../src/crypto/fingerprint.js';
import { createSecretBox } from '../src/crypto/secrets.js';
import { freePort, http, waitUntil } from './faults/procs.js';
import { generateTenantKeys, masterKeyId, wrapTenantKeys } from '../src/repo/seal.js';
import { readdir } from 'node:fs/promises';

/** `npm start`'s program: the service built to plain JavaScript (scripts/build-service.mjs), as npm start's prestart builds it. */
const BUILT_MAIN = path.resolve('dist/src/main.js');

beforeAll(async () => {
  const { buildService } = (await import(pathToFileURL(path.resolve('scripts/build-service.mjs')).href)) as { buildService: (o: { dirs: string[] }) => Promise<string[]> };
  await buildService({ dirs: ['src'] });
}, 60_000);

/** Runs the real program (dist/src/main.js, built from src/main.ts) with npm start's flag, and collects its output. */
function main(env: Record<string, string>, cwd: string) {
  // by absolute path: the program runs from a scratch directory, as from a fresh checkout's data dir
  const proc = spawn(process.execPath, ['--max-semi-space-size=2', BUILT_MAIN], {
    env: { PATH: process.env.PATH!, HOME: process.env.HOME ?? '/tmp', ...env },
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (c) => (stdout += c));
  proc.stderr.on('data', (c) => (stderr += c));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return { proc, exited, out: () => ({ stdout, stderr }) };
}

describe('npm start', () => {
  it.each([
    [{ PORT: 'abc' }, /^error: invalid configuration: PORT: /],
    [{ ROLES: 'api,janitor' }, /^error: invalid configuration: ROLES: unknown role "janitor"/],
    [{ ENCRYPTION_KEY: 'c2hvcnQ=' }, /^error: invalid configuration: ENCRYPTION_KEY: must be 32 bytes/],
    [{ POSTGRES_ALLOWED_HOSTS: 'db.internal, not a host' }, /^error: invalid configuration: POSTGRES_ALLOWED_HOSTS: "not a host" is neither public, a host name/],
    [{ TARGET_ALLOWED_HOSTS: '10.0.0.0/33' }, /^error: invalid configuration: TARGET_ALLOWED_HOSTS: "10\.0\.0\.0\/33" is not a valid address range/],
    [{ TARGET_ALLOW_SERVICE_SERVER: 'yes' }, /^error: invalid configuration: TARGET_ALLOW_SERVICE_SERVER: must be true or false/],
    [{ DATABASE_URL: 'mysql://x@h/db' }, /^error: invalid configuration: DATABASE_URL: must be a postgresql:\/\/ URL/],
    [{ DATABASE_URL: 'postgresql://postgres@127.0.0.1:1/x' }, /^error: cannot prepare PostgreSQL at 127\.0\.0\.1:1: /],
    [{ REDIS_URL: 'redis://127.0.0.1:1' }, /^error: cannot reach Redis at 127\.0\.0\.1:1: /],
  ])('exits 1 with a one-line error for %o', async (env, pattern) => {
    const cwd = await mkdtemp(path.join(tmpdir(), 'bk-start-'));
    try {
      const db = new URL(adminUrl());
      db.pathname = '/postgres';
      const p = main({ DATABASE_URL: db.href, REDIS_URL: inject('redisUrl'), ENCRYPTION_KEY: randomBytes(32).toString('base64'), ...env }, cwd);
      expect(await p.exited).toBe(1);
      const lines = p.out().stderr.trim().split('\n').filter((l) => !l.startsWith('npm warn'));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(pattern);
    } finally {
      await rm(cwd, { recursive: true, force: true });
    }
  });

  it('requires ENCRYPTION_KEY when the roles run in separate processes', async () => {
    const cwd = await mkdtemp(path.join(tmpdir(), 'bk-start-'));
    try {
      const p = main({ REDIS_URL: inject('redisUrl'), ROLES: 'worker' }, cwd);
      expect(await p.exited).toBe(1);
      const lines = p.out().stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^error: invalid configuration: ENCRYPTION_KEY: required when ROLES is not all of api,worker,scheduler/);
    } finally {
      await rm(cwd, { recursive: true, force: true });
    }
  });

  const keyA = randomBytes(32);
  it.each([
    ['another key was recorded', `INSERT INTO service_settings (name, value) VALUES ('encryption_key_fingerprint', '${keyFingerprint(keyA)}')`, /^error: ENCRYPTION_KEY is not the key/],
    [
      'nothing was recorded but a stored secret does not decrypt',
      `INSERT INTO clusters (id, tenant_id, name, environment, region, backup_location, components, updated_at)
       VALUES ('00000000-0000-4000-8000-000000000002', '00000000-0000-4000-8000-000000000001', 'c', 'production', 'eu-1', 'same-region',
         '[{"name":"db","type":"postgres","config":{"url_encrypted":"${createSecretBox(keyA).encrypt('postgresql://u:p@h/db')}","url_masked":"x"}}]', now())`,
      /^error: ENCRYPTION_KEY does not decrypt the secrets already stored/,
    ],
  ])('refuses to start with a different encryption key when %s', async (_what, setup, pattern) => {
    const cwd = await mkdtemp(path.join(tmpdir(), 'bk-start-'));
    const db = await createTestDatabase();
    try {
      const c = new pg.Client({ connectionString: db.url });
      await c.connect();
      const dataDir = (await c.query(`SELECT 1 FROM information_schema.columns WHERE table_name = 'tenants' AND column_name = 'data_dir'`)).rowCount;
      await c.query(`INSERT INTO tenants (id, name${dataDir ? ', data_dir' : ''}) VALUES ('00000000-0000-4000-8000-000000000001', 'k'${dataDir ? ", 'k'" : ''})`);
      await c.query(setup);
      await c.end();
      const p = main({ DATABASE_URL: db.url, REDIS_URL: inject('redisUrl'), ROLES: 'api', PORT: String(await freePort()), ENCRYPTION_KEY: randomBytes(32).toString('base64') }, cwd);
      expect(await p.exited).toBe(1);
      const lines = p.out().stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(pattern);
      expect(p.out().stderr + p.out().stdout).not.toContain(keyA.toString('base64'));
    } finally {
      await db.drop();
      await rm(cwd, { recursive: true, force: true });
    }
  });

  it('refuses to start, writing nothing, when ENCRYPTION_KEY does not unwrap the keys of an existing repository', async () => {
    const cwd = await mkdtemp(path.join(tmpdir(), 'bk-start-'));
    const db = await createTestDatabase();
    const keyA = randomBytes(32);
    try {
      // A repository made under key A; no fingerprint recorded and no secret stored, so only the repository's keys can tell.
      const c = new pg.Client({ connectionString: db.url });
      await c.connect();
      const wrapped = wrapTenantKeys(generateTenantKeys(), keyA);
      await c.query(`INSERT INTO tenants (id, name, data_dir) VALUES ('00000000-0000-4000-8000-000000000001', 'k', 'k')`);
      await c.query(`INSERT INTO repositories (tenant_id, wrapped_keys, key_id) VALUES ('00000000-0000-4000-8000-000000000001', $1, $2)`, [wrapped, masterKeyId(keyA)]);
      const state = async () => {
        const counts = await c.query(
          `SELECT (SELECT count(*) FROM service_settings)::int AS settings, (SELECT count(*) FROM packs)::int AS packs, (SELECT count(*) FROM clusters)::int AS clusters,
                  (SELECT count(*) FROM api_keys)::int AS keys, (SELECT string_agg(tenant_id || ':' || wrapped_keys || ':' || key_id, ',') FROM repositories) AS repos`,
        );
        return counts.rows[0];
      };
      const before = await state();
      const storage = path.join(cwd, 'store');
      const p = main(
        {
          DATABASE_URL: db.url,
          REDIS_URL: inject('redisUrl'),
          PORT: String(await freePort()),
          ENCRYPTION_KEY: randomBytes(32).toString('base64'),
          STORAGE_URL: pathToFileURL(storage).href,
          QUEUE_PREFIX: `bkstart-${randomBytes(3).toString('hex')}`,
        },
        cwd,
      );
      expect(await p.exited).toBe(1);
      const lines = p.out().stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^error: ENCRYPTION_KEY does not unwrap the tenant keys stored in the repositories/);
      expect(p.out().stdout.trim()).toBe('');
      // Nothing written: the database is as it was (no fingerprint recorded), the store empty.
      expect(await state()).toEqual(before);
      expect(await readdir(storage).catch(() => [])).toEqual([]);
      await c.end();
    } finally {
      await db.drop();
      await rm(cwd, { recursive: true, force: true });
    }
  });

  it('creates the database if missing, applies migrations, serves, and stops on SIGTERM', async () => {
    const cwd = await mkdtemp(path.join(tmpdir(), 'bk-start-'));
    const name = `bk_test_start_${randomBytes(4).toString('hex')}`;
    const db = new URL(adminUrl());
    db.pathname = `/${name}`;
    const port = await freePort();
    const metricsToken = 'start-metrics-token-0123456789';
    const p = main({ DATABASE_URL: db.href, REDIS_URL: inject('redisUrl'), PORT: String(port), QUEUE_PREFIX: `bkstart-${randomBytes(3).toString('hex')}`, METRICS_TOKEN: metricsToken }, cwd);
    try {
      await waitUntil(async () => (await http(port, 'GET', '/readyz')).status === 200, 30_000, 'ready');
      const applied = await withAdmin(async (c) => {
        const u = new URL(adminUrl());
        u.pathname = `/${name}`;
        const pg = (await import('pg')).default;
        const client = new pg.Client({ connectionString: u.href });
        await client.connect();
        const r = await client.query('SELECT count(*)::int AS n FROM _prisma_migrations WHERE finished_at IS NOT NULL');
        const f = await client.query(`SELECT value FROM service_settings WHERE name = 'encryption_key_fingerprint'`);
        await client.end();
        return { n: r.rows[0].n as number, fingerprint: f.rows[0]?.value as string | undefined };
      });
      expect(applied.n).toBeGreaterThanOrEqual(3);
      // No ENCRYPTION_KEY given: one was generated beside the data, with a warning.
      expect(p.out().stderr).toMatch(/ENCRYPTION_KEY is not set: generated a new key/);
      // The first start recorded the key's fingerprint, not the key.
      const key = Buffer.from((await readFile(path.join(cwd, 'data', 'encryption.key'), 'utf8')).trim(), 'base64');
      expect(applied.fingerprint).toBe(keyFingerprint(key));
      // /metrics needs METRICS_TOKEN.
      expect((await http(port, 'GET', '/metrics')).status).toBe(401);
      expect((await http(port, 'GET', '/metrics', 'wrong-metrics-token-0123456789')).status).toBe(401);
      const scraped = await http(port, 'GET', '/metrics', metricsToken);
      expect(scraped.status).toBe(200);
      expect(scraped.text).toContain('# TYPE backups gauge');
      p.proc.kill('SIGTERM');
      expect(await p.exited).toBe(0);
    } finally {
      p.proc.kill('SIGKILL');
      await withAdmin(async (c) => void (await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)));
      await rm(cwd, { recursive: true, force: true });
    }
  });
});
