import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { describe, expect, inject, it } from 'vitest';
import { adminUrl, withAdmin } from './helpers/db.js';
import { freePort, http, waitUntil } from './faults/procs.js';

/** Runs the real program (src/main.ts) and collects its output. */
function main(env: Record<string, string>, cwd: string) {
  // tsx by absolute URL: the program runs from a scratch directory, as from a fresh checkout's data dir.
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  const proc = spawn(process.execPath, ['--import', tsx, path.resolve('src/main.ts')], {
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
    [{ POSTGRES_ALLOWED_HOSTS: 'db.internal, not a host' }, /^error: invalid configuration: POSTGRES_ALLOWED_HOSTS: "not a host" is neither a host name/],
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

  it('creates the database if missing, applies migrations, serves, and stops on SIGTERM', async () => {
    const cwd = await mkdtemp(path.join(tmpdir(), 'bk-start-'));
    const name = `bk_test_start_${randomBytes(4).toString('hex')}`;
    const db = new URL(adminUrl());
    db.pathname = `/${name}`;
    const port = await freePort();
    const p = main({ DATABASE_URL: db.href, REDIS_URL: inject('redisUrl'), PORT: String(port), QUEUE_PREFIX: `bkstart-${randomBytes(3).toString('hex')}` }, cwd);
    try {
      await waitUntil(async () => (await http(port, 'GET', '/readyz')).status === 200, 30_000, 'ready');
      const applied = await withAdmin(async (c) => {
        const u = new URL(adminUrl());
        u.pathname = `/${name}`;
        const pg = (await import('pg')).default;
        const client = new pg.Client({ connectionString: u.href });
        await client.connect();
        const r = await client.query('SELECT count(*)::int AS n FROM _prisma_migrations WHERE finished_at IS NOT NULL');
        await client.end();
        return r.rows[0].n as number;
      });
      expect(applied).toBeGreaterThanOrEqual(3);
      // No ENCRYPTION_KEY given: one was generated beside the data, with a warning.
      expect(p.out().stderr).toMatch(/ENCRYPTION_KEY is not set: generated a new key/);
      p.proc.kill('SIGTERM');
      expect(await p.exited).toBe(0);
    } finally {
      p.proc.kill('SIGKILL');
      await withAdmin(async (c) => void (await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)));
      await rm(cwd, { recursive: true, force: true });
    }
  });
});
