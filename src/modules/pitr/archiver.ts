import { rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { Db } from '../../db/client.js';
import type { SecretBox } from '../../crypto/secrets.js';
import type { RepoService } from '../../repo/service.js';
import type { PostgresConnection } from '../../components/postgres-connection.js';
import type { TargetPolicy } from '../../components/postgres-targets.js';
import { streamConnection } from './slots.js';
import { ComponentError } from '../../components/types.js';
import { connectClient, createSlot, dropSlot } from '../../components/pitr/checks.js';
import { startWalReceiver } from '../../components/pitr/receiver.js';
import { parseLsn, walSegmentName } from '../../components/pitr/lsn.js';
import { deleteLeftovers, LeaseLost, markStopped, report, resumePoint, storeWalFile, type SourcePosition, type StreamKey, type WalFileIn } from './wal-files.js';

/*
 * The archiver role (SPEC section 13): streams the WAL of continuous postgres components into
 * the repository. Each wal_streams row is held by one archiver at a time under a lease in
 * PostgreSQL (lease_owner, lease_expires_at, database time): a loop renews this archiver's
 * leases and claims free or expired ones every leaseMs/3, apart from the streaming itself, so a
 * slow upload never lets a lease lapse. A stream whose lease is lost stops at once, and every
 * write of stored WAL checks the lease in its transaction, so a cut-off archiver cannot store
 * anything once another holds the stream. 'dropping' rows are claimed the same way: their holder
 * drops the slot, then deletes the row (its stored WAL goes with it) and asks for a GC.
 */

export interface ArchiverDeps {
  db: Db;
  box: SecretBox;
  targets: TargetPolicy;
  repo: RepoService;
  log: Logger;
  now: () => Date;
  leaseMs: number;
  /** The spool: one subdirectory per stream. */
  workDir: string;
  /** Unique per archiver process (the lease owner). */
  id: string;
  /** Streams held at once (default 50). */
  maxStreams?: number;
  /** How often a partial segment is stored (default 3000 ms). */
  partialEveryMs?: number;
}

export interface Archiver {
  id: string;
  /** Stops every receiver (pg_receivewal flushes, completed segments are stored), then releases the leases for another archiver to take at once. */
  close(): Promise<void>;
}

interface StreamRow extends StreamKey {
  slotName: string;
  urlEnc: string;
  status: 'active' | 'dropping';
}

interface Held {
  row: StreamRow;
  ctl: AbortController;
  lost: boolean;
  done: Promise<void>;
}

/** Claimed per tick, so that several archivers starting together share the streams. */
const CLAIM_BATCH = 5;
const RETRY_MIN_MS = 1_000;
const RETRY_MAX_MS = 30_000;
const DROP_RETRY_MAX_MS = 300_000;
const LAG_CHECK_MS = 5_000;

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

/** What a tenant may read of a failure: a driver's message is written for them; anything else is not. */
function tenantMessage(err: unknown): string {
  if (err instanceof ComponentError) return err.message;
  return 'archiving failed for an internal reason (the service retries)';
}

export function startArchiver(d: ArchiverDeps): Archiver {
  const { db, log } = d;
  const me = d.id;
  const maxStreams = d.maxStreams ?? 50;
  const leaseInterval = `${d.leaseMs} milliseconds`;
  const held = new Map<string, Held>();
  let closing = false;
  let timer: NodeJS.Timeout | undefined;
  let ticking: Promise<void> = Promise.resolve();
  const ctx = { db, repo: d.repo, owner: me, now: d.now };

  /** The component's connection, checked against the operator's target policy and pinned to the checked addresses. */
  const connectionOf = (row: StreamRow): Promise<PostgresConnection> => streamConnection(d, row);

  /** The source's position, on one client of ours per receiver run (null when it cannot answer). */
  function probeOf(conn: PostgresConnection) {
    let client: pg.Client | undefined;
    let segSize = 0n;
    return {
      async position(): Promise<SourcePosition | null> {
        try {
          client ??= await connectClient(conn);
          const r = await client.query<{ lsn: string; seg: string }>("SELECT pg_current_wal_lsn()::text AS lsn, pg_size_bytes(current_setting('wal_segment_size'))::text AS seg");
          segSize = BigInt(r.rows[0]!.seg);
          return { currentLsn: parseLsn(r.rows[0]!.lsn), segSize };
        } catch {
          await client?.end().catch(() => {});
          client = undefined;
          return segSize ? { currentLsn: null, segSize } : null;
        }
      },
      async close() {
        await client?.end().catch(() => {});
      },
    };
  }

  async function runStream(row: StreamRow, signal: AbortSignal): Promise<void> {
    const dir = path.join(d.workDir, row.id);
    const heldSince = Date.now();
    let delay = RETRY_MIN_MS;
    let cleared = false;
    // The server removed WAL that was never stored (a slot dropped and made again, say): the gap
    // cannot be filled, so streaming starts again from a new slot (storedWal refuses to replay across it).
    let fromSlot = false;
    while (!signal.aborted) {
      const started = Date.now();
      let probe: ReturnType<typeof probeOf> | undefined;
      let lagTimer: NodeJS.Timeout | undefined;
      try {
        const conn = await connectionOf(row);
        if (!cleared) {
          const n = await deleteLeftovers(db, row.id);
          if (n > 0) await d.repo.repositories.requestGc(row.tenantId, d.now()).catch(() => {});
          cleared = true;
        }
        // Made again, not reused: a failed start from the lost position moved the slot back there.
        if (fromSlot) await dropSlot(conn, row.slotName);
        await createSlot(conn, row.slotName);
        const p = (probe = probeOf(conn));
        const first = await p.position();
        if (!first) throw new ComponentError('postgres: cannot read the server\'s WAL position');
        const segSize = first.segSize;
        let resume = await resumePoint(db, row.id, (f) => walSegmentName(f.timeline, f.endLsn, segSize));
        if (fromSlot) {
          await rm(dir, { recursive: true, force: true });
          resume = null;
          fromSlot = false;
        }
        const store = async (f: WalFileIn) => {
          const pos = (await p.position()) ?? { currentLsn: null, segSize };
          await storeWalFile(ctx, row, f, pos);
        };
        const receiver = startWalReceiver({
          conn,
          slot: row.slotName,
          dir,
          resumeFrom: resume,
          partialEveryMs: d.partialEveryMs ?? 3_000,
          takeOver: true,
          signal,
          log,
          onSegment: (f) => store({ name: f.name, timeline: f.timeline, startLsn: f.startLsn, endLsn: f.endLsn, partial: false, coversUntil: null, path: f.path }),
          onPartial: (f) => store({ name: f.name, timeline: f.timeline, startLsn: f.startLsn, endLsn: f.upToLsn, partial: true, coversUntil: f.sourceTime, path: f.path }),
          onHistory: async (name, file) => store({ name, timeline: Number.parseInt(name.slice(0, 8), 16), startLsn: 0n, endLsn: 0n, partial: false, coversUntil: null, path: file, length: (await stat(file)).size }),
        });
        // Lag and the age of the window's end are checked apart from the stores: a receiver or an upload that is stuck turns the stream 'behind'.
        lagTimer = setInterval(() => {
          void (async () => {
            const pos = (await p.position()) ?? { currentLsn: null, segSize };
            await db.$transaction((tx) => report(tx, ctx, row, { coversUntil: null, storedLsn: null, heldSinceMs: Date.now() - heldSince }, pos));
          })().catch((err: unknown) => {
            if (!(err instanceof LeaseLost)) log.debug({ stream_id: row.id, err: (err as Error).message }, 'archiver: lag check failed');
          });
        }, LAG_CHECK_MS);
        await receiver.done;
        return; // stopped by us
      } catch (err) {
        // No lag report may follow the stop.
        clearInterval(lagTimer);
        await probe?.close();
        probe = undefined;
        if (signal.aborted || err instanceof LeaseLost) return;
        let message = tenantMessage(err);
        if (err instanceof ComponentError && /has already been removed/.test(`${err.message}\n${err.detail ?? ''}`)) {
          fromSlot = true;
          message = 'the server removed WAL before it was archived, so there is a gap in the recovery window: archiving starts again from now, and restores to later times need a base backup taken after this';
        }
        log.warn({ stream_id: row.id, tenant_id: row.tenantId, err: message, detail: err instanceof ComponentError ? err.detail : (err as Error).message }, 'archiver: stream stopped; retrying');
        try {
          await markStopped(db, ctx, row, message);
        } catch (e) {
          if (e instanceof LeaseLost) return;
          log.warn({ stream_id: row.id, err: (e as Error).message }, 'archiver: could not record the stop');
        }
        // A receiver that ran for a while before failing starts again from the shortest delay.
        if (Date.now() - started > RETRY_MAX_MS) delay = RETRY_MIN_MS;
        await sleep(delay, signal);
        delay = Math.min(delay * 2, RETRY_MAX_MS);
      } finally {
        clearInterval(lagTimer);
        await probe?.close();
      }
    }
  }

  async function runDrop(row: StreamRow, signal: AbortSignal): Promise<void> {
    let delay = RETRY_MIN_MS;
    while (!signal.aborted) {
      try {
        await dropSlot(await connectionOf(row), row.slotName);
        const n = await db.$executeRaw`DELETE FROM wal_streams WHERE id = ${row.id}::uuid AND lease_owner = ${me} AND status = 'dropping'`;
        if (n > 0) {
          await d.repo.repositories.requestGc(row.tenantId, d.now()).catch(() => {});
          log.info({ stream_id: row.id, tenant_id: row.tenantId }, 'archiver: dropped the slot and the stored WAL of a removed stream');
        }
        await rm(path.join(d.workDir, row.id), { recursive: true, force: true }).catch(() => {});
        return;
      } catch (err) {
        const message = tenantMessage(err);
        log.warn({ stream_id: row.id, err: message, detail: err instanceof ComponentError ? err.detail : (err as Error).message }, 'archiver: dropping the slot failed; retrying');
        await db.$executeRaw`UPDATE wal_streams SET error = ${message}, updated_at = now() WHERE id = ${row.id}::uuid AND lease_owner = ${me}`.catch(() => {});
        await sleep(delay, signal);
        delay = Math.min(delay * 2, DROP_RETRY_MAX_MS);
      }
    }
  }

  function begin(row: StreamRow): void {
    const entry: Held = { row, ctl: new AbortController(), lost: false, done: Promise.resolve() };
    held.set(row.id, entry);
    entry.done = (async () => {
      try {
        for (;;) {
          if (entry.lost || closing) return;
          entry.ctl = new AbortController();
          if (entry.row.status === 'dropping') return await runDrop(entry.row, entry.ctl.signal);
          await runStream(entry.row, entry.ctl.signal);
          // Stopped: lost, closing, or turned 'dropping' (then dropped next).
          if ((entry.row.status as StreamRow['status']) !== 'dropping') return;
        }
      } catch (err) {
        log.error({ stream_id: row.id, err }, 'archiver: stream task failed');
      } finally {
        if (held.get(row.id) === entry) held.delete(row.id);
      }
    })();
  }

  async function tick(): Promise<void> {
    const ids = [...held.keys()];
    if (ids.length) {
      const kept = await db.$queryRaw<{ id: string; status: 'active' | 'dropping' }[]>`
        UPDATE wal_streams SET lease_expires_at = now() + ${leaseInterval}::interval
        WHERE lease_owner = ${me} AND id = ANY(${ids}::uuid[]) RETURNING id::text, status`;
      const byId = new Map(kept.map((k) => [k.id, k.status]));
      for (const [id, entry] of held) {
        const status = byId.get(id);
        if (status === undefined) {
          if (!entry.lost) log.warn({ stream_id: id }, 'archiver: lost the lease of a stream; stopping it');
          entry.lost = true;
          entry.ctl.abort();
        } else if (status === 'dropping' && entry.row.status === 'active') {
          entry.row.status = 'dropping';
          entry.ctl.abort();
        }
      }
    }
    if (closing) return;
    const room = Math.min(CLAIM_BATCH, maxStreams - held.size);
    if (room <= 0) return;
    const claimed = await db.$queryRaw<{ id: string; tenant_id: string; cluster_id: string; component: string; slot_name: string; url_enc: string; status: 'active' | 'dropping' }[]>`
      UPDATE wal_streams SET lease_owner = ${me}, lease_expires_at = now() + ${leaseInterval}::interval, updated_at = now()
      WHERE id IN (
        SELECT id FROM wal_streams
        WHERE (lease_expires_at IS NULL OR lease_expires_at <= now()) AND NOT (id = ANY(${[...held.keys()]}::uuid[]))
        ORDER BY lease_expires_at NULLS FIRST
        FOR UPDATE SKIP LOCKED LIMIT ${room}
      )
      RETURNING id::text, tenant_id::text, cluster_id::text, component, slot_name, url_enc, status`;
    if (closing) {
      // Closed while claiming: hand them straight back.
      await release(claimed.map((c) => c.id));
      return;
    }
    for (const c of claimed) {
      log.info({ stream_id: c.id, tenant_id: c.tenant_id, status: c.status }, 'archiver: took a stream');
      begin({ id: c.id, tenantId: c.tenant_id, clusterId: c.cluster_id, component: c.component, slotName: c.slot_name, urlEnc: c.url_enc, status: c.status });
    }
  }

  async function release(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await db.$executeRaw`UPDATE wal_streams SET lease_expires_at = now(), updated_at = now() WHERE lease_owner = ${me} AND id = ANY(${ids}::uuid[])`;
  }

  const period = Math.max(250, Math.floor(d.leaseMs / 3));
  const loop = () => {
    ticking = tick()
      .catch((err: unknown) => log.warn({ err: (err as Error).message }, 'archiver: lease round failed'))
      .finally(() => {
        if (!closing) timer = setTimeout(loop, period);
      });
  };
  loop();

  return {
    id: me,
    async close() {
      closing = true;
      clearTimeout(timer);
      await ticking;
      // Leases are still renewed while the receivers stop and store what they completed.
      const renew = setInterval(() => void tick().catch(() => {}), period);
      try {
        const entries = [...held.values()];
        for (const e of entries) e.ctl.abort();
        await Promise.all(entries.map((e) => e.done));
      } finally {
        clearInterval(renew);
      }
      await db.$executeRaw`UPDATE wal_streams SET lease_expires_at = now(), updated_at = now() WHERE lease_owner = ${me}`.catch((err: unknown) =>
        log.warn({ err: (err as Error).message }, 'archiver: could not release its leases'),
      );
    },
  };
}
