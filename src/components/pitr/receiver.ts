import { spawn } from 'node:child_process';
import { watch, type FSWatcher } from 'node:fs';
import { link, mkdir, readdir, rm, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import type { PostgresConnection } from '../postgres-connection.js';
import { describePostgresFailure } from '../postgres-errors.js';
import { childEnv, StderrTail } from '../process.js';
import { ComponentError } from '../types.js';
import { connectClient, releaseSlot, stepError } from './checks.js';
import { formatLsn, parseLsn, parseSegmentName, walSegmentName } from './lsn.js';

export interface WalFile {
  /** The segment's file name (24 hex digits, no `.partial`). */
  name: string;
  timeline: number;
  startLsn: bigint;
  path: string;
}

export interface WalReceiverOptions {
  conn: PostgresConnection;
  slot: string;
  /** A local directory of ours (created if missing). */
  dir: string;
  /**
   * The first segment the caller has not stored complete, if any: pg_receivewal starts there,
   * not at the slot's restart_lsn (which can be ahead of what the caller stored after a crash).
   */
  resumeFrom?: string | null;
  partialEveryMs?: number;
  /** When the slot is active (a dead archiver's orphaned pg_receivewal or walsender), terminate that walsender first. */
  takeOver?: boolean;
  signal: AbortSignal;
  /** A completed segment; the file is removed once this resolves. A rejection is retried, before any later segment. */
  onSegment(f: WalFile & { endLsn: bigint }): Promise<void>;
  /**
   * The bytes of `f.path` up to (upToLsn - startLsn) hold every commit the source made before
   * sourceTime, and every earlier segment was handed to onSegment. `f.path` is a link of ours,
   * stable while this runs (pg_receivewal may complete and rename the segment meanwhile).
   */
  onPartial(f: WalFile & { upToLsn: bigint; sourceTime: Date }): Promise<void>;
  /** Timeline history files; removed once this resolves. */
  onHistory?(name: string, path: string): Promise<void>;
  log?: { debug(o: object, m: string): void; warn(o: object, m: string): void };
}

export interface WalReceiver {
  /** Resolves after stop() or an abort; rejects with a ComponentError when pg_receivewal stops for any other reason. */
  done: Promise<void>;
  /** Ends pg_receivewal (it flushes first), hands the segments it completed, and resolves once nothing runs any more. */
  stop(): Promise<void>;
}

const SEGMENT = /^([0-9A-F]{8})([0-9A-F]{16})$/;
const PARTIAL = /^([0-9A-F]{24})\.partial$/;
const HISTORY = /^[0-9A-F]{8}\.history$/;
/** Our own links for onPartial: pg_receivewal ignores names that are not WAL file names. */
const SNAPSHOT_PREFIX = 'bk-snapshot-';
const POLL_MS = 1_000;
const CATCH_UP_MS = 2_000;
const RETRY_MAX_MS = 30_000;

// pg_receivewal must not outlive us, even after a kill -9 of Node: its wrapper reads our pipe on
// stdin and SIGINTs it at EOF (pg_receivewal 15 flushes and exits 0 on SIGINT; SIGTERM would
// kill it outright), SIGKILLing it if it is still there 10 s later (stuck in a connect). stop()
// takes the same path: it closes the pipe.
const WRAPPER = `exec 3<&0
"$@" </dev/null &
child=$!
{ while read -r _; do :; done; kill -INT "$child" 2>/dev/null; sleep 10; kill -KILL "$child" 2>/dev/null; } <&3 >/dev/null 2>&1 &
watcher=$!
exec 3<&- 0</dev/null
trap 'kill -INT "$child" 2>/dev/null' INT TERM
wait "$child"; status=$?
while kill -0 "$child" 2>/dev/null; do wait "$child"; status=$?; done
kill "$watcher" 2>/dev/null
exit "$status"`;

function describeReceiverFailure(stderr: string, slot: string): string {
  if (/replication slot "[^"]*" is active for PID/.test(stderr)) return `replication slot ${slot} is in use by another connection (another archiver, or an orphaned one: start with takeOver)`;
  if (/replication slot "[^"]*" does not exist/.test(stderr)) return `replication slot ${slot} does not exist`;
  return describePostgresFailure(stderr);
}

type Handed = 'done' | 'blocked';

export function startWalReceiver(o: WalReceiverOptions): WalReceiver {
  const every = o.partialEveryMs ?? 3_000;
  const stopper = new AbortController();
  const stopping = AbortSignal.any([o.signal, stopper.signal]);
  let wake: () => void = () => {};
  let closeInput: () => void = () => {};
  const stopAll = () => {
    closeInput();
    wake();
  };
  stopping.addEventListener('abort', stopAll, { once: true });

  async function run(): Promise<void> {
    await mkdir(o.dir, { recursive: true });
    let client: pg.Client | undefined = await connectClient(o.conn).catch((err) => {
      throw stepError(o.conn, 'starting the WAL receiver', err);
    });
    const sizes = await client.query<{ seg: string; blk: string }>("SELECT pg_size_bytes(current_setting('wal_segment_size'))::text AS seg, current_setting('wal_block_size') AS blk").catch((err) => {
      throw stepError(o.conn, 'starting the WAL receiver', err);
    });
    const segSize = BigInt(sizes.rows[0]?.seg ?? '0');
    const blockSize = BigInt(sizes.rows[0]?.blk ?? '8192');
    let lastTimeline = await prepareDir(o.dir, o.resumeFrom ?? null, segSize);
    if (o.takeOver) await releaseSlot(o.conn, o.slot);
    if (stopping.aborted) return;

    const child = spawn('sh', ['-c', WRAPPER, 'bk-walreceiver', 'pg_receivewal', '-D', o.dir, '-S', o.slot, '--synchronous', '--no-loop', '-s', '1', '-v', '--no-password'], {
      env: childEnv(o.conn.env),
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    child.stdin.on('error', () => {});
    closeInput = () => child.stdin.end();
    if (stopping.aborted) closeInput();
    const tail = new StderrTail();
    let pending = '';
    child.stderr.on('data', (b: Buffer) => {
      tail.push(b);
      const lines = (pending + b.toString('utf8')).split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) if (line) o.log?.debug({ tool: 'pg_receivewal', slot: o.slot, line: o.conn.redact(line) }, 'pg_receivewal');
    });
    let exited = false;
    const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      child.once('error', () => resolve({ code: null, signal: null }));
      child.once('close', (code, signal) => resolve({ code, signal }));
    });
    void exit.then(() => {
      exited = true;
      wake();
    });

    let watcher: FSWatcher | undefined;
    try {
      watcher = watch(o.dir, () => wake());
      watcher.on('error', () => {});
    } catch {
      // polling alone then
    }

    const handedSegments = new Set<string>();
    let retryAt = 0;
    let retryDelay = 500;

    /** Hands every complete segment and history file on disk, in order; 'blocked' after a rejection (left for a retry). */
    const handCompleted = async (retrying: boolean): Promise<Handed> => {
      if (retrying && Date.now() < retryAt) return 'blocked';
      const names = await readdir(o.dir);
      for (const name of names.filter((n) => HISTORY.test(n)).sort()) {
        if (o.onHistory) {
          try {
            await o.onHistory(name, path.join(o.dir, name));
          } catch (err) {
            return failed(name, err);
          }
        }
        await rm(path.join(o.dir, name), { force: true });
      }
      // Same order as the WAL: by segment number, then timeline.
      const segments = names.filter((n) => SEGMENT.test(n) && !handedSegments.has(n)).sort((a, b) => a.slice(8).localeCompare(b.slice(8)) || a.localeCompare(b));
      for (const name of segments) {
        const { timeline, startLsn } = parseSegmentName(name, segSize);
        const file = path.join(o.dir, name);
        try {
          await o.onSegment({ name, timeline, startLsn, endLsn: startLsn + segSize, path: file });
        } catch (err) {
          return failed(name, err);
        }
        handedSegments.add(name);
        lastTimeline = Math.max(lastTimeline, timeline);
        retryDelay = 500;
        await rm(file, { force: true });
      }
      return 'done';
    };
    const failed = (name: string, err: unknown): Handed => {
      o.log?.warn({ slot: o.slot, file: name, err: err instanceof Error ? err.message : String(err), retryInMs: retryDelay }, 'handing a WAL file failed; retrying');
      retryAt = Date.now() + retryDelay;
      retryDelay = Math.min(retryDelay * 2, RETRY_MAX_MS);
      return 'blocked';
    };

    const partialTick = async (): Promise<void> => {
      client ??= await connectClient(o.conn);
      const c = client;
      // The insert position covers every commit acknowledged before now(), synchronous or not;
      // positioned just past a page header when nothing is on that page yet, which the
      // receiver's flush position (at the page boundary) would never reach.
      const r0 = await c.query<{ t0: Date; l0: string }>('SELECT now() AS t0, pg_current_wal_insert_lsn()::text AS l0');
      const { t0, l0 } = r0.rows[0] as { t0: Date; l0: string };
      let target = parseLsn(l0);
      if (target % segSize === 40n) target -= 40n;
      else if (target % blockSize === 24n) target -= 24n;
      const deadline = Date.now() + CATCH_UP_MS;
      let flushed: bigint | null = null;
      for (;;) {
        const r = await c.query<{ lsn: string | null }>('SELECT restart_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1', [o.slot]);
        const lsn = r.rows[0]?.lsn;
        flushed = lsn ? parseLsn(lsn) : null;
        if ((flushed !== null && flushed >= target) || Date.now() > deadline || stopping.aborted || exited) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      if (flushed === null || flushed < target) {
        o.log?.debug({ slot: o.slot, target: formatLsn(target), flushed: flushed === null ? null : formatLsn(flushed) }, 'WAL receiver behind; no partial this tick');
        return;
      }
      // Every segment before the one being written is complete on disk by now (pg_receivewal
      // renames a segment before it reports a flush position past it): hand them first.
      if ((await handCompleted(false)) === 'blocked') return;
      const startLsn = (flushed / segSize) * segSize;
      const names = await readdir(o.dir);
      const partial = names
        .map((n) => PARTIAL.exec(n)?.[1])
        .filter((n): n is string => n !== undefined && parseSegmentName(n, segSize).startLsn === startLsn)
        .sort()
        .pop();
      const timeline = partial ? parseSegmentName(partial, segSize).timeline : lastTimeline;
      if (!partial && flushed !== startLsn) return; // renamed meanwhile: the next tick reports the next segment
      if (timeline === 0) return;
      const name = partial ?? walSegmentName(timeline, startLsn, segSize);
      const snapshot = path.join(o.dir, `${SNAPSHOT_PREFIX}${name}`);
      await rm(snapshot, { force: true });
      try {
        if (partial) await link(path.join(o.dir, `${partial}.partial`), snapshot);
        else await writeFile(snapshot, ''); // nothing of this segment streamed yet
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw err;
      }
      lastTimeline = Math.max(lastTimeline, timeline);
      try {
        await o.onPartial({ name, timeline, startLsn, upToLsn: flushed, sourceTime: t0, path: snapshot });
      } finally {
        await rm(snapshot, { force: true });
      }
    };

    let nextTick = Date.now() + Math.min(every, 1_000);
    let failure: unknown;
    try {
      while (!stopping.aborted && !exited) {
        const handed = await handCompleted(true);
        if (handed === 'done' && Date.now() >= nextTick && !stopping.aborted && !exited) {
          nextTick = Date.now() + every;
          await partialTick().catch(async (err: unknown) => {
            o.log?.warn({ slot: o.slot, err: o.conn.redact(err instanceof Error ? err.message : String(err)) }, 'reporting the streamed WAL failed');
            await client?.end().catch(() => {});
            client = undefined;
          });
        }
        const waitMs = Math.max(0, Math.min(POLL_MS, nextTick - Date.now(), handed === 'blocked' ? retryAt - Date.now() : POLL_MS));
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, waitMs);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = () => {};
      }
    } catch (err) {
      failure = err;
    }
    closeInput();
    const { code, signal } = await exit;
    watcher?.close();
    await client?.end().catch(() => {});
    // What pg_receivewal completed before it stopped is handed now: the slot has moved past it,
    // so the server may recycle it at its next checkpoint.
    await handCompleted(false).catch(() => 'blocked');
    if (failure !== undefined) throw failure;
    if (stopping.aborted) return;
    const stderr = o.conn.redact(tail.text());
    o.log?.debug({ tool: 'pg_receivewal', slot: o.slot, code, signal, stderr }, 'pg_receivewal stopped');
    const why = stderr ? describeReceiverFailure(stderr, o.slot) : signal ? `killed by ${signal}` : `exit code ${code}`;
    throw new ComponentError(`pg_receivewal stopped: ${why}`, { detail: stderr });
  }

  const done = run();
  done.catch(() => {});
  return {
    done,
    async stop() {
      stopper.abort();
      await done.catch(() => {});
    },
  };
}

/**
 * Leaves in `dir` what pg_receivewal should start from: complete segments from `resumeFrom` on
 * without a gap (handed first), else `<resumeFrom>.partial`, a zero-filled segment, which
 * pg_receivewal takes as where to start (it needs one of exactly the segment size). Without
 * `resumeFrom`, the newest partial stays (it starts at that segment), or none: the slot's
 * restart_lsn then. Returns the newest timeline seen (0 if none).
 */
async function prepareDir(dir: string, resumeFrom: string | null, segSize: bigint): Promise<number> {
  const names = await readdir(dir);
  const resume = resumeFrom === null ? null : parseSegmentName(resumeFrom, segSize);
  for (const n of names) if (n.startsWith(SNAPSHOT_PREFIX) || n.endsWith('.tmp')) await rm(path.join(dir, n), { force: true });
  const complete = names.filter((n) => SEGMENT.test(n)).sort((a, b) => a.slice(8).localeCompare(b.slice(8)));
  let expect = resume?.startLsn ?? null;
  const kept: string[] = [];
  for (const n of complete) {
    const { startLsn } = parseSegmentName(n, segSize);
    if (expect === null || startLsn === expect) {
      kept.push(n);
      expect = startLsn + segSize;
    } else if (resume === null) {
      kept.push(n); // not stored yet: handed, gap or not (what the gap held is gone either way)
    } else {
      // Already stored (before resumeFrom), or beyond a gap that streaming from resumeFrom fills.
      await rm(path.join(dir, n), { force: true });
    }
  }
  const partials = names.filter((n) => PARTIAL.test(n)).sort((a, b) => a.slice(8).localeCompare(b.slice(8)) || a.localeCompare(b));
  let keepPartial: string | null = null;
  if (kept.length === 0 && resumeFrom !== null) keepPartial = `${resumeFrom}.partial`;
  else if (kept.length === 0) keepPartial = partials.at(-1) ?? null;
  for (const n of partials) if (n !== keepPartial) await rm(path.join(dir, n), { force: true });
  if (keepPartial && resumeFrom !== null) {
    // Sparse: costs no disk, and pg_receivewal overwrites it from the segment's start.
    await writeFile(path.join(dir, keepPartial), '', { flag: 'a' });
    await truncate(path.join(dir, keepPartial), Number(segSize));
  }
  const timelines = [...kept, ...(keepPartial ? [keepPartial] : [])].map((n) => Number.parseInt(n.slice(0, 8), 16));
  return Math.max(0, resume?.timeline ?? 0, ...timelines);
}
