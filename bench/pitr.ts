/**
 * Point-in-time recovery soak benchmark (`npm run bench:pitr`, issue 15, SPEC section 13).
 *
 * The bench runs its own source PostgreSQL server (initdb + pg_ctl, as the postgres OS user under
 * root; fsync on, default synchronous_commit, wal_level=replica) and a service of its own (a fresh
 * migrated database on the service's server, a queue prefix, the API app, a worker role and an
 * archiver role in this process). On a pgbench database of about 1 GB (scale BENCH_PITR_SCALE,
 * default 70) it measures, in this run:
 *  - TPS of `pgbench -n -c 4 -j 2 -T BENCH_PITR_SECONDS` at its natural rate without archiving
 *    (twice: before and after the archived run, median of the two), and with the service
 *    archiving the WAL (one continuous component, its archiver streaming into the repository);
 *    the ratio with / without;
 *  - during the archived run, every second: the recovery window's lag_bytes and
 *    (source now - latest_restorable_time): their maxima;
 *  - the time to restore a point in time (POST /restores until completed) against a plain
 *    `pg_basebackup -Fp -X stream` of the same server taken at the same moment plus a manual
 *    recovery (restore_command from a pg_receivewal directory, recovery_target_time the same
 *    point) and the same `pg_dump -Fc | pg_restore` copy into a new database. Both restored
 *    databases are checked against the source's pgbench_history count at that point.
 * Exit code is 0: read the summary.
 *
 * Environment: BENCH_PITR_SCALE (pgbench scale, default 70 = about 1 GB), BENCH_PITR_SECONDS
 * (each pgbench run, default 60), BENCH_TMPDIR, DATABASE_URL, REDIS_URL, PG_BIN.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/lib/logger.js';
import { deleteKeysByPrefix } from '../src/queue/keys.js';
import { createRuntime, type Runtime } from '../src/runtime.js';
import { createApiApp } from '../src/roles/api.js';
import { startWorkerRole, type WorkerRole } from '../src/roles/worker.js';
import { startArchiverRole } from '../src/roles/archiver.js';
import type { Archiver } from '../src/modules/pitr/archiver.js';
import type { App } from '../src/http/types.js';
import { benchDatabase, REDIS_URL, sh, verdict } from './support.js';

const SCALE = Number(process.env.BENCH_PITR_SCALE ?? 70);
const SECONDS = Number(process.env.BENCH_PITR_SECONDS ?? 60);
const PG_BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin';
const ADMIN_TOKEN = `bench-pitr-${randomBytes(12).toString('hex')}`;
const SOURCE_DB = 'bench';
const IS_ROOT = process.getuid?.() === 0;

const log = (s: string) => console.log(s);
const secs = (ms: number) => (ms / 1000).toFixed(1);
const mb = (b: number) => (b / 1e6).toFixed(1);
const load = () => os.loadavg().map((x) => x.toFixed(2)).join(' ');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.now();
/** The median; of an even count, the mean of the middle two (of the two runs without archiving: their mean). */
const median = (xs: number[]) => {
  const v = [...xs].sort((a, b) => a - b);
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
};

// ---------------------------------------------------------------------------------------------
// processes


const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
const bin = (tool: string) => path.join(PG_BIN, tool);

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// the source server

interface Source {
  port: number;
  url(db?: string): string;
  query<T extends pg.QueryResultRow>(sql: string, params?: unknown[], db?: string): Promise<T[]>;
  libpq: NodeJS.ProcessEnv;
}

async function startSource(dir: string): Promise<Source> {
  const port = await freePort();
  mkdirSync(dir, { recursive: true });
  if (IS_ROOT) await sh(`chown postgres: ${q(dir)}`);
  const data = path.join(dir, 'data');
  await sh(`${bin('initdb')} -D ${q(data)} -U postgres -A trust --no-sync -E UTF8 --locale=C >${q(path.join(dir, 'initdb.log'))} 2>&1`, { asPg: true });
  const hba = ['local all all trust', 'local replication all trust', 'host all all 127.0.0.1/32 trust', 'host replication all 127.0.0.1/32 trust'].join('\n');
  await sh(`printf '%s\\n' ${q(hba)} > ${q(path.join(data, 'pg_hba.conf'))}`, { asPg: true });
  // Realistic durability: fsync on, synchronous_commit and full_page_writes at their defaults.
  const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c wal_level=replica -c max_wal_senders=10 -c max_replication_slots=10`;
  await sh(`${bin('pg_ctl')} -D ${q(data)} -l ${q(path.join(dir, 'server.log'))} -w -t 120 -o ${q(opts)} start >/dev/null`, { asPg: true });
  const url = (db = 'postgres') => `postgresql://postgres@127.0.0.1:${port}/${db}`;
  return {
    port,
    url,
    libpq: { ...process.env, PGHOST: '127.0.0.1', PGPORT: String(port), PGUSER: 'postgres' },
    async query(sql, params = [], db = SOURCE_DB) {
      const c = new pg.Client({ connectionString: url(db) });
      await c.connect();
      try {
        return (await c.query(sql, params)).rows;
      } finally {
        await c.end();
      }
    },
  };
}

/** CPU seconds of this process (the service's roles: the archiver's compression, encryption and uploads) during each pgbench run. */
const cpuDuring: number[] = [];

async function pgbench(src: Source, seconds: number): Promise<number> {
  const cpu = process.cpuUsage();
  const out = await sh(`${bin('pgbench')} -n -c 4 -j 2 -T ${seconds} ${SOURCE_DB}`, { env: src.libpq });
  const d = process.cpuUsage(cpu);
  cpuDuring.push((d.user + d.system) / 1e6);
  const m = /tps = ([\d.]+) \(without initial connection time\)/.exec(out);
  if (!m) throw new Error(`pgbench printed no tps: ${out.slice(-1000)}`);
  return Number(m[1]);
}

// ---------------------------------------------------------------------------------------------
// the service

interface Service {
  rt: Runtime;
  app: App;
  worker: WorkerRole;
  archiver: Archiver | null;
  token: string;
  logs(): string;
  request(method: string, url: string, body?: unknown): Promise<{ status: number; headers: Record<string, unknown>; body: any; text: string }>;
}

async function startService(base: string, dbUrl: string, prefix: string): Promise<Service> {
  const dataRoot = path.join(base, 'data');
  const storageRoot = path.join(base, 'store');
  const workDir = path.join(base, 'pitr');
  for (const d of [dataRoot, storageRoot, workDir]) mkdirSync(d, { recursive: true });
  // The scratch instances run as the postgres OS user: it must traverse to them.
  chmodSync(workDir, 0o755);
  const config = loadConfig(
    {
      DATABASE_URL: dbUrl,
      REDIS_URL,
      ADMIN_TOKEN,
      DATA_ROOT: dataRoot,
      STORAGE_URL: pathToFileURL(storageRoot).href,
      ENCRYPTION_KEY: randomBytes(32).toString('base64'),
      QUEUE_PREFIX: prefix,
      RATE_LIMIT_MAX: '100000',
      TARGET_ALLOWED_HOSTS: '127.0.0.1',
      ARCHIVER_LEASE_MS: '3000',
      PITR_WORK_DIR: workDir,
    },
    base,
  );
  let text = '';
  const sink = new Writable({
    write(chunk, _enc, cb) {
      text = (text + chunk.toString()).slice(-2_000_000);
      cb();
    },
  });
  const rt = createRuntime(config, createLogger('info', sink));
  const app = await createApiApp(rt);
  await app.ready();
  const worker = startWorkerRole(rt);
  const svc: Service = {
    rt,
    app,
    worker,
    archiver: null,
    token: ADMIN_TOKEN,
    logs: () => text,
    async request(method, url, body) {
      const headers: Record<string, string> = { authorization: `Bearer ${svc.token}` };
      if (body !== undefined) headers['content-type'] = 'application/json';
      const res = await app.inject({ method: method as 'GET', url, headers, ...(body !== undefined && { payload: JSON.stringify(body) }) });
      let parsed: unknown;
      try {
        parsed = res.body ? JSON.parse(res.body) : undefined;
      } catch {
        parsed = res.body;
      }
      return { status: res.statusCode, headers: res.headers, body: parsed, text: res.body };
    },
  };
  return svc;
}

/** The service's error and warning log lines, the last few (for a failure's report). */
function serviceErrors(svc: Service, n = 5): string {
  return svc
    .logs()
    .split('\n')
    .filter((l) => /"level":(40|50|60)/.test(l))
    .slice(-n)
    .join('\n');
}

async function waitFor<T>(fn: () => Promise<T | null | undefined | false>, timeoutMs: number, what: string, everyMs = 200): Promise<T> {
  const start = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${secs(timeoutMs)} s waiting for ${what}`);
    await sleep(everyMs);
  }
}

interface WindowView {
  earliest_restorable_time: string | null;
  latest_restorable_time: string | null;
  lag_bytes: number | null;
  state: string;
  error: string | null;
}

async function recoveryWindow(svc: Service, clusterId: string): Promise<WindowView> {
  const r = await svc.request('GET', `/v1/clusters/${clusterId}/recovery-window`);
  if (r.status !== 200) throw new Error(`GET recovery-window answered ${r.status}: ${r.text}`);
  return r.body.components[0] as WindowView;
}

// ---------------------------------------------------------------------------------------------
// main

const cleanups: { what: string; fn: () => Promise<unknown> }[] = [];
const summary: string[] = [];
const note = (s: string) => {
  log(s);
  summary.push(s);
};

async function main(): Promise<void> {
  const started = now();
  const base = mkdtempSync(path.join(process.env.BENCH_TMPDIR ?? os.tmpdir(), 'bk-bench-pitr-'));
  chmodSync(base, 0o755);
  let cleanedUp = false;
  const cleanup = async () => {
    if (cleanedUp) return;
    cleanedUp = true;
    for (const c of cleanups.reverse()) await c.fn().catch((err) => console.error(`cleanup (${c.what}): ${err instanceof Error ? err.message : String(err)}`));
    rmSync(base, { recursive: true, force: true, maxRetries: 3 });
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      console.error(`\n${sig}: cleaning up ${base}, the servers and the bench database`);
      void cleanup().finally(() => process.exit(130));
    });
  }
  let crashed: unknown;
  let svc: Service | null = null;
  const tps = { without: [] as number[], with: NaN };
  const lag = { bytes: 0, seconds: 0, samples: 0, nullSamples: 0, states: new Set<string>() };
  const restore = { ours: NaN, baseline: NaN };
  try {
    log(`bench:pitr  ${os.cpus().length} cpus, ${mb(os.totalmem())} MB RAM, node ${process.version}, load average ${load()}`);
    log(`BENCH_PITR_SCALE=${SCALE} BENCH_PITR_SECONDS=${SECONDS}; temp dir ${base}`);

    // The source server and its pgbench database.
    const src = await startSource(path.join(base, 'source'));
    cleanups.push({ what: 'stop the source server', fn: () => sh(`${bin('pg_ctl')} -D ${q(path.join(base, 'source', 'data'))} -m fast -w stop >/dev/null`, { asPg: true }) });
    // Slots on it (ours and the service's) go before it stops (cleanups run in reverse).
    cleanups.push({
      what: 'drop the source server\'s replication slots',
      fn: async () => src.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE NOT active', [], 'postgres'),
    });
    note(`source: PostgreSQL ${(await src.query<{ v: string }>("SELECT current_setting('server_version') AS v", [], 'postgres'))[0]!.v} on 127.0.0.1:${src.port} (its own initdb; fsync on, synchronous_commit on, wal_level replica)`);
    await src.query(`CREATE DATABASE ${SOURCE_DB}`, [], 'postgres');
    let t = now();
    await sh(`${bin('pgbench')} -i -q -s ${SCALE} ${SOURCE_DB} 2>&1`, { env: src.libpq });
    await src.query('CREATE TABLE bench_marker (at timestamptz NOT NULL DEFAULT clock_timestamp())');
    await src.query('CHECKPOINT');
    const dbBytes = Number((await src.query<{ b: string }>(`SELECT pg_database_size('${SOURCE_DB}')::text AS b`))[0]!.b);
    note(`pgbench -i -s ${SCALE}: ${mb(dbBytes)} MB database in ${secs(now() - t)} s`);

    // Run 1: without archiving.
    log(`\n== pgbench -n -c 4 -j 2 -T ${SECONDS}, no archiving (load ${load()})`);
    tps.without.push(await pgbench(src, SECONDS));
    log(`  ${tps.without[0]!.toFixed(1)} tps`);

    // The service: its database, a tenant, a continuous cluster, the archiver, a base backup.
    const db = await benchDatabase('pitr');
    cleanups.push({ what: 'drop the bench database', fn: () => db.drop() });
    const prefix = `bkbench-${randomBytes(4).toString('hex')}`;
    cleanups.push({ what: 'delete the queue keys', fn: () => deleteKeysByPrefix(REDIS_URL, prefix) });
    const s = await startService(base, db.url, prefix);
    svc = s;
    cleanups.push({ what: 'close the runtime', fn: () => s.rt.close() });
    cleanups.push({ what: 'close the API app', fn: () => s.app.close() });
    cleanups.push({ what: 'close the worker', fn: () => s.worker.close() });
    cleanups.push({ what: 'close the archiver', fn: async () => s.archiver?.close() });
    note(`service: database ${db.name} (fresh, migrated), worker and archiver roles in this process, file store under ${base}`);
    const tenant = await s.request('POST', '/v1/tenants', { name: `bench-pitr-${randomBytes(3).toString('hex')}` });
    if (tenant.status !== 201) throw new Error(`POST /v1/tenants answered ${tenant.status}: ${tenant.text}`);
    s.token = tenant.body.api_key.token;
    const cl = await s.request('POST', '/v1/clusters', { name: 'pitr-bench', components: [{ name: 'db', type: 'postgres', config: { url: src.url(SOURCE_DB), continuous: true } }] });
    if (cl.status !== 201) throw new Error(`POST /v1/clusters answered ${cl.status}: ${cl.text}`);
    const clusterId = cl.body.id as string;
    s.archiver = startArchiverRole(s.rt);
    t = now();
    await waitFor(async () => (await recoveryWindow(s, clusterId)).state === 'streaming', 60_000, 'the archiver to stream (state streaming)').catch(async (err: Error) => {
      const w = await recoveryWindow(s, clusterId).catch(() => null);
      throw new Error(`${err.message}; window ${JSON.stringify(w)}\n${serviceErrors(s)}`);
    });
    log(`  archiver streaming after ${secs(now() - t)} s`);

    // The baseline's own slot, reserving WAL from before its base backup on.
    await src.query("SELECT pg_create_physical_replication_slot('bench_baseline', true)", [], 'postgres');
    t = now();
    const b = await s.request('POST', `/v1/clusters/${clusterId}/backups`);
    if (b.status !== 202) throw new Error(`POST backups answered ${b.status}: ${b.text}`);
    const backup = await waitFor(
      async () => {
        const g = await s.request('GET', `/v1/clusters/${clusterId}/backups/${b.body.id}`);
        return ['completed', 'failed'].includes(g.body.status) ? g.body : null;
      },
      1_800_000,
      'the base backup',
      500,
    );
    if (backup.status !== 'completed') throw new Error(`the service's base backup failed: ${JSON.stringify(backup.error)}\n${serviceErrors(s)}`);
    const oursBackupMs = now() - t;
    const plainDir = path.join(base, 'plain-basebackup');
    t = now();
    await sh(`${bin('pg_basebackup')} -D ${q(plainDir)} -Fp -X stream -c fast`, { env: src.libpq });
    const plainBackupMs = now() - t;
    if (IS_ROOT) await sh(`chown -R postgres: ${q(plainDir)}`);
    note(`base backups (informative, no target): the service's (pg_basebackup -Ft -X none into the repository, WAL archived) ${secs(oursBackupMs)} s; plain pg_basebackup -Fp -X stream -c fast ${secs(plainBackupMs)} s`);

    // Run 2: with archiving; the window sampled every second.
    log(`\n== pgbench -n -c 4 -j 2 -T ${SECONDS}, archived (load ${load()})`);
    const probe = new pg.Client({ connectionString: src.url('postgres') });
    await probe.connect();
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const tick = now();
        const w = await recoveryWindow(s, clusterId);
        const srcNow = (await probe.query<{ t: Date }>('SELECT clock_timestamp() AS t')).rows[0]!.t;
        lag.samples++;
        lag.states.add(w.state);
        if (w.lag_bytes !== null) lag.bytes = Math.max(lag.bytes, w.lag_bytes);
        if (w.latest_restorable_time) lag.seconds = Math.max(lag.seconds, (srcNow.getTime() - Date.parse(w.latest_restorable_time)) / 1000);
        else lag.nullSamples++;
        await sleep(Math.max(0, 1000 - (now() - tick)));
      }
    })();
    try {
      tps.with = await pgbench(src, SECONDS);
    } finally {
      sampling = false;
      await sampler.catch((err) => log(`  sampling the window failed: ${String(err)}`));
      await probe.end();
    }
    log(`  ${tps.with.toFixed(1)} tps; max lag ${lag.bytes} bytes, ${lag.seconds.toFixed(1)} s over ${lag.samples} samples (states: ${[...lag.states].join(', ')})`);

    // The point in time: a quiet moment after the run, then a marker commit after it (so replay
    // has a commit past the target to stop at), archived before we go on.
    await sleep(1000);
    const [{ n: expected, t: pointRaw }] = (await src.query<{ n: string; t: Date }>('SELECT count(*)::text AS n, clock_timestamp() AS t FROM pgbench_history')) as [{ n: string; t: Date }];
    const point = new Date(pointRaw.getTime()); // ms precision: at or before the server's instant
    await sleep(500);
    const [{ at: markerAt, lsn: markerLsn }] = (await src.query<{ at: Date; lsn: string }>('INSERT INTO bench_marker DEFAULT VALUES RETURNING at, pg_current_wal_insert_lsn()::text AS lsn')) as [{ at: Date; lsn: string }];
    t = now();
    await waitFor(
      async () => {
        const w = await recoveryWindow(s, clusterId);
        return w.latest_restorable_time && Date.parse(w.latest_restorable_time) > markerAt.getTime() ? w : null;
      },
      120_000,
      'latest_restorable_time to pass the marker commit',
      250,
    );
    log(`  point in time ${point.toISOString()} (pgbench_history: ${expected} rows); archived past the marker commit ${secs(now() - t)} s after it`);
    await s.archiver.close();
    s.archiver = null;

    // Run 3: without archiving again (the archiver closed; its slot stays).
    log(`\n== pgbench -n -c 4 -j 2 -T ${SECONDS}, no archiving, again (load ${load()})`);
    tps.without.push(await pgbench(src, SECONDS));
    log(`  ${tps.without[1]!.toFixed(1)} tps`);

    // The baseline's WAL archive: its slot's WAL up to the marker (untimed: in real life the
    // archive is there already).
    const walDir = path.join(base, 'baseline-wal');
    mkdirSync(walDir);
    t = now();
    await sh(`${bin('pg_receivewal')} -D ${q(walDir)} -S bench_baseline -n --endpos=${markerLsn} --no-sync 2>&1`, { env: src.libpq });
    for (const f of readdirSync(walDir)) if (f.endsWith('.partial')) renameSync(path.join(walDir, f), path.join(walDir, f.slice(0, -'.partial'.length)));
    if (IS_ROOT) await sh(`chown -R postgres: ${q(walDir)}`);
    log(`  baseline WAL archive: ${readdirSync(walDir).length} files via pg_receivewal --endpos (untimed, ${secs(now() - t)} s)`);
    await src.query("SELECT pg_drop_replication_slot('bench_baseline')", [], 'postgres');

    // The restores, ours then the baseline's.
    log(`\n== restore to ${point.toISOString()} (load ${load()})`);
    const oursDb = `bench_restored_ours`;
    const ours = await restoreOurs(s, src, clusterId, point, oursDb, path.join(base, 'pitr'));
    restore.ours = ours.ms;
    log(`  ours: ${secs(ours.ms)} s (${ours.phases})`);
    const baseDb = `bench_restored_baseline`;
    const baseline = await restoreBaseline(src, plainDir, walDir, path.join(base, 'baseline-recovery'), point, baseDb);
    restore.baseline = baseline.ms;
    log(`  baseline: ${secs(baseline.ms)} s (${baseline.phases})`);
    const check = async (d: string) => {
      const [r] = await src.query<{ n: string; m: string }>('SELECT (SELECT count(*) FROM pgbench_history)::text AS n, (SELECT count(*) FROM bench_marker)::text AS m', [], d);
      return r!.n === expected && r!.m === '0' ? `pgbench_history ${r!.n} rows = the source's at the point, no marker: exact` : `MISMATCH: pgbench_history ${r!.n} rows (source at the point: ${expected}), bench_marker ${r!.m} rows (expected 0)`;
    };
    const oursCheck = await check(oursDb);
    const baseCheck = await check(baseDb);

    const without = median(tps.without);
    note(`\nTPS (pgbench -n -c 4 -j 2 -T ${SECONDS}, natural rate, scale ${SCALE}):`);
    note(`    without archiving: ${tps.without.map((x) => x.toFixed(1)).join(' (before), ')} (after); median ${without.toFixed(1)}`);
    note(`    archived:          ${tps.with.toFixed(1)}`);
    note(`    ratio with / without: ${(tps.with / without).toFixed(3)}`);
    note(`    CPU of this process (the service's roles; pg_receivewal not counted) during the runs: ${cpuDuring.map((c) => `${c.toFixed(1)} s`).join(', ')} (without, archived, without) of ${SECONDS} s on ${os.cpus().length} cores`);
    note(`lag during the archived run (${lag.samples} samples, one a second; states ${[...lag.states].join(', ')}${lag.nullSamples ? `; ${lag.nullSamples} without a latest_restorable_time` : ''}):`);
    note(`    max lag_bytes ${lag.bytes} (${mb(lag.bytes)} MB); max source now - latest_restorable_time ${lag.seconds.toFixed(1)} s (SPEC: at most 10 s while streaming ${verdict(lag.seconds <= 10)})`);
    note(`restore to a point in time (${mb(dbBytes)} MB database, WAL of the ${SECONDS} s archived run and the marker):`);
    note(`    ours (POST /restores until completed): ${secs(ours.ms)} s; ${ours.phases}; ${oursCheck}`);
    note(`    baseline (plain base backup + manual recovery + pg_dump | pg_restore): ${secs(baseline.ms)} s; ${baseline.phases}; ${baseCheck}`);
    note(`    ratio ours / baseline (time): ${(ours.ms / baseline.ms).toFixed(3)}`);
  } catch (err) {
    crashed = err;
    console.error('\nbench:pitr failed:', err);
    if (svc) {
      const e = serviceErrors(svc, 10);
      if (e) console.error(`the service's last warnings and errors:\n${e}`);
    }
  } finally {
    await cleanup().catch((err) => console.error('cleanup failed:', err));
  }
  console.log(`\n==================== bench:pitr summary ====================`);
  console.log(`machine: ${os.cpus().length} cpus, node ${process.version}; load average at end ${load()}; total ${secs(now() - started)} s`);
  for (const line of summary) console.log(line);
  console.log('-------------------------------------------------------------');
  if (crashed) console.log(`FAIL  the benchmark did not complete: ${crashed instanceof Error ? crashed.message : String(crashed)}`);
  console.log('(exit code is 0: this is a benchmark; the servers, temp files, slots and the bench database were removed)');
}

/**
 * Ours: POST /restores, polled until completed. Where the time goes, from outside: the scratch
 * directory appearing in PITR_WORK_DIR (the job started), its server's postmaster.pid appearing
 * (the base backup extracted and verified, the WAL written out), the target database appearing
 * on the source server (replay done, the copy under way), completed.
 */
async function restoreOurs(s: Service, src: Source, clusterId: string, point: Date, target: string, workDir: string): Promise<{ ms: number; phases: string }> {
  const t0 = now();
  const r = await s.request('POST', `/v1/clusters/${clusterId}/restores`, { point_in_time: point.toISOString(), target_database: target });
  if (r.status !== 202) throw new Error(`POST restores answered ${r.status}: ${r.text}\n${serviceErrors(s)}`);
  const marks: { dir?: number; server?: number; copy?: number } = {};
  const admin = new pg.Client({ connectionString: src.url('postgres') });
  await admin.connect();
  try {
    const done = await waitFor(
      async () => {
        const scratch = readdirSync(workDir).filter((f) => f.startsWith('pitr-scratch-'));
        if (scratch.length && marks.dir === undefined) marks.dir = now();
        if (marks.server === undefined && scratch.some((d) => existsSync(path.join(workDir, d, 'data', 'postmaster.pid')))) marks.server = now();
        if (marks.copy === undefined && (await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [target])).rowCount) marks.copy = now();
        const g = await s.request('GET', r.headers.location as string);
        return ['completed', 'failed'].includes(g.body.status) ? g.body : null;
      },
      3_600_000,
      'the point-in-time restore',
      100,
    );
    if (done.status !== 'completed') throw new Error(`the service's restore failed: ${JSON.stringify(done.error)}\n${serviceErrors(s)}`);
  } finally {
    await admin.end();
  }
  const ms = now() - t0;
  const at = (m: number | undefined) => (m === undefined ? '?' : secs(m - t0));
  const phases = `scratch dir at ${at(marks.dir)} s, its server started (backup extracted + verified, WAL written) at ${at(marks.server)} s, target database created (replayed, copy started) at ${at(marks.copy)} s, completed at ${secs(ms)} s`;
  return { ms, phases };
}

/**
 * The baseline: a copy of the plain base backup, restore_command from the pg_receivewal
 * directory, recovery_target_time the same point (promote), started as the postgres user; once
 * promoted, `pg_dump -Fc | pg_restore` of the database into a new database on the source server,
 * as copyDatabase does. The recovery instance gets the scratch instance's shortcuts (fsync,
 * full_page_writes, autovacuum off, hot_standby off, no TCP): a throw-away copy either way.
 */
async function restoreBaseline(src: Source, plainDir: string, walDir: string, dir: string, point: Date, target: string): Promise<{ ms: number; phases: string }> {
  const port = await freePort();
  mkdirSync(dir, { mode: 0o700 });
  if (IS_ROOT) await sh(`chown postgres: ${q(dir)}`);
  const data = path.join(dir, 'data');
  const t0 = now();
  await sh(`cp -a ${q(plainDir)} ${q(data)} && chmod 0700 ${q(data)}`, { asPg: true });
  const tCopy = now();
  const conf = {
    port: String(port),
    listen_addresses: "''",
    unix_socket_directories: `'${dir}'`,
    restore_command: `'cp "${walDir}/%f" "%p"'`,
    recovery_target_time: `'${point.toISOString().replace('T', ' ').replace('Z', '+00')}'`,
    recovery_target_action: "'promote'",
    recovery_target_inclusive: 'true',
    hot_standby: 'off',
    fsync: 'off',
    synchronous_commit: 'off',
    full_page_writes: 'off',
    autovacuum: 'off',
    max_wal_size: "'1GB'",
  };
  const text = `${Object.entries(conf).map(([k, v]) => `${k} = ${v}`).join('\n')}\n`;
  const confFile = path.join(dir, 'recovery.conf.add');
  writeFileSync(confFile, text);
  await sh(`cat ${q(confFile)} >> ${q(path.join(data, 'postgresql.conf'))} && touch ${q(path.join(data, 'recovery.signal'))}`, { asPg: true });
  const stop = () => sh(`${bin('pg_ctl')} -D ${q(data)} -m fast -w stop >/dev/null`, { asPg: true });
  cleanups.push({ what: 'stop the baseline recovery instance', fn: async () => (existsSync(path.join(data, 'postmaster.pid')) ? stop() : undefined) });
  const serverLog = path.join(dir, 'server.log');
  await sh(`${bin('pg_ctl')} -D ${q(data)} -l ${q(serverLog)} -w -t 3600 start >/dev/null`, { asPg: true }).catch(async (err: Error) => {
    const tail = await sh(`tail -n 15 ${q(serverLog)}`).catch(() => '(no server log)');
    throw new Error(`the baseline recovery instance did not start: ${err.message}\n${tail}`);
  });
  const local = { ...process.env, PGHOST: dir, PGPORT: String(port), PGUSER: 'postgres' };
  // pg_ctl -w counts a server in recovery as started ("standby"): with hot_standby off it then
  // refuses connections until recovery has ended and it promoted.
  const promoted = () => sh(`${bin('psql')} -XAtq -d postgres -c 'SELECT pg_is_in_recovery()'`, { env: local }).then((o) => o.trim() === 'f', () => false);
  await waitFor(promoted, 3_600_000, 'the baseline instance to promote', 100);
  const tReplay = now();
  await src.query(`CREATE DATABASE ${target} TEMPLATE template0`, [], 'postgres');
  await sh(
    `set -o pipefail; PGHOST=${q(dir)} PGPORT=${port} ${bin('pg_dump')} -Fc --no-password ${SOURCE_DB} | ${bin('pg_restore')} --no-owner --no-privileges --no-tablespaces --no-subscriptions --exit-on-error --no-password -h 127.0.0.1 -p ${src.port} -d ${target}`,
    { env: { ...process.env, PGUSER: 'postgres' } },
  );
  const ms = now() - t0;
  await stop();
  return { ms, phases: `copy of the base backup ${secs(tCopy - t0)} s, replay until promoted ${secs(tReplay - tCopy)} s, pg_dump | pg_restore ${secs(ms - (tReplay - t0))} s` };
}

await main();
process.exit(0);
