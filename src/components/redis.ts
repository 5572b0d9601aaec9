import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { TargetPolicy } from './postgres-targets.js';
import { countDatabases, databasesWithKeys, flushAndCopy, prepareTarget, restoreFunctions } from './redis-restore.js';
import { startScratchRedis } from './redis-scratch.js';
import { rdbSnapshot, replicationDenied } from './redis-sync.js';
import { parseRedisUrl, type RedisConnection } from './redis-url.js';
import { endpointFor, openRedis, RedisReplyError, type RedisEndpoint, type RespConnection, type WireOptions } from './redis-wire.js';
import { ComponentError, type BackupContext, type ComponentDriver } from './types.js';
import { ArtifactChangedError, hashArtifact } from './verify.js';
import { decodeStreamManifest, encodeStreamManifest } from '../repo/manifest.js';

export { checkRedisUrl } from './redis-url.js';
export { REDIS_CONNECT_TIMEOUT_MS } from './redis-wire.js';

export interface RedisConfig {
  /** redis:// or rediss:// URL, possibly with a user and password, and a database index that must exist. */
  url: string;
  /** Milliseconds one address may take to accept a connection (REDIS_CONNECT_TIMEOUT_MS by default); tests shorten it. */
  connectTimeoutMs?: number;
}

/** The URL parsed (a bad one is a ComponentError) and the addresses the operator's policy allows. */
async function endpointOf(config: RedisConfig, ctx: { targets?: TargetPolicy | undefined }): Promise<RedisEndpoint> {
  let conn: RedisConnection;
  try {
    conn = parseRedisUrl(config.url);
  } catch (err) {
    throw new ComponentError(`invalid redis URL: ${(err as Error).message}`);
  }
  return endpointFor(conn, ctx.targets);
}

function wireOptions(config: RedisConfig, ctx: BackupContext): WireOptions {
  return { ...(config.connectTimeoutMs !== undefined ? { connectTimeoutMs: config.connectTimeoutMs } : {}), ...(ctx.signal ? { signal: ctx.signal } : {}) };
}

/** Databases a scratch server always has, like a default Redis. */
const DEFAULT_DATABASES = 16;

export const redisDriver: ComponentDriver<RedisConfig> = {
  type: 'redis',
  archive: { extension: 'rdb', mediaType: 'application/octet-stream' },

  /**
   * The server's RDB snapshot (redis-sync.ts: the replication protocol, what `redis-cli --rdb`
   * does), every database, streamed into the sink as it arrives: the socket is read only as fast
   * as the repository takes the bytes. The consistent point is the master's fork (`+FULLRESYNC`),
   * reported through `onConsistent` before a byte of the payload. The manifest ends only once
   * the whole payload (its announced length, or up to the diskless end mark) is in the sink.
   */
  backup(config, ctx) {
    let logical = 0;
    async function* manifest(): AsyncGenerator<Buffer> {
      const endpoint = await endpointOf(config, ctx);
      let total: number | null = null;
      let done = 0;
      const progress = () => ctx.onProgress?.({ bytes_done: done, bytes_total: total, files_done: 0, files_total: null });
      async function* counted(): AsyncGenerator<Buffer> {
        const source = rdbSnapshot(endpoint, {
          ...wireOptions(config, ctx),
          ...(ctx.onConsistent ? { onConsistent: ctx.onConsistent } : {}),
          onPayload: (bytes) => {
            total = bytes;
            progress();
          },
        });
        for await (const piece of source) {
          done += piece.length;
          progress();
          yield piece;
        }
      }
      try {
        const ref = await ctx.sink.writeStream(counted());
        logical = ref.bytes;
        yield* encodeStreamManifest(ref);
      } catch (err) {
        if (err instanceof ComponentError) ctx.log?.debug({ tool: 'redis', detail: err.detail }, err.message);
        throw err;
      }
    }
    return { manifest: manifest(), logicalBytes: () => logical };
  },

  /**
   * Replaces every database of the target with the snapshot's. Order, so that a refusal leaves
   * the target untouched: connect and authenticate; download the whole RDB into a private temp
   * dir (every chunk verified by the source, the byte count checked against the manifest); load
   * it into a scratch redis-server; check that the target has the snapshot's databases and
   * accepts its DUMP format; the snapshot's functions (FUNCTION RESTORE, atomic); only then
   * FLUSHALL and RESTORE key by key (redis-restore.ts). A
   * failure after the flush (the connection lost, maxmemory) leaves the target partly restored:
   * writers must be stopped during a restore, and the restore be run again.
   */
  async restore(config, ctx) {
    const endpoint = await endpointOf(config, ctx);
    const { conn } = endpoint;
    const opts = wireOptions(config, ctx);
    // Credentials and databases are checked before the download; the connection that restores
    // is opened afresh afterwards (a server's `timeout` may drop a client idle that long).
    const first = await openRedis(endpoint, opts);
    const targetDatabases = await countDatabases(first, conn).finally(() => first.close());
    const dir = await mkdtemp(path.join(tmpdir(), 'bk-redis-restore-'));
    let scratch: Awaited<ReturnType<typeof startScratchRedis>> | undefined;
    let target: RespConnection | undefined;
    try {
      const ref = await decodeStreamManifest(ctx.manifest);
      const counted = hashArtifact(ctx.source.read(ref.chunks), (got) => {
        if (got.bytes !== ref.bytes) throw new ArtifactChangedError(`the snapshot read back has ${got.bytes} bytes, ${ref.bytes} recorded; nothing was restored`);
      });
      await pipeline(counted.stream, createWriteStream(path.join(dir, 'dump.rdb'), { mode: 0o600 }), ...(ctx.signal ? [{ signal: ctx.signal }] : []));
      await counted.check();
      scratch = await startScratchRedis(dir, { databases: Math.max(DEFAULT_DATABASES, targetDatabases), ...(ctx.signal ? { signal: ctx.signal } : {}) });
      const source = await scratch.connect();
      try {
        target = await openRedis(endpoint, opts);
        const dbs = await databasesWithKeys(source);
        await prepareTarget(source, target, conn, { dbs, targetDatabases, scratchVersion: scratch.version });
        ctx.signal?.throwIfAborted();
        await restoreFunctions(source, target, conn);
        const stats = await flushAndCopy(source, target, conn, dbs, ctx.signal ? { signal: ctx.signal } : {});
        ctx.log?.debug({ tool: 'redis', keys: stats.keys, payloadBytes: stats.payloadBytes, databases: dbs }, 'redis restore done');
      } finally {
        source.close();
      }
    } catch (err) {
      if (err instanceof ComponentError) ctx.log?.debug({ tool: 'redis', detail: err.detail }, err.message);
      throw err;
    } finally {
      target?.close();
      await scratch?.stop();
      await rm(dir, { recursive: true, force: true });
    }
  },

  async exportArchive(manifest, source) {
    const ref = await decodeStreamManifest(manifest);
    return source.read(ref.chunks);
  },
};

/**
 * For the API at save time (a 422 before the component is stored): the URL is valid, the target
 * allowed, the server reachable, the credentials right, the database present, and the user may
 * replicate. Takes no snapshot: replication rights are asked with `ACL DRYRUN` (Redis >= 7), or,
 * where the user may not run it, tried with `PSYNC <bogus id> -1 FAILOVER`, which the server
 * refuses after the permission check and before any synchronization (Redis >= 6.2); on older
 * servers they cannot be told without a snapshot, and the backup will say. Returns null when all
 * is well, else the same message a backup would fail with.
 */
export async function checkRedisConnection(url: string, opts: { targets?: TargetPolicy; connectTimeoutMs?: number; signal?: AbortSignal } = {}): Promise<string | null> {
  try {
    const endpoint = await endpointOf({ url, ...(opts.connectTimeoutMs !== undefined ? { connectTimeoutMs: opts.connectTimeoutMs } : {}) }, opts);
    const { conn } = endpoint;
    const c = await openRedis(endpoint, {
      ...(opts.connectTimeoutMs !== undefined ? { connectTimeoutMs: opts.connectTimeoutMs } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
      idleTimeoutMs: 30_000,
    });
    try {
      const user = conn.username ?? 'default';
      const [capa, dryPsync, dryReplconf, info] = await c.pipeline([
        ['REPLCONF', 'capa', 'eof'],
        ['ACL', 'DRYRUN', user, 'PSYNC', '?', '-1'],
        ['ACL', 'DRYRUN', user, 'REPLCONF', 'capa', 'eof'],
        ['INFO', 'server'],
      ]);
      if (capa instanceof RedisReplyError && capa.code === 'NOPERM') return replicationDenied(conn, capa.message).message;
      const dryrun = [dryPsync, dryReplconf];
      if (dryrun.every((r) => r === 'OK')) return null;
      if (dryrun.some((r) => Buffer.isBuffer(r))) return replicationDenied(conn).message; // DRYRUN's answer: not permitted
      // No ACL DRYRUN (Redis < 7) or not allowed to run it: try PSYNC where that is harmless.
      const version = /redis_version:(\d+)\.(\d+)/.exec(Buffer.isBuffer(info) ? info.toString() : '');
      const [major, minor] = version ? [Number(version[1]), Number(version[2])] : [0, 0];
      if (major > 6 || (major === 6 && minor >= 2)) {
        const [probe] = await c.pipeline([['PSYNC', 'bk-permission-probe', '-1', 'FAILOVER']]);
        if (probe instanceof RedisReplyError && probe.code === 'NOPERM') return replicationDenied(conn, probe.message).message;
      }
      return null;
    } finally {
      c.close();
    }
  } catch (err) {
    if (err instanceof ComponentError) return err.message;
    throw err;
  }
}
