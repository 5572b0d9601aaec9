import { randomBytes } from 'node:crypto';
import type { RedisConnection } from './redis-url.js';
import { RedisReplyError, replyFailure, type Reply, type RespConnection } from './redis-wire.js';
import { ComponentError } from './types.js';

/**
 * The key-by-key half of a restore: the snapshot sits in a private redis-server (the scratch,
 * redis-scratch.ts); its keys are read with `DUMP` (the serialized value, type and encoding
 * included, binary-safe) and `PEXPIRETIME`, and written to the target with
 * `RESTORE key <absolute ms> payload REPLACE ABSTTL`: values, types (streams with their consumer
 * groups, last-delivered ids and pending entries), TTLs as the snapshot's absolute expiry times.
 *
 * Everything that can be checked is checked before the target is flushed (`prepareTarget`):
 * the databases the snapshot uses exist there, and the target accepts the scratch server's
 * DUMP format and lets the user RESTORE. Then `FLUSHALL` and the copy, database by database.
 */

/** Bytes of DUMP payloads held at once (the key count per batch adapts to it; one bigger value is taken alone). */
const BATCH_BYTES = 16 * 1024 * 1024;
const MAX_KEYS_PER_BATCH = 1000;
const SCAN_COUNT = '1000';

/** What a restoring user needs. */
export const RESTORE_GRANT = '+flushall +restore +select +ping (or +@all) on every key (~*)';

function restoreDenied(conn: RedisConnection, err: RedisReplyError): ComponentError {
  return new ComponentError(`the Redis user ${JSON.stringify(conn.username ?? 'default')} may not restore: grant it ${RESTORE_GRANT}`, { detail: err.message });
}

/** Fails on an error reply, in words for the tenant (`what` says which step). */
function ok(reply: Reply, conn: RedisConnection, what: string): Reply {
  if (!(reply instanceof RedisReplyError)) return reply;
  if (reply.code === 'NOPERM') throw restoreDenied(conn, reply);
  if (reply.code === 'OOM') throw new ComponentError(`${what}: the target server reached its maxmemory`, { detail: reply.message });
  throw replyFailure(reply, conn, what);
}

/**
 * How many databases the target has: the first index `SELECT` refuses (probed by doubling,
 * then bisecting, so CONFIG is not needed). Leaves `db` selected again.
 */
export async function countDatabases(target: RespConnection, conn: RedisConnection): Promise<number> {
  const selectable = async (i: number) => {
    const [r] = await target.pipeline([['SELECT', String(i)]]);
    if (r instanceof RedisReplyError) {
      if (/out of range|invalid db|DB index/i.test(r.message)) return false;
      ok(r, conn, 'the target server refused SELECT');
    }
    return true;
  };
  let lo = 0; // selectable
  let hi = 16;
  while (hi <= 1 << 24 && (await selectable(hi - 1))) {
    lo = hi - 1;
    hi *= 2;
  }
  if (hi > 1 << 24) hi = (1 << 24) + 1;
  // lo selectable, hi - 1 not: the count is in (lo, hi - 1]
  let a = lo + 1;
  let b = hi - 1;
  while (a < b) {
    const mid = Math.floor((a + b) / 2);
    if (await selectable(mid)) a = mid + 1;
    else b = mid;
  }
  ok((await target.pipeline([['SELECT', String(conn.db)]]))[0] as Reply, conn, 'the target server refused SELECT');
  return a;
}

/** Databases of the scratch server that hold keys (`INFO keyspace`), in order. */
export async function databasesWithKeys(scratch: RespConnection): Promise<number[]> {
  const info = String(await scratch.call('INFO', 'keyspace'));
  return [...info.matchAll(/^db(\d+):keys=(\d+)/gm)].filter((m) => Number(m[2]) > 0).map((m) => Number(m[1])).sort((x, y) => x - y);
}

/**
 * The checks a restore makes before the target loses anything: the snapshot's databases exist on
 * the target, and one of its keys, RESTOREd under a random name (and deleted at once, with a 10 s
 * TTL in case the deletion never arrives), is accepted. A target older than the scratch
 * server refuses its DUMP format ("payload version"): that is said plainly.
 */
export async function prepareTarget(scratch: RespConnection, target: RespConnection, conn: RedisConnection, opts: { dbs: number[]; targetDatabases: number; scratchVersion: string }): Promise<void> {
  const missing = opts.dbs.filter((db) => db >= opts.targetDatabases);
  if (missing.length > 0) {
    throw new ComponentError(`the snapshot has keys in database ${missing[0]}, which the target server does not have (it has ${opts.targetDatabases} databases)`);
  }
  // The copy reads each key's absolute expiry with PEXPIRETIME (redis-server >= 7): without it
  // every TTL would be lost, so that is refused here, before the target is flushed.
  const [expiry] = await scratch.pipeline([['PEXPIRETIME', 'bk:expiry-probe']]);
  if (expiry instanceof RedisReplyError) throw new ComponentError('the restore needs redis-server 7.0 or later on the workers', { detail: expiry.message });
  const first = opts.dbs[0];
  if (first === undefined) return;
  await scratch.call('SELECT', String(first));
  const scan = (await scratch.call('SCAN', '0', 'COUNT', '100')) as [Buffer, Buffer[]];
  const key = scan[1][0];
  if (!key) return;
  const payload = await scratch.call('DUMP', key);
  if (!Buffer.isBuffer(payload)) return;
  const probe = `bk:restore-probe:${randomBytes(8).toString('hex')}`;
  const [restored, deleted] = await target.pipeline([
    ['RESTORE', probe, '10000', payload, 'REPLACE'],
    ['DEL', probe],
  ]);
  if (restored instanceof RedisReplyError && /payload version|checksum/i.test(restored.message)) {
    throw new ComponentError(
      `the target server is older than the restore's redis-server (${opts.scratchVersion}) and refuses its DUMP format; restore onto a Redis server of version ${opts.scratchVersion.replace(/^(\d+\.\d+).*/, '$1')} or later`,
      { detail: restored.message },
    );
  }
  ok(restored as Reply, conn, 'the target server refused RESTORE');
  ok(deleted as Reply, conn, 'the target server refused DEL');
}

/**
 * The snapshot's Redis functions (Redis >= 7 keeps libraries in the RDB), restored with
 * `FUNCTION RESTORE ... REPLACE`: the snapshot's libraries come back, others on the target stay.
 * Runs before the flush: it is atomic, so a refusal leaves the target as it was.
 */
export async function restoreFunctions(scratch: RespConnection, target: RespConnection, conn: RedisConnection): Promise<boolean> {
  const [list] = await scratch.pipeline([['FUNCTION', 'LIST']]);
  if (!Array.isArray(list) || list.length === 0) return false;
  const payload = await scratch.call('FUNCTION', 'DUMP');
  if (!Buffer.isBuffer(payload)) return false;
  const [reply] = await target.pipeline([['FUNCTION', 'RESTORE', payload, 'REPLACE']]);
  if (reply instanceof RedisReplyError && /unknown command/i.test(reply.message)) {
    throw new ComponentError('the snapshot holds Redis functions, which the target server does not support (it needs Redis 7 or later)', { detail: reply.message });
  }
  ok(reply as Reply, conn, 'the target server refused the snapshot\'s functions');
  return true;
}

/** Counts of what the copy wrote. */
export interface CopyStats {
  keys: number;
  payloadBytes: number;
}

/**
 * FLUSHALL on the target, then every key of every database in `dbs` copied from the scratch
 * server. Keys that expire while the copy runs are skipped (the scratch server drops them like
 * any server would). Memory: at most about BATCH_BYTES of payloads, or one value alone.
 */
export async function flushAndCopy(scratch: RespConnection, target: RespConnection, conn: RedisConnection, dbs: number[], opts: { signal?: AbortSignal } = {}): Promise<CopyStats> {
  ok((await target.pipeline([['FLUSHALL']]))[0] as Reply, conn, 'the target server refused FLUSHALL');
  const stats: CopyStats = { keys: 0, payloadBytes: 0 };
  let perBatch = 128;
  for (const db of dbs) {
    await scratch.call('SELECT', String(db));
    ok((await target.pipeline([['SELECT', String(db)]]))[0] as Reply, conn, 'the target server refused SELECT');
    let cursor = '0';
    do {
      opts.signal?.throwIfAborted();
      const [next, keys] = (await scratch.call('SCAN', cursor, 'COUNT', SCAN_COUNT)) as [Buffer, Buffer[]];
      cursor = next.toString();
      for (let i = 0; i < keys.length; ) {
        const batch = keys.slice(i, i + perBatch);
        i += batch.length;
        const replies = await scratch.pipeline(batch.flatMap((k) => [['DUMP', k], ['PEXPIRETIME', k]]));
        const restores: Buffer[][] = [];
        let bytes = 0;
        batch.forEach((key, j) => {
          const payload = replies[2 * j];
          const expireAt = replies[2 * j + 1];
          if (payload instanceof RedisReplyError) throw new ComponentError('reading the snapshot failed', { detail: payload.message });
          // without PEXPIRETIME (redis-server < 7) every TTL would be lost: refuse instead
          if (expireAt instanceof RedisReplyError) throw new ComponentError('the restore needs redis-server 7.0 or later on the workers', { detail: expireAt.message });
          if (!Buffer.isBuffer(payload) || expireAt === -2) return; // expired meanwhile
          bytes += payload.length;
          const ttl = typeof expireAt === 'number' && expireAt > 0 ? String(expireAt) : '0';
          restores.push([Buffer.from('RESTORE'), key, Buffer.from(ttl), payload, Buffer.from('REPLACE'), Buffer.from('ABSTTL')]);
        });
        for (const reply of await target.pipeline(restores)) ok(reply, conn, 'the target server refused a key');
        stats.keys += restores.length;
        stats.payloadBytes += bytes;
        perBatch = Math.max(1, Math.min(MAX_KEYS_PER_BATCH, Math.floor((batch.length * BATCH_BYTES) / Math.max(bytes, 1))));
      }
    } while (cursor !== '0');
  }
  ok((await target.pipeline([['SELECT', String(conn.db)]]))[0] as Reply, conn, 'the target server refused SELECT');
  return stats;
}
