import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { Db, Tx } from '../../db/client.js';
import type { RepoService } from '../../repo/service.js';
import type { StreamRef } from '../../repo/types.js';
import { formatLsn } from '../../components/pitr/lsn.js';
import { recordEvent } from '../events/outbox.js';

/*
 * The stored WAL of a stream (SPEC section 13): wal_segments rows, each one file's bytes in the
 * tenant's repository. A segment is stored while it fills (partial: its first end_lsn - start_lsn
 * bytes, replaced by each longer upload) and once complete (replacing its partial). A row is
 * 'writing' while its bytes go in (its references are recorded as they go), 'stored' once its
 * manifest is known, in the transaction that updates the stream's recovery window; that
 * transaction also checks the archiver still holds the stream's lease.
 */

const SEGMENT_NAME = /^[0-9A-F]{24}$/;
/** More than this many segments of the source's WAL not stored (a busy server writes a few between two partials), or a recovery window end older than BEHIND_AGE_MS: the stream is 'behind'. */
export const BEHIND_SEGMENTS = 8n;
export const BEHIND_AGE_MS = 60_000;
/** covers_until of a file that promises nothing (no partial of it or before it was reported). */
const NO_PROMISE = new Date(0);

export class LeaseLost extends Error {
  override name = 'LeaseLost';
}

/** Stored WAL cannot replay what was asked: a gap, or not stored that far yet. */
export class WalGap extends Error {
  override name = 'WalGap';
}

export interface StoredWalFile {
  id: string;
  name: string;
  timeline: number;
  startLsn: bigint;
  /** A complete segment's end; a partial's end of the bytes stored (the file is that long: pad it with zeros to the segment size for replay). */
  endLsn: bigint;
  partial: boolean;
  coversUntil: Date;
  bytes: number;
  sha256: string;
  /** Read with `repo.source(tenantId).read(manifest.chunks)`. */
  manifest: StreamRef;
}

type Row = { id: string; name: string; timeline: number; start_lsn: bigint; end_lsn: bigint; partial: boolean; covers_until: Date; bytes: bigint; sha256: string; manifest: StreamRef };

const toFile = (r: Row): StoredWalFile => ({
  id: r.id,
  name: r.name,
  timeline: r.timeline,
  startLsn: BigInt(r.start_lsn),
  endLsn: BigInt(r.end_lsn),
  partial: r.partial,
  coversUntil: r.covers_until,
  bytes: Number(r.bytes),
  sha256: r.sha256,
  manifest: r.manifest,
});

/**
 * The stored WAL files that replay a base backup starting at `fromLsn` up to `untilTime`: the
 * segment holding fromLsn, then each next one without a gap, up to the first whose covers_until
 * reaches untilTime (every commit of the source before untilTime is in it or an earlier one);
 * and the stream's timeline history files. Throws WalGap when a segment is missing or the stored
 * WAL does not reach untilTime yet. The last file may be a partial (pad it to the segment size);
 * the WAL may end before any commit after untilTime, so a replay must accept reaching its end
 * before its recovery target (PostgreSQL 13+ then fails: restart without the target).
 */
export async function storedWal(db: Db | Tx, streamId: string, o: { fromLsn: bigint; untilTime: Date }): Promise<{ segments: StoredWalFile[]; history: StoredWalFile[] }> {
  const rows = (
    await db.$queryRaw<Row[]>`
      SELECT id::text, name, timeline, start_lsn, end_lsn, partial, covers_until, bytes, sha256, manifest
      FROM wal_segments WHERE stream_id = ${streamId}::uuid AND status = 'stored'
      ORDER BY start_lsn, timeline`
  ).map(toFile);
  const history = rows.filter((r) => !SEGMENT_NAME.test(r.name));
  // One file per position: the newest timeline's (a switch leaves the old timeline's copy behind).
  const byStart = new Map<bigint, StoredWalFile>();
  for (const r of rows) if (SEGMENT_NAME.test(r.name)) byStart.set(r.startLsn, r);
  const segments = [...byStart.values()];
  const first = segments.filter((s) => s.startLsn <= o.fromLsn).pop();
  if (!first || first.endLsn < o.fromLsn || (!first.partial && first.endLsn === o.fromLsn)) {
    throw new WalGap(`no stored WAL holds ${formatLsn(o.fromLsn)}, where the base backup starts`);
  }
  const out = [first];
  let cur = first;
  while (cur.coversUntil < o.untilTime) {
    if (cur.partial) throw new WalGap(`the stored WAL reaches only ${cur.coversUntil.toISOString()}`);
    const next = byStart.get(cur.endLsn);
    if (!next) {
      const later = segments.some((s) => s.startLsn > cur.endLsn);
      throw new WalGap(later ? `the stored WAL has a gap at ${formatLsn(cur.endLsn)}` : `the stored WAL reaches only ${cur.coversUntil.toISOString()}`);
    }
    out.push(next);
    cur = next;
  }
  return { segments: out, history };
}

/**
 * Where streaming must start again: the segment after the highest stored complete segment, else
 * the first stored partial's, else null (the slot's restart position).
 */
export async function resumePoint(db: Db, streamId: string, nextName: (f: { timeline: number; endLsn: bigint }) => string): Promise<string | null> {
  const [complete] = await db.$queryRaw<{ timeline: number; end_lsn: bigint }[]>`
    SELECT timeline, end_lsn FROM wal_segments
    WHERE stream_id = ${streamId}::uuid AND status = 'stored' AND NOT partial AND name ~ '^[0-9A-F]{24}$'
    ORDER BY start_lsn DESC, timeline DESC LIMIT 1`;
  if (complete) return nextName({ timeline: complete.timeline, endLsn: BigInt(complete.end_lsn) });
  const [partial] = await db.$queryRaw<{ name: string }[]>`
    SELECT name FROM wal_segments WHERE stream_id = ${streamId}::uuid AND status = 'stored' AND partial ORDER BY start_lsn, timeline LIMIT 1`;
  return partial?.name ?? null;
}

/** Deletes what a dead holder of the stream left half-written (its references go with the rows). Answers how many. */
export async function deleteLeftovers(db: Db, streamId: string): Promise<number> {
  return db.$executeRaw`DELETE FROM wal_segments WHERE stream_id = ${streamId}::uuid AND status = 'writing'`;
}

export interface StreamKey {
  id: string;
  tenantId: string;
  clusterId: string;
  component: string;
}

export interface WalFileIn {
  name: string;
  timeline: number;
  startLsn: bigint;
  /** Complete: the segment's end; partial: how far its bytes are stored (the first endLsn - startLsn bytes of `path`). */
  endLsn: bigint;
  partial: boolean;
  /** Partial: the source time its bytes cover; complete: null (it covers what the files before it did). */
  coversUntil: Date | null;
  path: string;
  /** Bytes of `path` to store when not endLsn - startLsn (a timeline history file: all of it). */
  length?: number;
}

/** What the source said just before: its current WAL position (null if unknown) and its segment size. */
export interface SourcePosition {
  currentLsn: bigint | null;
  segSize: bigint;
}

export type StoreOutcome = 'stored' | 'refreshed' | 'skipped';

/** Bytes [0, length) of a file, hashed as they pass; errors if the file is shorter. */
async function* fileBytes(file: string, length: number, hash: ReturnType<typeof createHash>): AsyncGenerator<Buffer> {
  if (length === 0) return;
  let n = 0;
  for await (const b of createReadStream(file, { start: 0, end: length - 1, highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    hash.update(b);
    n += b.length;
    yield b;
  }
  if (n !== length) throw new Error(`WAL file ${file} is shorter than the ${length} bytes to store`);
}

/**
 * Stores one WAL file of a stream and moves the stream's recovery window on. A partial whose
 * stored version already holds its bytes is not uploaded again: only its covers_until moves.
 */
export async function storeWalFile(
  d: { db: Db; repo: RepoService; owner: string; now: () => Date },
  s: StreamKey,
  f: WalFileIn,
  pos: SourcePosition,
): Promise<StoreOutcome> {
  const { db } = d;
  if (f.partial) {
    const [have] = await db.$queryRaw<{ id: string; partial: boolean; end_lsn: bigint }[]>`
      SELECT id::text, partial, end_lsn FROM wal_segments WHERE stream_id = ${s.id}::uuid AND name = ${f.name} AND status = 'stored'`;
    if (have && !have.partial) return 'skipped';
    if (have && BigInt(have.end_lsn) >= f.endLsn) {
      // Its stored bytes reach f.endLsn already, so they hold every commit before f.coversUntil too.
      await db.$transaction(async (tx) => {
        await tx.$executeRaw`UPDATE wal_segments SET covers_until = GREATEST(covers_until, ${f.coversUntil}::timestamptz) WHERE id = ${have.id}::uuid AND status = 'stored'`;
        await report(tx, d, s, { coversUntil: f.coversUntil, storedLsn: BigInt(have.end_lsn) }, pos);
      });
      return 'refreshed';
    }
  }
  const length = f.length ?? Number(f.endLsn - f.startLsn);
  const id = randomUUID();
  await db.$executeRaw`
    INSERT INTO wal_segments (id, stream_id, tenant_id, name, timeline, start_lsn, end_lsn, partial, covers_until, status, bytes)
    VALUES (${id}::uuid, ${s.id}::uuid, ${s.tenantId}::uuid, ${f.name}, ${f.timeline}, ${f.startLsn}, ${f.endLsn}, ${f.partial}, ${f.coversUntil ?? NO_PROMISE}, 'writing', ${length})`;
  let stored = false;
  try {
    const hash = createHash('sha256');
    const writer = await d.repo.writer({ tenantId: s.tenantId, backupId: null, walSegmentId: id, clusterId: s.clusterId });
    const ref = await writer.writeStream(fileBytes(f.path, length, hash));
    await writer.flush();
    const sha256 = hash.digest('hex');
    const outcome = await db.$transaction(async (tx): Promise<StoreOutcome> => {
      const [held] = await tx.$queryRaw<{ id: string }[]>`SELECT id::text FROM wal_streams WHERE id = ${s.id}::uuid AND lease_owner = ${d.owner} AND status = 'active' FOR UPDATE`;
      if (!held) throw new LeaseLost(`the lease of stream ${s.id} is no longer ours`);
      const [old] = await tx.$queryRaw<{ id: string; partial: boolean; end_lsn: bigint }[]>`
        SELECT id::text, partial, end_lsn FROM wal_segments WHERE stream_id = ${s.id}::uuid AND name = ${f.name} AND status = 'stored' FOR UPDATE`;
      // A partial never replaces the complete segment, nor a longer partial (a new holder catching up).
      if (old && f.partial && (!old.partial || BigInt(old.end_lsn) > f.endLsn)) return 'skipped';
      if (old) await tx.$executeRaw`DELETE FROM wal_segments WHERE id = ${old.id}::uuid`;
      let covers = f.coversUntil;
      if (!f.partial) {
        // What every stored file at or before it promised holds for it too.
        const [m] = await tx.$queryRaw<{ t: Date | null }[]>`
          SELECT max(covers_until) AS t FROM wal_segments WHERE stream_id = ${s.id}::uuid AND status = 'stored' AND start_lsn <= ${f.startLsn} AND name ~ '^[0-9A-F]{24}$'`;
        covers = m?.t && m.t > NO_PROMISE ? m.t : null;
      }
      const n = await tx.$executeRaw`
        UPDATE wal_segments SET status = 'stored', covers_until = ${covers ?? NO_PROMISE}, sha256 = ${sha256}, stored_bytes = ${writer.storedBytes},
          manifest = ${JSON.stringify(ref)}::jsonb
        WHERE id = ${id}::uuid AND status = 'writing'`;
      if (n !== 1) throw new LeaseLost(`the WAL file ${f.name} being stored was deleted by another holder of stream ${s.id}`);
      await report(tx, d, s, { coversUntil: covers, storedLsn: f.endLsn }, pos);
      return 'stored';
    });
    stored = outcome === 'stored';
    return outcome;
  } finally {
    if (!stored) await db.$executeRaw`DELETE FROM wal_segments WHERE id = ${id}::uuid AND status = 'writing'`.catch(() => {});
  }
}

/** The stream as events show it. */
export function streamView(s: StreamKey, r: { state: string; error: string | null; lagBytes: bigint | null; latestRestorableTime: Date | null; storedLsn: bigint | null }) {
  return {
    stream: {
      id: s.id,
      cluster_id: s.clusterId,
      component: s.component,
      state: r.state,
      error: r.error,
      lag_bytes: r.lagBytes === null ? null : Number(r.lagBytes),
      latest_restorable_time: r.latestRestorableTime?.toISOString() ?? null,
      stored_lsn: r.storedLsn === null ? null : formatLsn(r.storedLsn),
    },
  };
}

/**
 * Moves the stream's recovery window (never back) and its lag; its state becomes 'behind' when
 * the lag passes BEHIND_SEGMENTS segments or the window's end is older than BEHIND_AGE_MS, else
 * 'streaming' (an `archiver.behind` event when it turns behind). Only while `owner` holds it.
 * `heldSinceMs`: with nothing stored yet, how long this holder has been at it.
 */
export async function report(
  tx: Tx,
  d: { owner: string; now: () => Date },
  s: StreamKey,
  got: { coversUntil: Date | null; storedLsn: bigint | null; heldSinceMs?: number },
  pos: SourcePosition,
): Promise<void> {
  const [row] = await tx.$queryRaw<{ state: string; lrt: Date | null; stored_lsn: bigint | null; lag_bytes: bigint | null; db_now: Date }[]>`
    SELECT state, latest_restorable_time AS lrt, stored_lsn, lag_bytes, now() AS db_now FROM wal_streams
    WHERE id = ${s.id}::uuid AND lease_owner = ${d.owner} AND status = 'active' FOR UPDATE`;
  if (!row) throw new LeaseLost(`the lease of stream ${s.id} is no longer ours`);
  const prevStored = row.stored_lsn === null ? null : BigInt(row.stored_lsn);
  const storedLsn = got.storedLsn === null ? prevStored : prevStored === null || got.storedLsn > prevStored ? got.storedLsn : prevStored;
  const lrt = got.coversUntil && got.coversUntil > NO_PROMISE && (!row.lrt || got.coversUntil > row.lrt) ? got.coversUntil : row.lrt;
  const lag = pos.currentLsn !== null && storedLsn !== null ? (pos.currentLsn > storedLsn ? pos.currentLsn - storedLsn : 0n) : row.lag_bytes === null ? null : BigInt(row.lag_bytes);
  const stale = lrt ? row.db_now.getTime() - lrt.getTime() > BEHIND_AGE_MS : (got.heldSinceMs ?? 0) > BEHIND_AGE_MS;
  const state = (lag !== null && lag > BEHIND_SEGMENTS * pos.segSize) || stale ? 'behind' : 'streaming';
  await tx.$executeRaw`
    UPDATE wal_streams SET latest_restorable_time = ${lrt}, stored_lsn = ${storedLsn}, lag_bytes = ${lag}, reported_at = now(), updated_at = now(),
      state = ${state}, error = NULL
    WHERE id = ${s.id}::uuid`;
  if (state === 'behind' && row.state !== 'behind') {
    await recordEvent(tx, { tenantId: s.tenantId, type: 'archiver.behind', clusterId: s.clusterId, occurredAt: d.now(), data: streamView(s, { state, error: null, lagBytes: lag, latestRestorableTime: lrt, storedLsn }) });
  }
}

/** The stream stopped (its receiver failed): state 'stopped' with a tenant-fit error; an `archiver.stopped` event when it turns stopped. */
export async function markStopped(db: Db, d: { owner: string; now: () => Date }, s: StreamKey, error: string): Promise<void> {
  await db.$transaction(async (tx) => {
    const [row] = await tx.$queryRaw<{ state: string; error: string | null; lrt: Date | null; stored_lsn: bigint | null; lag_bytes: bigint | null }[]>`
      SELECT state, error, latest_restorable_time AS lrt, stored_lsn, lag_bytes FROM wal_streams
      WHERE id = ${s.id}::uuid AND lease_owner = ${d.owner} AND status = 'active' FOR UPDATE`;
    if (!row) throw new LeaseLost(`the lease of stream ${s.id} is no longer ours`);
    await tx.$executeRaw`UPDATE wal_streams SET state = 'stopped', error = ${error}, reported_at = now(), updated_at = now() WHERE id = ${s.id}::uuid`;
    // A new stream starts 'stopped' without an error: its first failure is a transition too.
    if (row.state !== 'stopped' || row.error === null) {
      const view = streamView(s, { state: 'stopped', error, lagBytes: row.lag_bytes === null ? null : BigInt(row.lag_bytes), latestRestorableTime: row.lrt, storedLsn: row.stored_lsn === null ? null : BigInt(row.stored_lsn) });
      await recordEvent(tx, { tenantId: s.tenantId, type: 'archiver.stopped', clusterId: s.clusterId, occurredAt: d.now(), data: view });
    }
  });
}
