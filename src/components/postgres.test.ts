import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { decodeStreamManifest, encodeStreamManifest } from '../repo/manifest.js';
import { MemoryRepo, fromArray } from '../repo/memory-repo.test-helper.js';
import { IntegrityError } from '../repo/types.js';
import type { BackupContext } from './types.js';
import { postgresDriver } from './postgres.js';
import { checkPostgresUrl, parsePostgresUrl } from './postgres-connection.js';
import { ComponentError } from './types.js';

// The tenants' test server (test/global-setup.ts), never the service's own.
const SERVER = inject('tenantPgUrl');
const SERVER_URL = new URL(SERVER);
const suffix = randomBytes(4).toString('hex');
const SRC = `bk_pgtest_src_${suffix}`;
const DST = `bk_pgtest_dst_${suffix}`;
const PASSWORD = 'Sup3r/S3cret pa$$';
const ENCODED_PASSWORD = encodeURIComponent(PASSWORD);
const ctx = { dataRoot: tmpdir() };

let admin: pg.Client;
let base: string;
/** The repository dumps go into (small chunks, so that a dump spans several). */
const repo = new MemoryRepo({ chunkSize: 16 * 1024 });
/** Manifests of the dumps taken, by name. */
const dumps = new Map<string, Buffer>();

async function collect(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const b of it) parts.push(b);
  return Buffer.concat(parts);
}

/** Backs `url` up into `repo`: rejects as the manifest stream does, else keeps the manifest under `name`. */
async function backupAs(name: string, url: string, c: BackupContext = ctx) {
  const snap = postgresDriver.backup({ url }, { ...c, sink: repo, previous: null });
  const manifest = await collect(snap.manifest);
  dumps.set(name, manifest);
  return { manifest, bytes: snap.logicalBytes() };
}

function restoreFrom(url: string, manifest: Buffer, source = repo) {
  return postgresDriver.restore({ url }, { ...ctx, source, manifest: fromArray([manifest]) });
}

async function withDb<T>(db: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: `${SERVER}/${db}` });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Every row of every table, plus sequence positions and views: what a restore must reproduce. */
async function contents(db: string): Promise<unknown> {
  return withDb(db, async (c) => {
    const tables = ['customers', 'orders', 'blobs'];
    const out: Record<string, unknown> = {};
    for (const t of tables) {
      const exists = await c.query('SELECT to_regclass($1) AS r', [t]);
      out[t] = exists.rows[0].r ? (await c.query(`SELECT to_jsonb(x) AS row FROM ${t} x ORDER BY id`)).rows.map((r) => r.row) : null;
    }
    out.sequence = (await c.query('SELECT last_value FROM customers_id_seq').catch(() => ({ rows: [null] }))).rows[0];
    out.view = (await c.query('SELECT count(*)::int AS n FROM big_orders').catch(() => ({ rows: [null] }))).rows[0];
    return out;
  });
}

async function seed(db: string): Promise<void> {
  await withDb(db, async (c) => {
    await c.query(`
      CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE, meta jsonb, created_at timestamptz NOT NULL DEFAULT '2024-01-01T00:00:00Z');
      CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int NOT NULL REFERENCES customers(id), amount numeric(10,2), note text);
      CREATE INDEX orders_customer_idx ON orders (customer_id);
      CREATE TABLE blobs (id int PRIMARY KEY, data bytea);
      CREATE VIEW big_orders AS SELECT * FROM orders WHERE amount > 500;
      INSERT INTO customers (name, email, meta)
        SELECT 'customer ' || g, 'c' || g || '@example.com', jsonb_build_object('n', g, 'tags', jsonb_build_array('a', g % 7))
        FROM generate_series(1, 500) g;
      INSERT INTO customers (name, email) VALUES (E'quotes '' " \\\\ and\\nnewlines, ünïcødé 😀', NULL);
      INSERT INTO orders (customer_id, amount, note) SELECT (g % 500) + 1, (g * 7.31) % 1000, 'order ' || g FROM generate_series(1, 2000) g;
      INSERT INTO blobs VALUES (1, decode('00ff10', 'hex')), (2, NULL);
    `);
  });
}

beforeAll(async () => {
  admin = new pg.Client({ connectionString: `${SERVER}/postgres` });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${SRC}`);
  await admin.query(`CREATE DATABASE ${DST}`);
  await seed(SRC);
  base = await mkdtemp(path.join(tmpdir(), 'postgres-test-'));
});

afterAll(async () => {
  for (const db of [SRC, DST]) await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  await admin.end();
  await rm(base, { recursive: true, force: true });
});

describe('postgres backup and restore', () => {
  it('restores the rows into a fresh database, then over a modified one', async () => {
    const put = await backupAs('b', `${SERVER}/${SRC}`);
    expect(put.bytes).toBeGreaterThan(1000);
    // The dump in the repository is pg_dump's custom format.
    const ref = await decodeStreamManifest(fromArray([put.manifest]));
    expect(ref.bytes).toBe(put.bytes);
    expect((await collect(repo.read(ref.chunks))).subarray(0, 5).toString()).toBe('PGDMP');
    const expected = await contents(SRC);

    await restoreFrom(`${SERVER}/${DST}`, put.manifest);
    expect(await contents(DST)).toEqual(expected);

    await withDb(DST, async (c) => {
      await c.query(`DELETE FROM orders WHERE id % 2 = 0; UPDATE customers SET name = 'changed'; INSERT INTO blobs VALUES (3, 'x'); DROP VIEW big_orders;`);
    });
    expect(await contents(DST)).not.toEqual(expected);
    await restoreFrom(`${SERVER}/${DST}`, put.manifest);
    expect(await contents(DST)).toEqual(expected);
  });

  it('a consistent backup dumps the snapshot it exported: its consistent point comes first, writes after it are not in the dump', async () => {
    const expected = await contents(SRC);
    const writer = new pg.Client({ connectionString: `${SERVER}/${SRC}` });
    await writer.connect();
    try {
      let bytesAtConsistent = -1;
      let bytesSeen = 0;
      let late: Promise<unknown> | undefined;
      const snap = postgresDriver.backup(
        { url: `${SERVER}/${SRC}` },
        {
          ...ctx,
          sink: repo,
          previous: null,
          onProgress: (p) => (bytesSeen = p.bytes_done),
          // The pause ends here: the tenant writes again at once (this commits within
          // milliseconds, before pg_dump has even connected), and that write belongs to the next backup.
          onConsistent: () => {
            bytesAtConsistent = bytesSeen;
            late = writer.query(`INSERT INTO customers (name, email) VALUES ('after the snapshot', 'late@example.com')`);
          },
        },
      );
      const manifest = await collect(snap.manifest);
      await late;
      expect(late).toBeDefined();
      expect(bytesAtConsistent).toBe(0); // before a byte of the dump was read
      await restoreFrom(`${SERVER}/${DST}`, manifest);
      const restored = await contents(DST);
      expect(JSON.stringify(restored)).not.toContain('after the snapshot');
      // ... and every row is the snapshot's. (Sequences are not transactional: pg_dump reads their
      // current position, which the late INSERT moved, as any dump of a live database does.)
      expect({ ...(restored as object), sequence: null }).toEqual({ ...(expected as object), sequence: null });
      // the write did land in the source; a plain (live) dump taken now has it
      expect(JSON.stringify(await contents(SRC))).toContain('after the snapshot');
      // the exporting session is gone once the dump ended (no idle transaction left on the server)
      const open = await admin.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND state LIKE 'idle in transaction%'`, [SRC]);
      expect(open.rows[0].n).toBe(0);
    } finally {
      await writer.query(`DELETE FROM customers WHERE email = 'late@example.com'`);
      await writer.end();
    }
  });

  it('fails the stream for a missing database without revealing the password', async () => {
    const url = `postgresql://postgres:${ENCODED_PASSWORD}@${SERVER_URL.host}/bk_pgtest_missing_${suffix}`;
    const err = await backupAs('missing', url).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ComponentError);
    const message = (err as Error).message;
    expect(message).toBe('pg_dump failed: database does not exist');
    // libpq's own words, with the address, stay out of the message: only the server log gets them
    expect((err as ComponentError).detail).toMatch(/connection to server at .*port \d+ failed: FATAL:  database "bk_pgtest_missing_\w+" does not exist/);
    expect(message).not.toContain(PASSWORD);
    expect(message).not.toContain(ENCODED_PASSWORD);
    expect(message).not.toContain('Sup3r');
    expect(dumps.has('missing')).toBe(false); // the manifest errored: no snapshot
  });

  it('tells the tenant why a connection failed in categories, never with the address or port libpq tried', async () => {
    const role = `bk_pw_${suffix}`;
    await admin.query(`CREATE ROLE ${role} LOGIN PASSWORD 'right-password' IN ROLE bk_password_users`);
    try {
      const logged: Record<string, unknown>[] = [];
      const log = { debug: (obj: Record<string, unknown>) => void logged.push(obj) };
      const cases: [string, string][] = [
        [`postgresql://postgres:${ENCODED_PASSWORD}@127.0.0.1:1/x`, 'pg_dump failed: server unreachable (connection refused)'],
        [`postgresql://${role}:wrong-password@${SERVER_URL.host}/${SRC}`, 'pg_dump failed: authentication failed'],
        [`postgresql://no_such_role_${suffix}@${SERVER_URL.host}/${SRC}`, 'pg_dump failed: authentication failed'],
        [`postgresql://postgres@${SERVER_URL.host}/no_such_db_${suffix}`, 'pg_dump failed: database does not exist'],
        [`postgresql://postgres@${SERVER_URL.host}/${SRC}?sslmode=require`, 'pg_dump failed: the server does not support TLS, which the URL requires'],
      ];
      for (const [url, expected] of cases) {
        const err = await backupAs('cat', url, { ...ctx, log }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ComponentError);
        expect((err as Error).message).toBe(expected);
        expect((err as Error).message).not.toMatch(/127\.0\.0\.1|\bport\b|:\d/);
      }
      // the raw text reaches the debug log, redacted
      expect(logged).toHaveLength(cases.length);
      expect(logged[0]).toMatchObject({ tool: 'pg_dump', stderr: expect.stringContaining('port 1 failed: Connection refused') });
      expect(JSON.stringify(logged)).not.toContain('Sup3r');
      // the right password works: the category above is the password's fault, not the setup's
      await admin.query(`CREATE DATABASE ${role} OWNER ${role}`);
      const ok = await backupAs('ok', `postgresql://${role}:right-password@${SERVER_URL.host}/${role}`).catch((e: unknown) => e);
      expect(ok).not.toBeInstanceOf(Error);
      // logged in, but not allowed to read another owner's tables
      const denied = await backupAs('denied', `postgresql://${role}:right-password@${SERVER_URL.host}/${SRC}`).catch((e: unknown) => e);
      expect((denied as Error).message).toMatch(/^pg_dump failed: permission denied: permission denied for (table|schema|sequence) \w+$/);
      // a restore says the same
      const restoreErr = await restoreFrom(`postgresql://${role}:wrong-password@${SERVER_URL.host}/${DST}`, dumps.get('ok') as Buffer).catch((e: unknown) => e);
      expect((restoreErr as Error).message).toBe('pg_restore failed: authentication failed');
    } finally {
      await admin.query(`DROP DATABASE IF EXISTS ${role} WITH (FORCE)`);
      await admin.query(`DROP ROLE IF EXISTS ${role}`);
    }
  });

  it('fails the stream for an unreachable server and for a malformed URL', async () => {
    for (const url of [
      `postgresql://postgres:${ENCODED_PASSWORD}@127.0.0.1:1/x`,
      `mysql://root:${ENCODED_PASSWORD}@127.0.0.1/x`,
      `postgresql://postgres:${ENCODED_PASSWORD}@/x`,
      `postgresql://postgres:${ENCODED_PASSWORD}@127.0.0.1/x?sslkey=/etc/ssl/private/key.pem`,
      `postgresql://postgres:${ENCODED_PASSWORD}@127.0.0.1/x?host=/var/run/postgresql`,
    ]) {
      const err = await backupAs('bad', url).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ComponentError);
      expect((err as Error).message).not.toContain('Sup3r');
    }
    expect(dumps.has('bad')).toBe(false);
  });

  it('passes credentials by environment only and redacts them from the tool output', async () => {
    const fakeBin = await mkdtemp(path.join(base, 'bin-'));
    const record = path.join(fakeBin, 'record.txt');
    await writeFile(
      path.join(fakeBin, 'pg_dump'),
      `#!/bin/sh\n{ echo "args: $*"; env; } > '${record}'\necho "pg_dump: error: connection to server at \\"db.example.com\\" (203.0.113.9), port 6543 failed: FATAL:  password authentication failed for user \\"alice\\" ($PGPASSWORD, postgresql://postgres:$PGPASSWORD@db/x)" >&2\nexit 2\n`,
    );
    await chmod(path.join(fakeBin, 'pg_dump'), 0o755);
    const savedPath = process.env.PATH;
    process.env.PATH = `${fakeBin}:${savedPath}`;
    process.env.DATABASE_URL = 'postgresql://service-own-secret@localhost/backups';
    try {
      const url = `postgresql://alice:${ENCODED_PASSWORD}@db.example.com:6543/app%20db?sslmode=require&application_name=x`;
      const err = await backupAs('fake', url).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ComponentError);
      expect((err as Error).message).toBe('pg_dump failed: authentication failed');
      expect((err as ComponentError).detail).toBe(
        'pg_dump: error: connection to server at "db.example.com" (203.0.113.9), port 6543 failed: FATAL:  password authentication failed for user "alice" (***, postgresql://***@db/x)',
      );
      const recorded = await readFile(record, 'utf8');
      const args = recorded.split('\n')[0];
      expect(args).toBe("args: --format=custom --compress=0 --no-password --dbname=dbname='app db'");
      expect(recorded).toContain(`PGPASSWORD=${PASSWORD}\n`);
      expect(recorded).toContain('PGHOST=db.example.com\n');
      expect(recorded).toContain('PGPORT=6543\n');
      expect(recorded).toContain('PGUSER=alice\n');
      expect(recorded).toContain('PGSSLMODE=require\n');
      expect(recorded).not.toContain('service-own-secret');
    } finally {
      process.env.PATH = savedPath;
      delete process.env.DATABASE_URL;
    }
  });

  it('leaves the database untouched when the dump is garbage or a chunk fails its check mid-stream', async () => {
    const before = await contents(DST);
    const junk = new MemoryRepo();
    const garbageManifest = await collect(encodeStreamManifest(await junk.writeStream(fromArray([randomBytes(10_000)]))));
    const garbage = await restoreFrom(`${SERVER}/${DST}`, garbageManifest, junk).catch((e: unknown) => e);
    expect(garbage).toBeInstanceOf(ComponentError);
    expect((garbage as Error).message).toMatch(/^pg_restore failed: /);

    // The dump of the first test, with a chunk past its middle damaged: pg_restore has applied
    // part of it when the read fails; nothing may be committed.
    const manifest = dumps.get('b') as Buffer;
    const ref = await decodeStreamManifest(fromArray([manifest]));
    expect(ref.chunks.length).toBeGreaterThan(3);
    const damaged = new MemoryRepo({ chunkSize: repo.chunkSize });
    for (const [id, data] of repo.chunks) damaged.chunks.set(id, data);
    damaged.readDelayMs = 5;
    damaged.corrupt(ref.chunks[Math.floor(ref.chunks.length * 0.6)] as string);
    const err = await restoreFrom(`${SERVER}/${DST}`, manifest, damaged).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect(await contents(DST)).toEqual(before);
  });
});

describe('postgres URL parsing', () => {
  it('maps the URL to libpq variables', () => {
    const conn = parsePostgresUrl(`postgres://bob:${ENCODED_PASSWORD}@[::1]:5433/db?sslmode=verify-full&connect_timeout=5`);
    expect(conn.database).toBe('db');
    expect(conn.env).toMatchObject({ PGHOST: '::1', PGPORT: '5433', PGUSER: 'bob', PGPASSWORD: PASSWORD, PGDATABASE: 'db', PGSSLMODE: 'verify-full', PGCONNECT_TIMEOUT: '5' });
    expect(conn.redact(`x ${PASSWORD} y ${ENCODED_PASSWORD} z password=abc`)).toBe('x *** y *** z password=***');
  });

  it.each([
    ['not a url', 'invalid postgres URL: not a URL'],
    ['postgresql://h', 'invalid postgres URL: the path must name one database'],
    ['postgresql://h/db?sslmode=bogus', 'invalid postgres URL: unknown sslmode'],
    ['postgresql://h/db?foo=1', 'invalid postgres URL: unsupported parameter foo'],
    ['postgresql://h/db?passfile=/root/.pgpass', 'invalid postgres URL: parameter passfile is not allowed'],
    ['postgresql://u:secret@h/db', null],
  ])('%j -> %j', (url, expected) => {
    expect(checkPostgresUrl(url)).toBe(expected);
  });
});
