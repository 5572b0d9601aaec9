import { randomBytes } from 'node:crypto';
import type mysql from 'mysql2/promise';
import { pipeline, Readable } from 'node:stream';
import { parseMysqlUrl, quoteIdent as q, type MysqlConnection } from './mysql-connection.js';
import { triggerQualifierFilter } from './mysql-dump-filter.js';
import { describeMysqlError, describeMysqlToolFailure } from './mysql-errors.js';
import { MYSQL_CONNECT_TIMEOUT_MS, connectMysql, mysqlTools, preflight, toolArgs, toolEnv, withMysql, type MysqlServer, type MysqlServerOptions } from './mysql-server.js';
import { swapIntoTarget } from './mysql-swap.js';
import { runWithInput, spawnChunks } from './process.js';
import { ComponentError, type BackupContext, type ComponentDriver, type RestoreContext } from './types.js';
import { ArtifactChangedError, hashArtifact } from './verify.js';
import { decodeStreamManifest, encodeStreamManifest } from '../repo/manifest.js';

export { checkMysqlUrl } from './mysql-connection.js';
export { checkMysqlConnection, MYSQL_CONNECT_TIMEOUT_MS } from './mysql-server.js';

export interface MysqlConfig {
  /** mysql:// (or mariadb://) URL naming one database, possibly with a password. */
  url: string;
}

/** How long the restore's RENAME waits for other sessions' locks on the target before giving up with nothing changed. */
export const MYSQL_RESTORE_LOCK_WAIT_S = 60;

/**
 * mariadb-dump's options, beyond the connection's. A consistent InnoDB snapshot without locks
 * (--single-transaction); every object (routines, triggers, events); binary columns as hex so
 * the dump is plain text the client loads unchanged; no header comments (they hold the server's
 * address and the time) nor dump date, and rows in primary key order, so unchanged data gives
 * the same bytes, hence the same chunks; no --databases, so no CREATE DATABASE / USE: the dump
 * loads into any database (the restore's scratch one). --no-tablespaces: MySQL 8 would want
 * the PROCESS privilege for them, and they do not belong to one database anyway.
 */
export const DUMP_OPTIONS = [
  '--single-transaction',
  '--routines',
  '--triggers',
  '--events',
  '--hex-blob',
  '--skip-dump-date',
  '--skip-comments',
  '--order-by-primary',
  '--no-tablespaces',
  '--default-character-set=utf8mb4',
  '--max-allowed-packet=1073741824',
];

/**
 * The dump's fixed header (SET statements) is written before mariadb-dump starts its
 * transaction; the first byte after its last line comes from inside the snapshot.
 */
const HEADER_END = Buffer.from('SQL_NOTES=0 */;\n');

/** Counts a dump's bytes for progress, and calls `onConsistent` once bytes past the header arrive. */
async function* watched(source: AsyncIterable<Buffer>, onBytes: (n: number) => void, onConsistent?: () => void): AsyncGenerator<Buffer> {
  let n = 0;
  let head: Buffer | null = onConsistent ? Buffer.alloc(0) : null;
  for await (const b of source) {
    n += b.length;
    onBytes(n);
    if (head) {
      head = Buffer.concat([head, b]);
      const at = head.indexOf(HEADER_END);
      if (at >= 0 && head.length > at + HEADER_END.length) {
        head = null;
        onConsistent?.();
      } else if (head.length > 1 << 20) head = null; // not a dump we know: its consistent point is its end
    }
    yield b;
  }
}

export interface MysqlDriverOptions {
  connectTimeoutMs?: number;
  lockWaitTimeoutS?: number;
}

function serverOptions(ctx: BackupContext, opts: MysqlDriverOptions): MysqlServerOptions {
  return {
    ...(ctx.targets && { targets: ctx.targets }),
    ...(ctx.log && { log: ctx.log }),
    ...(opts.connectTimeoutMs !== undefined && { connectTimeoutMs: opts.connectTimeoutMs }),
  };
}

/** The driver with other timeouts (tests); `mysqlDriver` is the service's. */
export function createMysqlDriver(opts: MysqlDriverOptions = {}): ComponentDriver<MysqlConfig> {
  const lockWaitTimeoutS = opts.lockWaitTimeoutS ?? MYSQL_RESTORE_LOCK_WAIT_S;
  return {
    type: 'mysql',
    archive: { extension: 'sql', mediaType: 'application/sql' },

    /**
     * mariadb-dump's SQL straight into the chunker. Before it runs, one connection checks the
     * target policy, the database and the user's rights (so those failures get clear messages),
     * and picks the checked address the dump then connects to. The manifest ends only once the
     * dump exited 0; any failure, or an abort (which kills the tool), errors it.
     */
    backup(config, ctx) {
      let logical = 0;
      async function* manifest(): AsyncGenerator<Buffer> {
        const conn = parseMysqlUrl(config.url);
        const tools = mysqlTools();
        async function* dump(): AsyncGenerator<Buffer> {
          const server = await withMysql(conn, serverOptions(ctx, opts), async (s) => {
            await preflight(s, 'backup');
            return { conn: s.conn, address: s.address };
          });
          const [cmd, args] = tools.dumpCommand([...toolArgs(server), ...DUMP_OPTIONS, '--', conn.database]);
          yield* spawnChunks(cmd, args, {
            label: tools.dump,
            env: toolEnv(server),
            redact: conn.redact,
            describe: (stderr) => describeMysqlToolFailure(stderr, conn.database),
            ...(ctx.log ? { log: ctx.log } : {}),
            ...(ctx.signal ? { signal: ctx.signal } : {}),
          });
        }
        const onBytes = (n: number) => ctx.onProgress?.({ bytes_done: n, bytes_total: null, files_done: 0, files_total: null });
        const ref = await ctx.sink.writeStream(watched(dump(), onBytes, ctx.onConsistent));
        logical = ref.bytes;
        yield* encodeStreamManifest(ref);
      }
      return { manifest: manifest(), logicalBytes: () => logical };
    },

    /**
     * Loads the dump into a scratch database `<db>__bk_r_<random>` on the same server through the
     * client (which alone understands the dump's DELIMITER blocks; --sandbox: no file or shell
     * commands, whatever the dump holds), and only once the load succeeded AND every chunk was
     * verified and the byte count is the manifest's, swaps it in (mysql-swap.ts: one RENAME
     * TABLE). Any failure before that swap leaves the target exactly as it was; the scratch
     * database is dropped in every case.
     */
    async restore(config, ctx): Promise<void> {
      const conn = parseMysqlUrl(config.url);
      const ref = await decodeStreamManifest(ctx.manifest);
      const server = await connectMysql(conn, serverOptions(ctx, opts));
      const { sql } = server;
      const tag = randomBytes(4).toString('hex');
      const scratch = `${conn.database}__bk_r_${tag}`;
      const old = `${conn.database}__bk_o_${tag}`;
      const created: string[] = [];
      // Until the swap, an abort (shutdown) closes the connection, so a server that stopped
      // answering cannot hold the restore; from the swap on, the connection is left to finish
      // (the RENAME is one statement, and what follows puts the other objects back). Scratch
      // databases an aborted restore could not drop are swept by the next restore of the target.
      let swapping = false;
      let closed = false;
      const onAbort = () => {
        if (swapping) return;
        closed = true;
        sql.destroy();
      };
      ctx.signal?.addEventListener('abort', onAbort, { once: true });
      try {
        await preflight(server, 'restore');
        await sweepLeftovers(sql, conn.database, ctx);
        const [schemaRows] = await sql.query<mysql.RowDataPacket[]>(
          'SELECT DEFAULT_CHARACTER_SET_NAME AS cs, DEFAULT_COLLATION_NAME AS co FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?',
          [conn.database],
        );
        // The scratch databases get the target's defaults, which routines and views take as theirs.
        const charset = /^\w+$/.test(String(schemaRows[0]?.cs)) ? String(schemaRows[0]?.cs) : 'utf8mb4';
        const collation = /^\w+$/.test(String(schemaRows[0]?.co)) ? String(schemaRows[0]?.co) : 'utf8mb4_general_ci';
        ctx.signal?.throwIfAborted();
        for (const db of [scratch, old]) {
          await sql.query(`CREATE DATABASE ${q(db)} CHARACTER SET ${charset} COLLATE ${collation}`);
          created.push(db);
        }
        await load(server, scratch, ref, ctx);
        ctx.signal?.throwIfAborted();
        swapping = true;
        await swapIntoTarget(sql, conn.database, scratch, { lockWaitTimeoutS, tag, old });
      } catch (err) {
        if (err instanceof ComponentError || (err as Error).name === 'AbortError' || (err as Error).name === 'IntegrityError') throw err;
        throw toComponentError(err, conn, ctx);
      } finally {
        ctx.signal?.removeEventListener('abort', onAbort);
        // The scratch databases are dropped on a connection that still works: a fresh one when the abort closed ours.
        const cleanup = closed && created.length > 0 ? await connectMysql(conn, { ...serverOptions(ctx, opts), connectTimeoutMs: 5000 }).catch(() => null) : server;
        for (const db of created) if (cleanup) await dropScratch(cleanup.sql, db, ctx);
        if (cleanup && cleanup !== server) cleanup.sql.destroy();
        sql.destroy();
      }
    },

    async exportArchive(manifest, source) {
      const ref = await decodeStreamManifest(manifest);
      return source.read(ref.chunks);
    },
  };

  async function load(server: MysqlServer, scratch: string, ref: { chunks: string[]; bytes: number }, ctx: RestoreContext): Promise<void> {
    const { conn } = server;
    const tools = mysqlTools();
    const counted = hashArtifact(ctx.source.read(ref.chunks), (got) => {
      if (got.bytes !== ref.bytes) throw new ArtifactChangedError(`the dump read back has ${got.bytes} bytes, ${ref.bytes} recorded; nothing was restored`);
    });
    const input = shielded(pipeline(counted.stream, triggerQualifierFilter(), () => {}));
    const args = [
      ...toolArgs(server),
      ...(tools.client === 'mariadb' ? ['--sandbox'] : []),
      '--binary-mode',
      '--batch',
      '--max-allowed-packet=1073741824',
      `--connect-timeout=${Math.ceil((opts.connectTimeoutMs ?? MYSQL_CONNECT_TIMEOUT_MS) / 1000)}`,
      `--database=${scratch}`,
    ];
    await runWithInput(tools.client, args, input, {
      label: 'loading the dump',
      env: toolEnv(server),
      redact: conn.redact,
      describe: (stderr) => describeMysqlToolFailure(stderr, conn.database),
      ...(ctx.log ? { log: ctx.log } : {}),
      ...(ctx.signal ? { signal: ctx.signal } : {}),
    });
    // Nothing is swapped in unless every byte the client got was verified and counted.
    await counted.check();
  }
}

/**
 * `src` as a stream that errors only with `src`'s own errors. The client stops reading at the
 * first statement that fails; the EPIPE that follows must not pass for the input's failure
 * (runWithInput lets an input error win over the tool's complaint, which is the one that tells
 * what went wrong).
 */
function shielded(src: Readable): Readable {
  let sourceError: Error | null = null;
  const out = new Readable({
    highWaterMark: 1 << 20,
    read() {
      src.resume();
    },
    destroy(_err, callback) {
      src.destroy();
      callback(sourceError);
    },
  });
  src.on('data', (chunk: Buffer) => {
    if (!out.push(chunk)) src.pause();
  });
  src.once('end', () => out.push(null));
  src.once('error', (err) => {
    sourceError = err;
    out.destroy(err);
  });
  return out;
}

function toComponentError(err: unknown, conn: MysqlConnection, ctx: BackupContext): ComponentError {
  const raw = conn.redact(String((err as Error | undefined)?.message ?? err));
  ctx.log?.debug({ tool: 'mysql2', error: raw }, 'mysql restore failed');
  // Re-use the categories of the connection's errors (no addresses, no password).
  return new ComponentError(`restore failed: ${describeMysqlError(err, conn.database)}`, { detail: raw });
}


/**
 * Drops the scratch database, after a failure too. A client still dying after an abort may hold
 * its tables for a moment; the drop waits for it (bounded).
 */
async function dropScratch(sql: mysql.Connection, scratch: string, ctx: BackupContext): Promise<void> {
  try {
    await sql.query('SET SESSION lock_wait_timeout = 120');
    await sql.query(`DROP DATABASE IF EXISTS ${q(scratch)}`);
  } catch (err) {
    ctx.log?.debug({ tool: 'mysql2', error: String((err as Error).message) }, 'dropping the scratch database failed');
  }
}

/**
 * Drops the scratch databases of this target's earlier restores that died before their own
 * cleanup (a crash, a killed worker). Safe even against a restore still running on the same
 * target: its scratch database dropped before its RENAME fails that RENAME (nothing restored);
 * after the RENAME its scratch databases hold only what it drops anyway.
 */
async function sweepLeftovers(sql: mysql.Connection, database: string, ctx: BackupContext): Promise<void> {
  const [rows] = await sql.query<mysql.RowDataPacket[]>('SELECT SCHEMA_NAME AS name FROM information_schema.SCHEMATA WHERE LEFT(SCHEMA_NAME, ?) = ?', [database.length + 5, `${database}__bk_`]);
  const mine = new RegExp(`^${database.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}__bk_[ro]_[0-9a-f]{8}$`);
  for (const r of rows) {
    const name = String(r.name);
    if (mine.test(name)) await dropScratch(sql, name, ctx);
  }
}

export const mysqlDriver: ComponentDriver<MysqlConfig> = createMysqlDriver();
