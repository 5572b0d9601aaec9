import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTenantDatabase, tenantServerUrl, tenantUrl } from '../helpers/db.js';
import { parsePostgresUrl } from '../../src/components/postgres-connection.js';
import { ComponentError } from '../../src/components/types.js';
import { baseBackup } from '../../src/components/pitr/basebackup.js';
import { parseLsn, walSegmentName } from '../../src/components/pitr/lsn.js';
import { copyDatabase, recoverScratch, sweepScratch, type RecoverOptions, type ScratchInstance, type WalSource } from '../../src/components/pitr/scratch.js';

/*
 * Real servers throughout: the source is a database of ours on the tests' tenant server, its WAL
 * comes from pg_receivewal on a slot of ours, its base backup from baseBackup(), and each
 * recovery runs a real scratch postgres.
 *
 * Root and non-root: this machine runs the tests as root, so recoverScratch runs postgres as the
 * `postgres` OS user (scratchUser) and chowns the instance to it; the work dir is made 0711 so
 * that user can reach its subdirectory (a mkdtemp dir is 0700). Run as an ordinary user, the same
 * test passes unchanged: recoverScratch then ignores scratchUser and runs postgres as that user,
 * who owns the work dir anyway. (Checked by running this file as the `postgres` OS user with a
 * vitest config that `provide`s tenantPgUrl instead of the global setup, which needs root here.)
 */

const SCRATCH_USER = 'postgres';
const SEGMENT = /^[0-9A-F]{24}$/;

let db: Awaited<ReturnType<typeof createTenantDatabase>>;
let source: pg.Client;
let slot: string;
let tmp: string;
let workDir: string;
let walDir: string;
let tarFile: string;
let receiver: ChildProcess;
const times: Date[] = [];
let tick: Date;
const made: string[] = [];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function onServer<T>(fn: (c: pg.Client) => Promise<T>, user?: string): Promise<T> {
  const c = new pg.Client({ connectionString: tenantUrl('postgres', user ? { user } : {}) });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

async function insertAt(id: number): Promise<Date> {
  await source.query('INSERT INTO items (id) VALUES ($1)', [id]);
  const r = await source.query<{ t: Date }>('SELECT clock_timestamp() AS t');
  await source.query('SELECT pg_switch_wal()'); // a segment per step, so a missing one can be picked
  return r.rows[0]!.t;
}

/** The receiver's files, as an archive would hand them: the newest (.partial) cut to its meaningful-looking bytes, which recoverScratch pads again. */
async function walFrom(dir: string, from: string, opts: { drop?: (names: string[]) => string[] } = {}): Promise<WalSource> {
  const files = await readdir(dir);
  let names = files
    .map((f) => f.replace(/\.partial$/, ''))
    .filter((n) => SEGMENT.test(n) && n.slice(8) >= from.slice(8))
    .sort();
  names = [...new Set(names)];
  if (opts.drop) names = opts.drop(names);
  return {
    names,
    async *read(name: string) {
      const bytes = await readFile(path.join(dir, name)).catch(() => null);
      if (bytes) {
        yield bytes;
        return;
      }
      const partial = await readFile(path.join(dir, `${name}.partial`)).catch(() => readFile(path.join(dir, name)));
      let end = partial.length;
      while (end > 0 && partial[end - 1] === 0) end--;
      yield partial.subarray(0, Math.ceil(end / 8192) * 8192);
    },
  };
}

let startSegment: string;

function options(target: RecoverOptions['target'], wal: WalSource, extra: Partial<RecoverOptions> = {}): RecoverOptions {
  return { baseTar: createReadStream(tarFile), wal, target, workDir, scratchUser: SCRATCH_USER, ...extra };
}

async function rowsOf(instance: ScratchInstance): Promise<number[]> {
  const name = `${db.name}_r${made.length}`;
  made.push(name);
  await copyDatabase(instance, db.name, parsePostgresUrl(`${tenantServerUrl()}/postgres`), name, {});
  const c = new pg.Client({ connectionString: tenantUrl(name) });
  await c.connect();
  try {
    return (await c.query<{ id: number }>('SELECT id FROM items ORDER BY id')).rows.map((r) => r.id);
  } finally {
    await c.end();
  }
}

async function scratchDirs(): Promise<string[]> {
  return (await readdir(workDir)).filter((n) => n.startsWith('pitr-scratch-'));
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'bk-scratch-test-'));
  workDir = path.join(tmp, 'work');
  walDir = path.join(tmp, 'wal');
  tarFile = path.join(tmp, 'base.tar');
  await mkdir(workDir);
  await mkdir(walDir);
  // the scratch user must be able to traverse to its own directory inside workDir
  await chmod(tmp, 0o711);
  await chmod(workDir, 0o711);

  db = await createTenantDatabase();
  source = new pg.Client({ connectionString: db.url });
  await source.connect();
  await source.query('CREATE TABLE items (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())');
  await source.query('CREATE TABLE ticks (at timestamptz NOT NULL DEFAULT clock_timestamp())');
  // untrusted language: restoring it needs a superuser on the target (the failing-copy test below)
  await source.query("CREATE FUNCTION bk_textlen(text) RETURNS int LANGUAGE internal IMMUTABLE STRICT AS 'textlen'");

  slot = `bk_scratch_${randomBytes(5).toString('hex')}`;
  await onServer((c) => c.query('SELECT pg_create_physical_replication_slot($1, true)', [slot]));
  receiver = spawn('pg_receivewal', ['-D', walDir, '-S', slot, '--synchronous', '-n', '--no-password', '-d', tenantUrl('postgres')], { stdio: ['ignore', 'ignore', 'pipe'] });
  receiver.stderr?.resume();

  const backup = baseBackup(parsePostgresUrl(`${tenantServerUrl()}/postgres`), {});
  await pipeline(backup.stream, createWriteStream(tarFile));
  const result = await backup.result;
  startSegment = walSegmentName(result.timeline, parseLsn(result.startLsn));
  await source.query('SELECT pg_switch_wal()');

  for (let i = 1; i <= 3; i++) {
    await sleep(1200);
    times.push(await insertAt(i));
  }
  // a commit after every target of these tests: recovery to a time sees that it has passed it
  await sleep(1200);
  await source.query('INSERT INTO ticks DEFAULT VALUES');
  tick = (await source.query<{ t: Date }>('SELECT clock_timestamp() AS t')).rows[0]!.t;
  const sw = await source.query<{ lsn: string; tli: number }>('SELECT pg_switch_wal()::text AS lsn, (SELECT timeline_id FROM pg_control_checkpoint()) AS tli');
  const last = walSegmentName(sw.rows[0]!.tli, parseLsn(sw.rows[0]!.lsn) - 1n);
  for (let i = 0; ; i++) {
    if ((await readdir(walDir)).includes(last)) break;
    if (i > 300) throw new Error(`pg_receivewal did not complete ${last}`);
    await sleep(100);
  }
}, 120_000);

afterAll(async () => {
  receiver?.kill('SIGINT');
  await new Promise((r) => (receiver?.exitCode !== null ? r(null) : receiver.once('close', r)));
  await onServer((c) => c.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', [slot])).catch(() => {});
  await source?.end().catch(() => {});
  for (const name of made) await onServer((c) => c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)).catch(() => {});
  await db?.drop();
  if (tmp) await rm(tmp, { recursive: true, force: true });
}, 60_000);

describe('recoverScratch + copyDatabase', () => {
  it('restores to a time between t2 and t3: exactly rows 1 and 2', async () => {
    const target = new Date((times[1]!.getTime() + times[2]!.getTime()) / 2);
    const instance = await recoverScratch(options({ time: target }, await walFrom(walDir, startSegment)));
    try {
      expect(instance.reached.targetReached).toBe(true);
      expect(instance.reached.lastReplayed).toBeInstanceOf(Date);
      expect(instance.reached.lastReplayed!.getTime()).toBeGreaterThanOrEqual(times[1]!.getTime() - 1000);
      expect(instance.reached.lastReplayed!.getTime()).toBeLessThanOrEqual(target.getTime());
      // the data directory belongs to the scratch user (when root) and only to it
      const st = await stat(path.join(instance.socketDir, 'data'));
      expect(st.mode & 0o777).toBe(0o700);
      if (process.getuid?.() === 0) expect(st.uid).not.toBe(0);
      expect(await rowsOf(instance)).toEqual([1, 2]);
    } finally {
      await instance.stop();
    }
    expect(await scratchDirs()).toEqual([]);
  }, 120_000);

  it('restores to just after t3: all three rows', async () => {
    const target = new Date(times[2]!.getTime() + 300);
    expect(target.getTime()).toBeLessThan(tick.getTime());
    const instance = await recoverScratch(options({ time: target }, await walFrom(walDir, startSegment)));
    try {
      expect(instance.reached.targetReached).toBe(true);
      expect(await rowsOf(instance)).toEqual([1, 2, 3]);
    } finally {
      await instance.stop();
    }
  }, 120_000);

  it('a target past the end of the WAL promotes at its end and says the target was not reached', async () => {
    const instance = await recoverScratch(options({ time: new Date(Date.now() + 3600_000) }, await walFrom(walDir, startSegment)));
    try {
      expect(instance.reached.targetReached).toBe(false);
      expect(instance.reached.lastReplayed!.getTime()).toBeGreaterThanOrEqual(tick.getTime() - 1000);
      expect(await rowsOf(instance)).toEqual([1, 2, 3]);
    } finally {
      await instance.stop();
    }
  }, 120_000);

  it("'immediate' gives the state at the base backup; copies onto an existing name or that fail leave nothing behind", async () => {
    const instance = await recoverScratch(options('immediate', await walFrom(walDir, startSegment)));
    try {
      expect(instance.reached.targetReached).toBe(true);
      expect(await rowsOf(instance)).toEqual([]);

      // an existing database is refused and left as it was
      const existing = await createTenantDatabase();
      try {
        const c = new pg.Client({ connectionString: existing.url });
        await c.connect();
        await c.query('CREATE TABLE mine (v text); INSERT INTO mine VALUES ($$kept$$)');
        await c.end();
        const err = await copyDatabase(instance, db.name, parsePostgresUrl(`${tenantServerUrl()}/postgres`), existing.name, {}).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ComponentError);
        expect((err as Error).message).toMatch(/already exists/);
        const again = new pg.Client({ connectionString: existing.url });
        await again.connect();
        expect((await again.query('SELECT v FROM mine')).rows).toEqual([{ v: 'kept' }]);
        expect((await again.query("SELECT count(*)::int AS n FROM pg_tables WHERE tablename = 'items'")).rows[0].n).toBe(0);
        await again.end();
      } finally {
        await existing.drop();
      }

      // a restore that fails half-way (a role that may create databases, not internal-language functions) drops what it made
      const weak = `bk_scratch_weak_${randomBytes(4).toString('hex')}`;
      const name = `${db.name}_weak`;
      made.push(name);
      await onServer((c) => c.query(`CREATE ROLE ${weak} LOGIN CREATEDB`));
      try {
        const err = await copyDatabase(instance, db.name, parsePostgresUrl(tenantUrl('postgres', { user: weak })), name, {}).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ComponentError);
        expect((err as Error).message).toMatch(/pg_restore failed: permission denied/);
        const left = await onServer((c) => c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]));
        expect(left.rowCount).toBe(0);
      } finally {
        await onServer((c) => c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
        await onServer((c) => c.query(`DROP ROLE IF EXISTS ${weak}`));
      }

      // a database that did not exist at the recovered point
      const gone = await copyDatabase(instance, 'no_such_db', parsePostgresUrl(`${tenantServerUrl()}/postgres`), `${db.name}_none`, {}).catch((e: unknown) => e);
      expect(gone).toBeInstanceOf(ComponentError);
      expect((gone as Error).message).toMatch(/did not exist at the recovered point/);
    } finally {
      await instance.stop();
    }
    expect(await scratchDirs()).toEqual([]);
  }, 120_000);

  it('fails with "WAL is missing" when a segment is missing, and leaves no directory', async () => {
    const withoutMiddle = await walFrom(walDir, startSegment, { drop: (n) => n.filter((_, i) => i !== 1) });
    const err = await recoverScratch(options('immediate', withoutMiddle)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ComponentError);
    expect((err as Error).message).toMatch(/^WAL is missing: the archive has no segment between/);

    const withoutStart = await walFrom(walDir, startSegment, { drop: (n) => n.slice(1) });
    const err2 = await recoverScratch(options({ time: times[0]! }, withoutStart)).catch((e: unknown) => e);
    expect(err2).toBeInstanceOf(ComponentError);
    expect((err2 as Error).message).toMatch(new RegExp(`^WAL is missing: the archive has no segment ${startSegment}`));
    expect(await scratchDirs()).toEqual([]);
  }, 60_000);

  it('an abort stops the server and removes the directory', async () => {
    const ac = new AbortController();
    const run = recoverScratch(options({ time: times[0]! }, await walFrom(walDir, startSegment), { signal: ac.signal }));
    // abort once the scratch server has started replaying
    for (let i = 0; i < 600; i++) {
      const dirs = await scratchDirs();
      const pid = dirs[0] ? await readFile(path.join(workDir, dirs[0], 'data', 'postmaster.pid'), 'utf8').catch(() => null) : null;
      if (pid) break;
      await sleep(20);
    }
    ac.abort();
    const err = await run.catch((e: unknown) => e);
    expect((err as Error).name).toBe('AbortError');
    expect(await scratchDirs()).toEqual([]);
  }, 60_000);
});

describe('sweepScratch', () => {
  it('removes a directory whose owner is gone, and keeps one whose owner lives', async () => {
    const stale = path.join(workDir, 'pitr-scratch-stale');
    const live = path.join(workDir, 'pitr-scratch-live');
    await mkdir(path.join(stale, 'data'), { recursive: true });
    await mkdir(live);
    // a process that has exited: its pid no longer names it
    const gone = spawn('true');
    await new Promise((r) => gone.once('close', r));
    await writeFile(path.join(stale, 'owner'), `${gone.pid} 1\n`);
    const myStart = (await readFile(`/proc/${process.pid}/stat`, 'utf8')).split(') ')[1]!.split(' ')[19];
    await writeFile(path.join(live, 'owner'), `${process.pid} ${myStart}\n`);
    expect(await sweepScratch(workDir)).toEqual(['pitr-scratch-stale']);
    expect(await scratchDirs()).toEqual(['pitr-scratch-live']);
    await rm(live, { recursive: true });
  });

  it("stops the running server of a dead worker's instance before removing it", async () => {
    const instance = await recoverScratch(options('immediate', await walFrom(walDir, startSegment)));
    try {
      const pid = Number((await readFile(path.join(instance.socketDir, 'data', 'postmaster.pid'), 'utf8')).split('\n')[0]);
      expect(() => process.kill(pid, 0)).not.toThrow();
      const gone = spawn('true');
      await new Promise((r) => gone.once('close', r));
      await writeFile(path.join(instance.socketDir, 'owner'), `${gone.pid} 1\n`);
      expect(await sweepScratch(workDir)).toEqual([path.basename(instance.socketDir)]);
      expect(() => process.kill(pid, 0)).toThrow();
      expect(await scratchDirs()).toEqual([]);
    } finally {
      await instance.stop();
    }
  }, 60_000);
});
