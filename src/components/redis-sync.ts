import { ComponentError } from './types.js';
import type { RedisConnection } from './redis-url.js';
import { openRedis, RedisReplyError, redactReply, replyFailure, type RedisEndpoint, type RespConnection, type WireOptions } from './redis-wire.js';

/**
 * A point-in-time RDB snapshot of every database, taken the way a replica (or `redis-cli --rdb`)
 * gets one: `REPLCONF capa eof` (the master may send it diskless), `REPLCONF rdb-only 1` (Redis
 * >= 7: no replication stream is buffered for us, so a slow repository cannot make the master
 * drop us for its replica output-buffer limit), then `PSYNC ? -1`, a full resynchronization. The
 * master forks (BGSAVE) and answers `+FULLRESYNC`; then, after newline keepalives, either
 * `$<length>` and that many bytes (the RDB written to its disk first) or `$EOF:<40-byte mark>`
 * and the RDB streamed from the fork, ended by the mark.
 */

/** What a user needs to take a snapshot; named in the refusal. */
export const REPLICATION_GRANT = '+psync +replconf +sync (or +@admin)';

export function replicationDenied(conn: RedisConnection, detail?: string): ComponentError {
  return new ComponentError(
    `the Redis user ${JSON.stringify(conn.username ?? 'default')} may not replicate, which a snapshot needs: grant it ${REPLICATION_GRANT}`,
    detail !== undefined ? { detail } : {},
  );
}

export interface SnapshotEvents {
  /** The master has forked: the snapshot holds exactly the writes it had processed before. */
  onConsistent?: () => void;
  /** The payload starts: its announced length, or null in the diskless form. */
  onPayload?: (bytes: number | null) => void;
}

const RDB_MAGIC = Buffer.from('REDIS');

/**
 * The RDB bytes, exactly, read from the socket only as fast as the consumer takes them (the
 * socket is not read while it waits: TCP pushes back on the master). A piece is valid only until
 * the next is asked for (WireOptions.snapshot): the consumer copies it. Nothing connects before
 * the first `next()`. Any failure, and a payload cut short, throws; returning early (the
 * consumer gave up) or an abort of `opts.signal` closes the connection.
 */
export async function* rdbSnapshot(endpoint: RedisEndpoint, opts: WireOptions & SnapshotEvents): AsyncGenerator<Buffer> {
  const { conn } = endpoint;
  for (let attempt = 1; ; attempt++) {
    const c = await openRedis(endpoint, { ...opts, snapshot: true });
    try {
      const [capa, rdbOnly] = await c.pipeline([
        ['REPLCONF', 'capa', 'eof'],
        ['REPLCONF', 'rdb-only', '1'],
      ]);
      for (const reply of [capa, rdbOnly]) {
        if (reply instanceof RedisReplyError && reply.code === 'NOPERM') throw replicationDenied(conn, reply.message);
      }
      if (capa instanceof RedisReplyError) throw replyFailure(capa, conn, 'the server refused to replicate');
      // A consistent backup must not get a snapshot older than its pause: see payload().
      const since = opts.onConsistent ? await replicationOffset(c) : null;
      // an older server that has no rdb-only (Redis < 7) simply streams more after the payload
      await c.send([['PSYNC', '?', '-1']]);
      yield* payload(c, conn, opts, since);
      return;
    } catch (err) {
      if (!(err instanceof OlderSnapshot)) throw err;
      if (attempt >= OLDER_SNAPSHOT_ATTEMPTS) {
        throw new ComponentError(
          `the server kept handing out a snapshot it had started before this backup asked (another replica's full resynchronization); tried ${attempt} times`,
        );
      }
    } finally {
      c.close();
    }
    // That save is under way: the next request, once it is done, gets a fork of its own.
    await new Promise((r) => setTimeout(r, OLDER_SNAPSHOT_WAIT_MS * attempt));
    opts.signal?.throwIfAborted();
  }
}

/**
 * A master already running a full resynchronization for another replica attaches a new replica
 * to that save instead of forking again: the snapshot is then older than the request, so older
 * than the consistent backup's pause. `+FULLRESYNC <replid> <offset>` tells: `offset` is where
 * the snapshot stands in the replication stream, and it must not be below the master's offset
 * read just before the request. Such a snapshot is given up and asked for again.
 */
class OlderSnapshot extends Error {}
const OLDER_SNAPSHOT_ATTEMPTS = 10;
const OLDER_SNAPSHOT_WAIT_MS = 500;

/** The master's replication offset (`INFO replication`), or null when the user may not read it (then no check is possible). */
async function replicationOffset(c: RespConnection): Promise<number | null> {
  const [info] = await c.pipeline([['INFO', 'replication']]);
  const m = Buffer.isBuffer(info) ? /master_repl_offset:(\d+)/.exec(info.toString('latin1')) : null;
  return m ? Number(m[1]) : null;
}

async function* payload(c: RespConnection, conn: RedisConnection, events: SnapshotEvents, since: number | null = null): AsyncGenerator<Buffer> {
  let header: string;
  for (;;) {
    header = await c.reader.line().catch((err: unknown) => {
      throw lost(err, 'before the snapshot started');
    });
    if (header === '') continue; // keepalive while the master prepares the snapshot
    if (header.startsWith('+FULLRESYNC')) {
      const offset = Number(header.split(' ')[2]);
      if (since !== null && Number.isSafeInteger(offset) && offset < since) throw new OlderSnapshot();
      events.onConsistent?.();
      continue;
    }
    if (header.startsWith('-')) {
      const err = new RedisReplyError(header.slice(1));
      if (err.code === 'NOPERM') throw replicationDenied(conn, err.message);
      throw replyFailure(err, conn, 'the server refused to replicate');
    }
    if (header.startsWith('$')) break;
    throw new ComponentError('the server answered the replication request with something unexpected', { detail: redactReply(header, conn) });
  }
  const eof = /^\$EOF:(.{40})$/.exec(header);
  const length = eof ? null : Number(header.slice(1));
  if (length !== null && (!Number.isSafeInteger(length) || length < RDB_MAGIC.length)) {
    throw new ComponentError('the server announced a snapshot of an invalid length', { detail: header.slice(0, 100) });
  }
  events.onPayload?.(length);
  const cut = (err: unknown) => lost(err, 'before the snapshot was complete');
  const magic = await c.reader.bytes(RDB_MAGIC.length).catch((err: unknown) => {
    throw cut(err);
  });
  if (!magic.equals(RDB_MAGIC)) throw new ComponentError('the server sent a snapshot that is not in the RDB format');
  yield magic;
  const rest = eof ? c.reader.streamUntil(Buffer.from(eof[1] as string, 'latin1')) : c.reader.stream((length as number) - RDB_MAGIC.length);
  try {
    yield* rest;
  } catch (err) {
    throw cut(err);
  }
}

/** A connection ended under a read: its reason, with when it happened; an abort stays an abort. */
function lost(err: unknown, when: string): Error {
  if (!(err instanceof ComponentError) || err.name !== 'ConnectionLost') return err as Error;
  return new ComponentError(`${err.message} ${when} (the server's background save may have failed, or it dropped us as a replica: see its log)`, {
    ...(err.detail !== undefined ? { detail: err.detail } : {}),
  });
}
