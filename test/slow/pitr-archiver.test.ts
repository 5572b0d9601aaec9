import { createHash, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { createTenant, startStack, type Stack } from '../helpers/stack.js';
import { createTenantDatabase, tenantServerUrl, tenantUrl } from '../helpers/db.js';
import { startService, waitUntil, type Service } from '../faults/procs.js';
import { startArchiver, type Archiver } from '../../src/modules/pitr/archiver.js';
import { storedWal, WalGap } from '../../src/modules/pitr/wal-files.js';
import { slotNameOf } from '../../src/modules/pitr/wal-streams.js';
import { parseLsn } from '../../src/components/pitr/lsn.js';
import { createMetrics } from '../../src/modules/ops/metrics.js';

// The archiver role (SPEC section 13): WAL streamed into the repository with a recovery window
// trailing the source by < 10 s, taken over without a gap after a kill -9, slots dropped with
// their streams.

const LEASE_MS = 3000;
let s: Stack;
let tenantId: string;
let token: string;
let tdb: Awaited<ReturnType<typeof createTenantDatabase>>;
let work: string;
const archivers: Archiver[] = [];
let child: Service | undefined;

async function onTenant<T extends pg.QueryResultRow>(sql: string, params: unknown[] = [], database = tdb.name): Promise<pg.QueryResult<T>> {
  const c = new pg.Client({ connectionString: `${tenantServerUrl()}/${database}` });
  await c.connect();
  try {
    return await c.query<T>(sql, params);
  } finally {
    await c.end();
  }
}
const slotExists = async (slot: string) => (await onTenant('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [slot], 'postgres')).rowCount === 1;

function archiver(id: string): Archiver {
  const a = startArchiver({ db: s.rt.db, box: s.rt.box, targets: s.rt.targets, repo: s.rt.repo, log: s.rt.log, now: () => new Date(), leaseMs: LEASE_MS, workDir: path.join(work, id), id });
  archivers.push(a);
  return a;
}
async function closeArchiver(a: Archiver) {
  await a.close();
  archivers.splice(archivers.indexOf(a), 1);
}
const stream = (id: string) => s.rt.db.walStream.findUnique({ where: { id } });
const segments = (streamId: string) => s.rt.db.walSegment.findMany({ where: { streamId, status: 'stored' }, orderBy: [{ startLsn: 'asc' }] });

/** The bytes of a stored WAL file, read back through the repository (every chunk verified). */
async function readBack(manifest: unknown): Promise<Buffer> {
  const src = await s.rt.repo.source(tenantId);
  const parts: Buffer[] = [];
  for await (const b of src.read((manifest as { chunks: string[] }).chunks)) parts.push(b as Buffer);
  return Buffer.concat(parts);
}
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
/** A WAL file as the source server has it (superuser: pg_read_binary_file may read pg_wal). */
async function serverFile(name: string, length?: number): Promise<Buffer> {
  const r = length === undefined ? await onTenant<{ b: Buffer }>('SELECT pg_read_binary_file($1) AS b', [`pg_wal/${name}`]) : await onTenant<{ b: Buffer }>('SELECT pg_read_binary_file($1, 0, $2) AS b', [`pg_wal/${name}`, length]);
  return r.rows[0]!.b;
}

/** Inserts a row every 200 ms until stopped. */
function writer() {
  let stop = false;
  const done = (async () => {
    const c = new pg.Client({ connectionString: tdb.url });
    await c.connect();
    try {
      while (!stop) {
        await c.query("INSERT INTO t (note) VALUES ('tick')");
        await new Promise((r) => setTimeout(r, 200));
      }
    } finally {
      await c.end();
    }
  })();
  return { async stop() { stop = true; await done; } };
}

let streamId: string;
// A slot of the test's own pins the server's WAL while the test reads it back (a checkpoint by
// another test file would otherwise recycle segments already streamed).
const holdSlot = `bk_test_hold_${randomUUID().replace(/-/g, '').slice(0, 12)}`;

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'bk-pitr-archiver-'));
  s = await startStack({ worker: false });
  const t = await createTenant(s);
  tenantId = t.tenantId;
  token = t.adminToken;
  tdb = await createTenantDatabase();
  await onTenant('SELECT pg_create_physical_replication_slot($1, true)', [holdSlot], 'postgres');
  await onTenant('CREATE TABLE t (id serial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp(), note text)');
  const res = await s.request('POST', '/v1/clusters', { token, body: { name: 'pitr', components: [{ name: 'db', type: 'postgres', config: { url: tdb.url, continuous: true } }] } });
  expect(res.status, res.text).toBe(201);
  const row = await s.rt.db.walStream.findFirst({ where: { clusterId: res.body.id, status: 'active' } });
  expect(row).not.toBeNull();
  streamId = row!.id;
}, 60_000);

afterAll(async () => {
  if (process.env.PITR_DEBUG && s) console.log(s.logs().split('\n').filter((l) => /archiver/.test(l) && !/"level":20/.test(l)).join('\n'), child?.logs());
  child?.proc.kill('SIGKILL');
  for (const a of [...archivers]) await a.close().catch(() => {});
  // Whatever a failed test left: no slot of this file's streams may stay on the shared server.
  const rows = await s.rt.db.walStream.findMany();
  const slots = [...new Set([...rows.map((r) => r.slotName), slotNameOf(streamId ?? randomUUID()), holdSlot])];
  for (const slot of slots) {
    await onTenant('SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL', [slot], 'postgres').catch(() => {});
    await new Promise((r) => setTimeout(r, 200));
    await onTenant('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', [slot], 'postgres').catch(() => {});
  }
  await s.close();
  await tdb.drop();
  await rm(work, { recursive: true, force: true });
}, 60_000);

describe('the archiver', () => {
  it('while streaming, latest_restorable_time trails the source by < 10 s; stored files read back as the server wrote them', async () => {
    const a = archiver('arch-a');
    const w = writer();
    try {
      await waitUntil(async () => (await stream(streamId))?.state === 'streaming', 30_000, 'the stream to be streaming');
      expect((await stream(streamId))!.leaseOwner).toBe('arch-a');
      expect(await slotExists(slotNameOf(streamId))).toBe(true);
      // Over ~20 s of continuous inserts, the recovery window's end is never 10 s old.
      const lags: number[] = [];
      for (let i = 0; i < 20; i++) {
        await new Promise((r) => setTimeout(r, 1000));
        const row = (await stream(streamId))!;
        expect(row.state).toBe('streaming');
        lags.push(Date.now() - row.latestRestorableTime!.getTime());
      }
      if (process.env.PITR_DEBUG) console.log('lags', lags);
      expect(Math.max(...lags), JSON.stringify(lags)).toBeLessThan(10_000);

      // A stored partial is the server's segment up to the stored end.
      // (The shared server's WAL fills segments fast: wait for one being filled.)
      const partial = await waitUntil(async () => (await segments(streamId)).filter((x) => x.partial).pop(), 10_000, 'a stored partial');
      const pBytes = await readBack(partial.manifest);
      expect(pBytes.length).toBe(Number(partial.endLsn - partial.startLsn));
      expect(sha(pBytes)).toBe(partial.sha256);
      expect(sha(await serverFile(partial.name, pBytes.length))).toBe(partial.sha256);

      // A completed segment replaces its partial and is the server's file, byte for byte.
      const { rows } = await onTenant<{ name: string }>('SELECT pg_walfile_name(pg_current_wal_lsn()) AS name');
      const name = rows[0]!.name;
      await onTenant('SELECT pg_switch_wal()');
      const seg = await waitUntil(async () => (await segments(streamId)).find((x) => x.name === name && !x.partial), 20_000, `segment ${name} stored complete`);
      expect((await segments(streamId)).filter((x) => x.name === name)).toHaveLength(1);
      const bytes = await readBack(seg.manifest);
      expect(bytes.length).toBe(16 * 1024 * 1024);
      expect(sha(bytes)).toBe(seg.sha256);
      expect(sha(await serverFile(name))).toBe(seg.sha256);
      // Its references are recorded against the file (GC keeps its chunks).
      expect(await s.rt.db.walChunk.count({ where: { segmentId: seg.id } })).toBeGreaterThan(0);

      const metrics = createMetrics({ db: s.rt.db, queues: s.rt.queues });
      const text = await metrics.registry.metrics();
      expect(text).toMatch(new RegExp(`archiver_lag_bytes\\{stream_id="${streamId}",tenant_id="${tenantId}",component="db"\\} \\d+`));
      expect(text).toMatch(new RegExp(`archiver_seconds_behind\\{stream_id="${streamId}"[^}]*\\} [0-9.]+`));
      expect(text).toMatch(/archiver_streams\{state="streaming"\} 1/);
    } finally {
      await w.stop();
      await closeArchiver(a);
    }
    // Closing released the lease at once.
    const row = (await stream(streamId))!;
    expect(row.leaseExpiresAt!.getTime()).toBeLessThanOrEqual(Date.now() + 1000);
  }, 120_000);

  it('after a kill -9 of an archiver process another takes over within the lease, and the stored WAL has no gap', async () => {
    child = startService({
      DATABASE_URL: s.databaseUrl,
      REDIS_URL: inject('redisUrl'),
      ENCRYPTION_KEY: s.rt.config.encryptionKey.toString('base64'),
      STORAGE_URL: s.rt.config.storageUrl,
      DATA_ROOT: s.dataRoot,
      ROLES: 'archiver',
      ARCHIVER_LEASE_MS: String(LEASE_MS),
      PITR_WORK_DIR: path.join(work, 'child'),
      TARGET_ALLOWED_HOSTS: '127.0.0.1',
      QUEUE_PREFIX: `bktest-pitr-${randomUUID().slice(0, 8)}`,
    });
    const w = writer();
    try {
      const since = new Date();
      await waitUntil(async () => {
        const row = await stream(streamId);
        return row?.leaseOwner?.includes(`:${child!.proc.pid}:`) && row.reportedAt! > since && row.state === 'streaming';
      }, 30_000, `the child archiver to stream (logs: ${child.logs()})`);
      // A completed segment while the child streams.
      await onTenant('SELECT pg_switch_wal()');
      await new Promise((r) => setTimeout(r, 2000));
      child.proc.kill('SIGKILL');
      await child.exited;
      const killedAt = Date.now();

      // During the outage: a row, then its segment completed on the server.
      const out = await onTenant<{ lsn: string; name: string; at: Date }>("INSERT INTO t (note) VALUES ('outage') RETURNING pg_current_wal_lsn()::text AS lsn, pg_walfile_name(pg_current_wal_lsn()) AS name, at");
      const outage = out.rows[0]!;
      await onTenant('SELECT pg_switch_wal()');
      // The server's own bytes, to compare with.
      const serverBytes = await serverFile(outage.name);

      const b = archiver('arch-b');
      await waitUntil(async () => (await stream(streamId))?.leaseOwner === 'arch-b', LEASE_MS + 5000, 'arch-b to take the stream');
      if (process.env.PITR_DEBUG) console.log('takeover after', Date.now() - killedAt);
      expect(Date.now() - killedAt).toBeLessThan(LEASE_MS + 5000);
      await waitUntil(async () => (await stream(streamId))!.latestRestorableTime! > outage.at, 20_000, 'the recovery window to pass the outage');

      const seg = await waitUntil(async () => (await segments(streamId)).find((x) => x.name === outage.name && !x.partial), 20_000, 'the outage segment stored complete');
      expect(seg.startLsn <= parseLsn(outage.lsn) && parseLsn(outage.lsn) < seg.endLsn).toBe(true);
      expect(sha(await readBack(seg.manifest))).toBe(sha(serverBytes));

      // Consecutive complete segments from the first one, each starting where the one before ended.
      const all = await segments(streamId);
      const complete = all.filter((x) => !x.partial && /^[0-9A-F]{24}$/.test(x.name));
      expect(complete.length).toBeGreaterThanOrEqual(3);
      for (let i = 1; i < complete.length; i++) expect(complete[i]!.startLsn, complete[i]!.name).toBe(complete[i - 1]!.endLsn);
      // No half-written leftovers of the dead archiver.
      expect(await s.rt.db.walSegment.count({ where: { streamId, status: 'writing', createdAt: { lt: new Date(killedAt) } } })).toBe(0);

      // storedWal gives that same chain from the first segment up to the outage row.
      const wal = await storedWal(s.rt.db, streamId, { fromLsn: complete[0]!.startLsn + 100n, untilTime: outage.at });
      expect(wal.segments[0]!.name).toBe(complete[0]!.name);
      expect(wal.segments.map((x) => x.name)).toContain(outage.name);
      for (let i = 1; i < wal.segments.length; i++) expect(wal.segments[i]!.startLsn).toBe(wal.segments[i - 1]!.endLsn);
      // Not stored that far yet, or before the first stored WAL: refused, with the reason.
      await expect(storedWal(s.rt.db, streamId, { fromLsn: complete[0]!.startLsn, untilTime: new Date(Date.now() + 3_600_000) })).rejects.toThrow(/reaches only/);
      await expect(storedWal(s.rt.db, streamId, { fromLsn: complete[0]!.startLsn - 1n, untilTime: outage.at })).rejects.toThrow(WalGap);
      // A gap (a segment missing in the middle) is named.
      if (complete.length >= 3) {
        const mid = complete[1]!;
        await s.rt.db.walSegment.update({ where: { id: mid.id }, data: { status: 'writing' } });
        try {
          await expect(storedWal(s.rt.db, streamId, { fromLsn: complete[0]!.startLsn, untilTime: outage.at })).rejects.toThrow(/gap at/);
        } finally {
          await s.rt.db.walSegment.update({ where: { id: mid.id }, data: { status: 'stored' } });
        }
      }
      void b;
    } finally {
      await w.stop();
      child?.proc.kill('SIGKILL');
    }
  }, 150_000);

  it('a stream turned dropping has its slot dropped, then its row and stored WAL deleted, and a GC asked for', async () => {
    const slot = slotNameOf(streamId);
    expect(await slotExists(slot)).toBe(true);
    expect(await s.rt.db.walSegment.count({ where: { streamId } })).toBeGreaterThan(0);
    if (archivers.length === 0) archiver('arch-c');
    await s.rt.db.repository.updateMany({ where: { tenantId }, data: { gcRequestedAt: null } });
    await s.rt.db.walStream.update({ where: { id: streamId }, data: { status: 'dropping' } });
    await waitUntil(async () => (await stream(streamId)) === null, 20_000, 'the stream row to go');
    expect(await slotExists(slot)).toBe(false);
    expect(await s.rt.db.walSegment.count({ where: { streamId } })).toBe(0);
    expect(await s.rt.db.$queryRaw<{ n: number }[]>`SELECT count(*)::int AS n FROM wal_chunks c LEFT JOIN wal_segments g ON g.id = c.segment_id WHERE g.id IS NULL`).toEqual([{ n: 0 }]);
    expect((await s.rt.db.repository.findUnique({ where: { tenantId } }))!.gcRequestedAt).not.toBeNull();
  }, 60_000);

  it('uploads that hang do not let the lease lapse; the stream turns behind with one archiver.behind event, then streams again', async () => {
    const other = await createTenantDatabase();
    try {
      const res = await s.request('POST', '/v1/clusters', { token, body: { name: 'pitr-slow', components: [{ name: 'db', type: 'postgres', config: { url: other.url, continuous: true } }] } });
      expect(res.status, res.text).toBe(201);
      const id = (await s.rt.db.walStream.findFirst({ where: { clusterId: res.body.id, status: 'active' } }))!.id;
      for (const a of [...archivers]) await closeArchiver(a);
      // As if it had stored WAL up to two minutes ago and nothing since.
      await s.rt.db.walStream.update({ where: { id }, data: { latestRestorableTime: new Date(Date.now() - 120_000), storedLsn: 0n } });
      let release!: () => void;
      const released = new Promise<void>((r) => (release = r));
      const stuckRepo = { ...s.rt.repo, writer: async () => { await released; throw new Error('the store is down'); } } as typeof s.rt.repo;
      const stuck = startArchiver({ db: s.rt.db, box: s.rt.box, targets: s.rt.targets, repo: stuckRepo, log: s.rt.log, now: () => new Date(), leaseMs: LEASE_MS, workDir: path.join(work, 'stuck'), id: 'arch-stuck' });
      archivers.push(stuck);
      const behind = await waitUntil(async () => {
        const r = await stream(id);
        return r?.state === 'behind' ? r : null;
      }, 20_000, 'the stream to be behind');
      expect(behind.leaseOwner).toBe('arch-stuck');
      expect(Number(behind.lagBytes)).toBeGreaterThan(0);
      // Several lease periods with every upload hanging: still held, still behind.
      await new Promise((r) => setTimeout(r, 2 * LEASE_MS));
      const later = (await stream(id))!;
      expect(later.leaseOwner).toBe('arch-stuck');
      expect(later.leaseExpiresAt!.getTime()).toBeGreaterThan(Date.now());
      expect(later.state).toBe('behind');
      const events = (await s.rt.db.event.findMany({ where: { tenantId, type: 'archiver.behind' } })).filter((e) => (e.data as { stream: { id: string } }).stream.id === id);
      expect(events).toHaveLength(1);
      expect(events[0]!.data).toMatchObject({ stream: { id, component: 'db', state: 'behind' } });
      release();
      await closeArchiver(stuck);
      // A working archiver catches up.
      archiver('arch-e');
      await waitUntil(async () => {
        const r = await stream(id);
        return r?.state === 'streaming' && Date.now() - r.latestRestorableTime!.getTime() < 10_000;
      }, 30_000, 'the stream to stream again');
      await s.rt.db.walStream.update({ where: { id }, data: { status: 'dropping' } });
      await waitUntil(async () => (await stream(id)) === null, 20_000, 'the stream to go');
    } finally {
      await other.drop();
    }
  }, 120_000);

  it('WAL the server removed before it was stored: stopped once with the reason, then streaming again from now', async () => {
    const other = await createTenantDatabase();
    try {
      const res = await s.request('POST', '/v1/clusters', { token, body: { name: 'pitr-gap', components: [{ name: 'db', type: 'postgres', config: { url: other.url, continuous: true } }] } });
      expect(res.status, res.text).toBe(201);
      const id = (await s.rt.db.walStream.findFirst({ where: { clusterId: res.body.id, status: 'active' } }))!.id;
      // As if segment 1 (long recycled on the shared server) were the last one stored.
      const oldest = (await onTenant<{ n: string }>("SELECT min(name) AS n FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$'")).rows[0]!.n;
      expect(oldest > '000000010000000000000002').toBe(true);
      await s.rt.db.walSegment.create({
        data: { id: randomUUID(), streamId: id, tenantId, name: '000000010000000000000001', timeline: 1, startLsn: 0x1000000n, endLsn: 0x2000000n, coversUntil: new Date(Date.now() - 3_600_000), status: 'stored', sha256: 'x', manifest: { chunks: [], bytes: 0 } },
      });
      if (archivers.length === 0) archiver('arch-f');
      await waitUntil(async () => {
        const r = await stream(id);
        return r?.state === 'streaming' && Date.now() - r.latestRestorableTime!.getTime() < 10_000;
      }, 30_000, 'the stream to stream again');
      const events = (await s.rt.db.event.findMany({ where: { tenantId, type: 'archiver.stopped' } })).filter((e) => (e.data as { stream: { id: string } }).stream.id === id);
      expect(events).toHaveLength(1);
      expect((events[0]!.data as { stream: { error: string } }).stream.error).toMatch(/removed WAL before it was archived/);
      // Restores cannot replay across the gap.
      const first = (await segments(id))[0]!;
      await expect(storedWal(s.rt.db, id, { fromLsn: first.startLsn, untilTime: new Date() })).rejects.toThrow(/gap at 0\/2000000/);
      await s.rt.db.walStream.update({ where: { id }, data: { status: 'dropping' } });
      await waitUntil(async () => (await stream(id)) === null, 20_000, 'the stream to go');
    } finally {
      await other.drop();
    }
  }, 90_000);

  it('a stream whose server refuses it is stopped with a tenant-fit error and one archiver.stopped event, however often it is retried', async () => {
    const id = randomUUID();
    const cluster = await s.rt.db.cluster.findFirst({ where: { tenantId } });
    await s.rt.db.walStream.create({
      data: { id, tenantId, clusterId: cluster!.id, component: 'gone', slotName: slotNameOf(id), urlEnc: s.rt.box.encrypt(tenantUrl('bk_no_such_database')) },
    });
    if (archivers.length === 0) archiver('arch-d');
    const row = await waitUntil(async () => {
      const r = await stream(id);
      return r?.state === 'stopped' && r.error ? r : null;
    }, 20_000, 'the stream to stop');
    expect(row.error).toMatch(/bk_no_such_database|does not exist/);
    expect(row.error).not.toMatch(/127\.0\.0\.1|55432/);
    // Retried (1 s, 2 s, ...) without another event.
    await new Promise((r) => setTimeout(r, 4500));
    const events = await s.rt.db.event.findMany({ where: { tenantId, type: 'archiver.stopped' } });
    expect(events.filter((e) => (e.data as { stream: { id: string } }).stream.id === id)).toHaveLength(1);
    const ev = await s.request('GET', '/v1/events?type=archiver.stopped', { token });
    expect(ev.status, ev.text).toBe(200);
    expect(ev.body.items.some((e: { data: { stream: { id: string } } }) => e.data.stream.id === id)).toBe(true);
    // Its slot was never created (no server to create it on): the row can go.
    await s.rt.db.walStream.delete({ where: { id } });
  }, 120_000);
});
