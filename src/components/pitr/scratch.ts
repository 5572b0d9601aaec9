import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, open, readFile, rm, writeFile, type FileHandle } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import pg from 'pg';
import type { PostgresConnection } from '../postgres-connection.js';
import { abortError, childEnv, type ToolLog } from '../process.js';
import { ComponentError } from '../types.js';
import { DIR_PREFIX, processStart } from './scratch-sweep.js';
import { TarScanner } from './basebackup.js';
import { parseLsn, walSegmentName } from './lsn.js';

/**
 * The restore half of point-in-time recovery (SPEC section 13): a base backup's tar plus WAL
 * replayed in a private, throw-away PostgreSQL instance ("scratch"), from which one database is
 * then copied into a new database on the target server.
 *
 * Who runs it. PostgreSQL refuses to run as root. When the service runs as root (these machines,
 * many containers) every server-side tool (postgres, pg_controldata, pg_verifybackup) runs as
 * `scratchUser` (spawned with its uid/gid; libuv drops root's supplementary groups), and every
 * file of the instance is chowned to it. When the service runs as an ordinary user, everything
 * runs as that user and `scratchUser` is ignored: the files are ours already. Client tools
 * (pg_dump, pg_restore) always run as ourselves; they reach the instance over its unix socket,
 * which root may open whoever owns it.
 *
 * The instance never listens on TCP (listen_addresses = ''), only on a socket in its own 0700
 * directory, and its pg_hba.conf is replaced by `local all all trust`: only its owner (and root)
 * can connect at all.
 *
 * The recovered catalog is the tenant's: a tenant who is superuser on its own server can have put
 * C functions there that pg_dump would call (a type's output function). Give PITR_SCRATCH_USER
 * nothing else to lose (not the owner of the service's own PostgreSQL in production).
 *
 * Layout: <workDir>/pitr-scratch-<random>/ (0700, the scratch user's) holding `owner` (our pid
 * and start time, for sweepScratch), `data/` (the extracted backup), `wal/` (the segments
 * restore_command copies from) and the server's socket. Every parent of workDir must be
 * searchable (x) by the scratch user; a mkdtemp directory of root (0700) is not.
 */

export interface WalSource {
  /**
   * File names in WAL order, from the base backup's start segment on (earlier ones are
   * ignored): segment names (24 hex digits) and timeline history files (`XXXXXXXX.history`).
   */
  names: string[];
  /** The file's bytes. A segment may be shorter than the segment size (the newest, partial one): it is padded with zeros. */
  read(name: string): AsyncIterable<Buffer>;
}

export type RecoveryTarget = { time: Date } | 'immediate';

export interface RecoverOptions {
  /** The base backup's tar (pg_basebackup -Ft -X none, with backup_label and backup_manifest). */
  baseTar: AsyncIterable<Buffer>;
  wal: WalSource;
  /** `{time}`: recovery_target_time (the state as of that time); 'immediate': the backup's own consistent point. */
  target: RecoveryTarget;
  /** A directory of the service's own (PITR_WORK_DIR); a unique subdirectory is made inside and removed by stop(). */
  workDir: string;
  /** The OS user postgres runs as when we are root (PITR_SCRATCH_USER); ignored otherwise. */
  scratchUser: string;
  /** Binaries of the backup's major version; default /usr/lib/postgresql/<major>/bin, else `pg_config --bindir` when that is the same major. */
  pgBin?: string;
  signal?: AbortSignal;
  log?: ToolLog;
}

export interface RecoveryOutcome {
  /**
   * Replay stopped at the target. False: the WAL ended first (for a time target: no commit after
   * the target time was in the WAL), and the instance holds the state at the end of the WAL, which
   * is the target's state exactly when the WAL covers the target time.
   */
  targetReached: boolean;
  /** The commit time of the last transaction replayed, when PostgreSQL logged one. */
  lastReplayed?: Date | null;
}

export interface ScratchInstance {
  /** The instance's directory, which holds its unix socket. */
  socketDir: string;
  port: number;
  /** The source's bootstrap superuser (pg_authid oid 10), under whatever name it has. */
  superuser: string;
  /** The directory of the binaries it runs (pg_dump and pg_restore are taken from there when present). */
  pgBin: string;
  /** The PostgreSQL major version of the backup. */
  major: number;
  /** libpq variables (PGHOST = socketDir, PGPORT, PGUSER = superuser) for database `db` of the instance. */
  connection(db: string): PostgresConnection;
  reached: RecoveryOutcome;
  /** Stops the server (fast shutdown) and removes the directory; safe to call twice. */
  stop(): Promise<void>;
}

/** sun_path is 108 bytes on Linux. */
const MAX_SOCKET_PATH = 107;
const STOP_GRACE_MS = 30_000;

/**
 * Extracts the backup, materialises the WAL, replays it to `target` and promotes: resolves with
 * the running instance. Any failure or abort stops the server and removes the directory. WAL the
 * backup needs that `wal` lacks is a ComponentError saying WAL is missing.
 */
export async function recoverScratch(o: RecoverOptions): Promise<ScratchInstance> {
  o.signal?.throwIfAborted();
  const ids = await scratchIds(o.scratchUser);
  const dir = path.join(path.resolve(o.workDir), `${DIR_PREFIX}${randomBytes(6).toString('hex')}`);
  // restore_command and unix_socket_directories carry the path in quotes: keep it plain
  if (!/^[A-Za-z0-9_./-]+$/.test(dir)) throw new ComponentError('PITR_WORK_DIR must be a path of letters, digits, "_", "-", "." and "/" only');
  await mkdir(o.workDir, { recursive: true });
  await mkdir(dir, { mode: 0o700 });
  const server: { child?: ScratchServer } = {};
  let work: Promise<unknown> = Promise.resolve();
  const cleanup = async () => {
    await server.child?.stop().catch(() => {});
    // After an abort the steps still under way end soon (each watches the signal, and its server
    // is gone): wait for them, so that none starts anything in the directory once it is removed.
    await Promise.race([work.catch(() => {}), new Promise((r) => setTimeout(r, STOP_GRACE_MS).unref())]);
    await server.child?.stop().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  };
  let onAbort = () => {};
  const aborted = new Promise<never>((_r, reject) => {
    onAbort = () => reject(abortError(o.signal as AbortSignal));
  });
  aborted.catch(() => {});
  o.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await writeFile(path.join(dir, 'owner'), `${process.pid} ${await processStart(process.pid)}\n`);
    await own(dir, ids);
    await assertReachable(dir, ids, o.scratchUser);
    const recovering = recover(o, dir, ids, server);
    work = recovering;
    recovering.catch(() => {});
    const inst = await Promise.race([recovering, aborted]);
    return { ...inst, stop: async () => cleanup() };
  } catch (err) {
    await cleanup();
    if (o.signal?.aborted) throw abortError(o.signal);
    throw err;
  } finally {
    o.signal?.removeEventListener('abort', onAbort);
  }
}

async function recover(o: RecoverOptions, dir: string, ids: Ids, server: { child?: ScratchServer }): Promise<Omit<ScratchInstance, 'stop'>> {
  const data = path.join(dir, 'data');
  const walDir = path.join(dir, 'wal');
  const check = () => o.signal?.throwIfAborted();
  const port = await freePort();
  if (path.join(dir, `.s.PGSQL.${port}`).length > MAX_SOCKET_PATH) throw new ComponentError('PITR_WORK_DIR is too long: the scratch server\'s socket path would exceed 107 bytes');

  const { pgVersion } = await extractTar(o.baseTar, data, ids, o.signal);
  check();
  const major = Number(/^(\d+)/.exec(pgVersion)?.[1] ?? NaN);
  if (!Number.isInteger(major) || major < 13) throw new ComponentError(`the base backup is of PostgreSQL ${pgVersion.trim() || 'unknown'}: point-in-time recovery needs PostgreSQL 13 or later`);
  const bin = await findBinaries(major, o.pgBin);
  const tool = (name: string) => path.join(bin, name);

  // Before anything is changed in data/: the manifest covers every file (-n: the WAL is not in the tar).
  await runTool(tool('pg_verifybackup'), ['-n', '-q', data], { ids, label: 'pg_verifybackup', signal: o.signal }).catch((err: unknown) => {
    throw err instanceof ComponentError ? new ComponentError(`the base backup does not match its manifest: ${err.message}`, { detail: err.detail }) : err;
  });
  const control = await runTool(tool('pg_controldata'), [data], { ids, label: 'pg_controldata', signal: o.signal }).catch((err: unknown) => {
    if (err instanceof ComponentError && /Permission denied/i.test(err.message)) {
      throw new ComponentError(`the scratch user ${o.scratchUser} cannot reach PITR_WORK_DIR: every parent directory must be searchable by it`, { detail: err.message });
    }
    throw err;
  });
  const controlValue = (label: string) => {
    const m = new RegExp(`^${label.replace(/[.*+?^${}()|[\]\\']/g, '\\$&')}:\\s*(.+)$`, 'm').exec(control);
    if (!m?.[1]) throw new ComponentError(`pg_controldata did not report "${label}" for the base backup`);
    return m[1].trim();
  };
  const segSize = Number(controlValue('Bytes per WAL segment'));
  const label = await readFile(path.join(data, 'backup_label'), 'latin1').catch(() => '');
  const startLsn = /^START WAL LOCATION: ([0-9A-F]+\/[0-9A-F]+)/m.exec(label)?.[1];
  const timeline = Number(/^START TIMELINE: (\d+)/m.exec(label)?.[1] ?? NaN);
  if (!startLsn || !Number.isInteger(timeline)) throw new ComponentError('the base backup has no backup_label: it is not a base backup');
  const manifest = await readFile(path.join(data, 'backup_manifest'), 'utf8').catch(() => '');
  const endLsn = [...manifest.matchAll(/"End-LSN"\s*:\s*"([0-9A-F]+\/[0-9A-F]+)"/gi)].at(-1)?.[1];
  if (!endLsn) throw new ComponentError('the base backup has no backup_manifest with its WAL range');

  await materialiseWal(o.wal, walDir, { timeline, startLsn: parseLsn(startLsn), endLsn: parseLsn(endLsn), segSize }, ids, o.signal);
  check();

  // The source's settings stay out: its postgresql.conf may include files, preload libraries,
  // archive to its own storage or point at a primary. Ours is the whole configuration.
  for (const f of ['postgresql.auto.conf', 'standby.signal', 'postmaster.pid', 'postmaster.opts', 'recovery.conf']) await rm(path.join(data, f), { force: true });
  const hotStandby = {
    max_connections: Math.max(Number(controlValue('max_connections setting')), 20),
    max_worker_processes: Math.max(Number(controlValue('max_worker_processes setting')), 8),
    max_wal_senders: Number(controlValue('max_wal_senders setting')),
    max_prepared_transactions: Number(controlValue('max_prepared_xacts setting')),
    max_locks_per_transaction: Math.max(Number(controlValue('max_locks_per_xact setting')), 64),
  };
  const baseConf = {
    port: String(port),
    listen_addresses: q(''),
    unix_socket_directories: q(dir),
    unix_socket_permissions: '0700',
    ...Object.fromEntries(Object.entries(hotStandby).map(([k, v]) => [k, String(v)])),
    restore_command: q(`cp "${walDir}/%f" "%p"`),
    recovery_target_timeline: q('latest'),
    archive_mode: 'off',
    hot_standby: 'off',
    fsync: 'off',
    synchronous_commit: 'off',
    full_page_writes: 'off',
    shared_preload_libraries: q(''),
    ssl: 'off',
    logging_collector: 'off',
    log_destination: q('stderr'),
    lc_messages: q('C'),
    log_timezone: q('UTC'),
    timezone: q('UTC'),
    max_wal_size: q('1GB'),
    autovacuum: 'off',
    jit: 'off',
    // PostgreSQL 17's login event triggers would run the tenant's code as our connections log in
    ...(major >= 17 ? { event_triggers: 'off' } : {}),
  };
  const targetConf: Record<string, string> =
    o.target === 'immediate'
      ? { recovery_target: q('immediate'), recovery_target_action: q('promote') }
      : { recovery_target_time: q(pgTimestamp(o.target.time)), recovery_target_action: q('promote'), recovery_target_inclusive: 'true' };
  const writeConf = async (conf: Record<string, string>) => {
    await writeFile(path.join(data, 'postgresql.conf'), `# written by the backup service for a scratch recovery\n${Object.entries(conf).map(([k, v]) => `${k} = ${v}`).join('\n')}\n`);
    await own(path.join(data, 'postgresql.conf'), ids, 0o600);
  };
  await writeConf({ ...baseConf, ...targetConf });
  await writeFile(path.join(data, 'postgresql.auto.conf'), '');
  await own(path.join(data, 'postgresql.auto.conf'), ids, 0o600);
  await writeFile(path.join(data, 'pg_hba.conf'), 'local all all trust\n');
  await own(path.join(data, 'pg_hba.conf'), ids, 0o600);
  await writeFile(path.join(data, 'pg_ident.conf'), '');
  await own(path.join(data, 'pg_ident.conf'), ids, 0o600);
  await writeFile(path.join(data, 'recovery.signal'), '');
  await own(path.join(data, 'recovery.signal'), ids, 0o600);

  const start = async () => {
    check();
    const s = startServer(tool('postgres'), data, dir, ids, o.log);
    server.child = s;
    return s.ready;
  };
  let outcome = await start();
  if (outcome.kind === 'exited' && outcome.facts.endedBeforeTarget && o.target !== 'immediate') {
    // The WAL ended before a commit after the target time: replay to its end and promote there.
    o.log?.debug({ target: pgTimestamp(o.target.time) }, 'scratch recovery ended before its target; promoting at the end of the WAL');
    await writeConf({ ...baseConf, recovery_target_action: q('promote') });
    outcome = await start();
    if (outcome.kind === 'ready') outcome.facts.stopped = false;
  }
  if (outcome.kind === 'exited') throw recoveryFailure(outcome.facts.log);
  const reached: RecoveryOutcome = { targetReached: outcome.facts.stopped, lastReplayed: outcome.facts.lastReplayed };
  check();

  // The source's superuser may have any name, and no role is known to exist otherwise. Single-user
  // mode connects without a role, but run on an unrecovered copy it would replay all the WAL
  // without the targets; so it runs now, on the promoted and cleanly stopped cluster.
  await server.child?.stop();
  const single = await runTool(tool('postgres'), ['--single', '-D', data, 'template0'], {
    ids,
    label: 'postgres --single',
    signal: o.signal,
    input: "SELECT encode(convert_to(rolname::text, 'UTF8'), 'hex') AS r FROM pg_authid WHERE oid = 10;\n",
  });
  const hex = /\br = "([0-9a-f]+)"/.exec(single)?.[1];
  if (!hex) throw new ComponentError('could not find the superuser of the recovered cluster', { detail: single.slice(-2000) });
  const superuser = Buffer.from(hex, 'hex').toString('utf8');
  check();
  const again = await start();
  if (again.kind === 'exited') throw recoveryFailure(again.facts.log);

  const connection = (db: string): PostgresConnection => ({
    database: db,
    env: { PGHOST: dir, PGPORT: String(port), PGUSER: superuser, PGDATABASE: db, PGSSLMODE: 'disable', PGPASSFILE: '/dev/null/pgpass', PGCONNECT_TIMEOUT: '30', PGAPPNAME: 'backup-service' },
    redact: (s: string) => s,
  });
  // A transaction prepared but not committed at the target is not part of its state, and its
  // locks would block the copy.
  const c = new pg.Client({ host: dir, port, user: superuser, database: 'postgres' });
  const client = await c.connect().then(
    () => c,
    () => null, // no database `postgres`: nothing then to roll back from here; the copy will tell
  );
  if (client) {
    try {
      const gids = await client.query<{ gid: string }>('SELECT gid FROM pg_prepared_xacts');
      for (const { gid } of gids.rows) await client.query(`ROLLBACK PREPARED ${lit(gid)}`);
    } finally {
      await client.end().catch(() => {});
    }
  }
  return { socketDir: dir, port, superuser, pgBin: bin, major, connection, reached };
}

/** What the server log said, as far as recovery is concerned. */
interface LogFacts {
  /** "recovery stopping ...": replay stopped at the target. */
  stopped: boolean;
  endedBeforeTarget: boolean;
  lastReplayed: Date | null;
  log: string;
}

interface ScratchServer {
  ready: Promise<{ kind: 'ready' | 'exited'; facts: LogFacts }>;
  stop(): Promise<void>;
}

/**
 * Runs postgres in the foreground as our child (its stderr is the log we read). Resolves `ready`
 * once it accepts connections (with hot_standby off: once recovery has ended and it promoted),
 * or once it exited.
 */
function startServer(postgresBin: string, data: string, dir: string, ids: Ids, log?: ToolLog): ScratchServer {
  const child = spawn(postgresBin, ['-D', data], { env: childEnv({ HOME: dir }), stdio: ['ignore', 'ignore', 'pipe'], ...ids });
  const facts: LogFacts = { stopped: false, endedBeforeTarget: false, lastReplayed: null, log: '' };
  let pending = '';
  let markReady = () => {};
  const readySeen = new Promise<void>((r) => (markReady = r));
  child.stderr?.on('data', (b: Buffer) => {
    const lines = (pending + b.toString('utf8')).split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      facts.log = (facts.log + line + '\n').slice(-16_384);
      if (/\brecovery stopping (before|after)\b/.test(line)) facts.stopped = true;
      if (/recovery ended before configured recovery target was reached/.test(line)) facts.endedBeforeTarget = true;
      const last = /last completed transaction was at log time (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)\+00/.exec(line);
      if (last?.[1]) facts.lastReplayed = new Date(`${last[1].replace(' ', 'T')}Z`);
      if (/database system is ready to accept connections/.test(line)) markReady();
    }
  });
  const exited = new Promise<void>((resolve) => {
    child.once('error', (err) => {
      facts.log += `could not start postgres: ${(err as NodeJS.ErrnoException).code ?? err.message}\n`;
      resolve();
    });
    child.once('close', () => resolve());
  });
  const ready = Promise.race([readySeen.then(() => 'ready' as const), exited.then(() => 'exited' as const)]).then((kind) => {
    if (kind === 'exited') log?.debug({ tool: 'postgres', log: facts.log.slice(-4000) }, 'scratch postgres exited');
    return { kind, facts };
  });
  return {
    ready,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return exited;
      child.kill('SIGINT'); // fast shutdown
      const t1 = setTimeout(() => child.kill('SIGQUIT'), STOP_GRACE_MS);
      const t2 = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS + 5_000);
      await exited;
      clearTimeout(t1);
      clearTimeout(t2);
    },
  };
}

function recoveryFailure(log: string): ComponentError {
  const detail = log.slice(-4000);
  if (/WAL ends before (end of online backup|consistent recovery point)|could not locate required checkpoint record|requested timeline \d+ does not contain minimum recovery point|could not find redo location/.test(log)) {
    return new ComponentError('WAL is missing: the archive does not hold all the WAL the base backup needs to become consistent', { detail });
  }
  if (/insufficient parameter settings/.test(log)) return new ComponentError('the scratch server\'s settings are lower than the source\'s (insufficient parameter settings)', { detail });
  const fatal = /(?:FATAL|PANIC):\s+(.*)/.exec(log)?.[1];
  return new ComponentError(`the scratch recovery failed${fatal ? `: ${fatal}` : ''}`, { detail });
}

const SEGMENT = /^[0-9A-F]{24}$/;
const HISTORY = /^[0-9A-F]{8}\.history$/;

/**
 * Writes the backup's WAL into `walDir` (segments padded to the segment size), after checking
 * that the names cover the backup: its start segment, no gap, up to the segment of its end.
 */
async function materialiseWal(wal: WalSource, walDir: string, b: { timeline: number; startLsn: bigint; endLsn: bigint; segSize: number }, ids: Ids, signal?: AbortSignal) {
  await mkdir(walDir, { mode: 0o700 });
  await own(walDir, ids);
  const seg = BigInt(b.segSize);
  const perId = 0x100000000n / seg;
  const segno = (name: string) => BigInt(`0x${name.slice(8, 16)}`) * perId + BigInt(`0x${name.slice(16, 24)}`);
  const tli = (name: string) => Number.parseInt(name.slice(0, 8), 16);
  const first = walSegmentName(b.timeline, b.startLsn, b.segSize);
  // the segment holding the last byte before the end point
  const last = walSegmentName(b.timeline, b.endLsn > 0n ? b.endLsn - 1n : 0n, b.segSize);
  const segments = wal.names.filter((n) => SEGMENT.test(n) && (segno(n) > segno(first) || (segno(n) === segno(first) && tli(n) >= b.timeline)));
  const histories = wal.names.filter((n) => HISTORY.test(n));
  const missing = (what: string) => new ComponentError(`WAL is missing: ${what}`);
  // a later timeline's copy of the start segment will do (a switch inside it): recovery follows timeline 'latest'
  const head = segments[0];
  if (head === undefined || segno(head) !== segno(first)) throw missing(`the archive has no segment ${first}, where the base backup starts`);
  for (let i = 1; i < segments.length; i++) {
    const prev = segments[i - 1] as string;
    const cur = segments[i] as string;
    const step = segno(cur) - segno(prev);
    // a timeline switch repeats the segment number on the new timeline
    const ok = step === 1n || (step === 0n && tli(cur) > tli(prev));
    if (!ok) throw missing(`the archive has no segment between ${prev} and ${cur}`);
  }
  if (!segments.some((n) => segno(n) >= segno(last))) throw missing(`the archive ends before segment ${last}, where the base backup becomes consistent`);

  for (const name of histories) {
    await writeStream(wal.read(name), path.join(walDir, name), ids, signal);
  }
  for (const [i, name] of segments.entries()) {
    const size = await writeStream(wal.read(name), path.join(walDir, name), ids, signal);
    if (size > b.segSize) throw new ComponentError(`WAL segment ${name} is larger than the segment size (${size} > ${b.segSize} bytes)`);
    if (size < b.segSize) {
      const next = segments[i + 1];
      // only the newest segment, or the last one of a timeline, may be partial
      if (next !== undefined && tli(next) === tli(name)) throw missing(`segment ${name} is incomplete (${size} of ${b.segSize} bytes) and later segments follow it`);
      const h = await open(path.join(walDir, name), 'r+');
      try {
        await h.truncate(b.segSize); // zeros: what pg_receivewal's .partial files look like
      } finally {
        await h.close();
      }
    }
  }
}

async function writeStream(src: AsyncIterable<Buffer>, file: string, ids: Ids, signal?: AbortSignal): Promise<number> {
  const h = await open(file, 'wx', 0o600);
  let size = 0;
  try {
    for await (const chunk of src) {
      signal?.throwIfAborted();
      await writeAll(h, chunk);
      size += chunk.length;
    }
  } finally {
    await h.close();
  }
  await own(file, ids);
  return size;
}

async function writeAll(h: FileHandle, chunk: Buffer): Promise<void> {
  let off = 0;
  while (off < chunk.length) off += (await h.write(chunk, off, chunk.length - off)).bytesWritten;
}

/** Extracts the tar into `data` (0700, every file 0600, the scratch user's); returns PG_VERSION's content. */
async function extractTar(tar: AsyncIterable<Buffer>, data: string, ids: Ids, signal?: AbortSignal): Promise<{ pgVersion: string }> {
  await mkdir(data, { mode: 0o700 });
  await own(data, ids);
  const scanner = new TarScanner();
  let current: { handle: FileHandle; name: string } | null = null;
  let pgVersion = '';
  const madeDirs = new Set<string>(['']);
  const ensureDir = async (rel: string) => {
    if (madeDirs.has(rel)) return;
    await ensureDir(path.posix.dirname(rel) === '.' ? '' : path.posix.dirname(rel));
    await mkdir(path.join(data, rel), { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
    await own(path.join(data, rel), ids, 0o700);
    madeDirs.add(rel);
  };
  const closeCurrent = async () => {
    if (!current) return;
    const c = current;
    current = null;
    await c.handle.close();
  };
  try {
    for await (const chunk of tar) {
      signal?.throwIfAborted();
      for (const ev of scanner.push(chunk)) {
        if (ev.type === 'data') {
          if (!current) continue;
          await writeAll(current.handle, ev.chunk);
          if (current.name === 'PG_VERSION') pgVersion += ev.chunk.toString('latin1');
          continue;
        }
        await closeCurrent();
        const name = ev.name;
        if (name === '' || name.startsWith('/') || name.split('/').some((p) => p === '..' || p === '.')) throw new ComponentError(`the base backup holds an unsafe path: ${JSON.stringify(name)}`);
        if (ev.kind === '5') {
          await ensureDir(name);
        } else if (ev.kind === '0') {
          await ensureDir(path.posix.dirname(name) === '.' ? '' : path.posix.dirname(name));
          const file = path.join(data, name);
          const handle = await open(file, 'wx', 0o600);
          current = { handle, name };
          if (ids.uid !== undefined) await handle.chown(ids.uid, ids.gid as number);
        } else if (ev.kind === '2' && name.startsWith('pg_tblspc/')) {
          throw new ComponentError('the base backup has tablespaces, which point-in-time recovery does not support');
        } else {
          throw new ComponentError(`the base backup holds an entry of an unsupported kind (${ev.kind}): ${JSON.stringify(name)}`);
        }
      }
    }
    scanner.finish();
  } finally {
    await closeCurrent().catch(() => {});
  }
  return { pgVersion };
}

interface Ids {
  uid?: number;
  gid?: number;
}

/** The uid/gid to run server tools as: the scratch user's when we are root, none (ourselves) otherwise. */
async function scratchIds(user: string): Promise<Ids> {
  if (process.getuid?.() !== 0) return {};
  const id = (flag: string) =>
    new Promise<number>((resolve, reject) => {
      execFile('id', [flag, '--', user], { env: childEnv() }, (err, out) => {
        const n = Number(String(out).trim());
        if (err || !Number.isInteger(n)) reject(new ComponentError(`the scratch user ${user} (PITR_SCRATCH_USER) does not exist on this worker`));
        else resolve(n);
      });
    });
  const [uid, gid] = [await id('-u'), await id('-g')];
  if (uid === 0) throw new ComponentError('PITR_SCRATCH_USER must not be root: PostgreSQL refuses to run as root');
  return { uid, gid };
}

/**
 * The scratch user must be able to reach the instance's directory: every directory above
 * PITR_WORK_DIR searchable by it (a root-owned 0700 one, like /root or a mkdtemp directory, is
 * not). Found out before anything is extracted, with an operator-facing message.
 */
async function assertReachable(dir: string, ids: Ids, user: string): Promise<void> {
  if (ids.uid === undefined) return;
  const ok = await new Promise<boolean>((resolve) => {
    const child = spawn('test', ['-x', dir, '-a', '-w', dir], { env: childEnv(), stdio: 'ignore', ...ids });
    child.once('error', () => resolve(false));
    child.once('close', (code) => resolve(code === 0));
  });
  if (!ok) throw new ComponentError(`the worker's PITR_WORK_DIR is not reachable by its scratch user ${user} (PITR_SCRATCH_USER): every directory above it must be searchable by that user (an operator setting, see docs/pitr.md)`);
}

async function own(p: string, ids: Ids, mode?: number): Promise<void> {
  if (mode !== undefined) await chmod(p, mode);
  if (ids.uid !== undefined) await chown(p, ids.uid, ids.gid as number);
}

/** Runs a tool to its end (as the scratch user when `ids` say so) and returns its stdout; a ComponentError with its stderr otherwise. */
function runTool(cmd: string, args: string[], o: { ids: Ids; label: string; signal?: AbortSignal | undefined; input?: string }): Promise<string> {
  return new Promise((resolve, reject) => {
    o.signal?.throwIfAborted();
    const child: ChildProcess = spawn(cmd, args, { env: childEnv({ HOME: '/' }), stdio: [o.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], ...o.ids });
    let out = '';
    let err = '';
    child.stdout?.on('data', (b: Buffer) => (out += b.toString('utf8')));
    child.stderr?.on('data', (b: Buffer) => (err = (err + b.toString('utf8')).slice(-8192)));
    const onAbort = () => child.kill('SIGKILL');
    o.signal?.addEventListener('abort', onAbort, { once: true });
    if (o.input !== undefined) {
      child.stdin?.on('error', () => {});
      child.stdin?.end(o.input);
    }
    child.once('error', (e) => reject(new ComponentError(`could not start ${o.label}: ${(e as NodeJS.ErrnoException).code ?? e.message}`)));
    child.once('close', (code, sig) => {
      o.signal?.removeEventListener('abort', onAbort);
      if (o.signal?.aborted) return reject(abortError(o.signal));
      if (code === 0) return resolve(out);
      reject(new ComponentError(`${o.label} failed: ${err.trim().slice(-1000) || (sig ? `killed by ${sig}` : `exit code ${code}`)}`, { detail: err }));
    });
  });
}

/** The binaries of PostgreSQL `major`: `pgBin` (checked), else Debian's layout, else pg_config's when it is that major. */
async function findBinaries(major: number, pgBin?: string): Promise<string> {
  const candidates = pgBin ? [pgBin] : [`/usr/lib/postgresql/${major}/bin`, `/usr/pgsql-${major}/bin`];
  if (!pgBin) {
    const bindir = await new Promise<string>((resolve) => execFile('pg_config', ['--bindir'], { env: childEnv() }, (err, out) => resolve(err ? '' : String(out).trim())));
    if (bindir) candidates.push(bindir);
  }
  for (const dir of candidates) {
    const version = await new Promise<string>((resolve) => execFile(path.join(dir, 'postgres'), ['--version'], { env: childEnv() }, (err, out) => resolve(err ? '' : String(out))));
    const m = /\(PostgreSQL\) (\d+)/.exec(version);
    if (m && Number(m[1]) === major) return dir;
  }
  throw new ComponentError(`the base backup is of PostgreSQL ${major}, whose server binaries are not installed on this worker (looked in ${candidates.join(', ')})`);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (addr && typeof addr === 'object' ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}


/** A timestamp PostgreSQL reads unambiguously, in UTC, to the millisecond. */
function pgTimestamp(d: Date): string {
  return d.toISOString().replace('T', ' ').replace('Z', '+00');
}

/** A quoted postgresql.conf string. */
function q(s: string): string {
  return `'${s.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

function lit(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}



export { copyDatabase } from './scratch-copy.js';
export { sweepScratch } from './scratch-sweep.js';
