import { accessSync, constants } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import mysql from 'mysql2/promise';
import { parseMysqlUrl, type MysqlConnection } from './mysql-connection.js';
import { databaseMissing, describeMysqlError } from './mysql-errors.js';
import { missingPrivileges, parseGrants, BACKUP_PRIVILEGES, RESTORE_PRIVILEGES, scratchPattern } from './mysql-grants.js';
import type { TargetPolicy } from './postgres-targets.js';
import { childEnv, type ToolLog } from './process.js';
import { ComponentError } from './types.js';

/** How long a connection attempt to a tenant's server may take before it counts as unreachable. */
export const MYSQL_CONNECT_TIMEOUT_MS = 10_000;

export interface MysqlServerOptions {
  /** The operator's target policy; when set, only the addresses it returns are ever connected to. */
  targets?: TargetPolicy;
  connectTimeoutMs?: number;
  log?: ToolLog;
  /** Aborting it closes the connection: a query in progress fails instead of waiting on a server that stopped answering. */
  signal?: AbortSignal;
}

/** A live mysql2 connection to the tenant's server, and the one address it reached (which the tools then use too). */
export interface MysqlServer {
  conn: MysqlConnection;
  address: string;
  sql: mysql.Connection;
}

/** The addresses the target policy allows for the URL's server (the URL's own host without a policy). */
async function addressesFor(conn: MysqlConnection, targets: TargetPolicy | undefined): Promise<string[]> {
  if (!targets) return [conn.host];
  const verdict = await targets.checkServer({ host: conn.host, port: conn.port });
  if ('problem' in verdict) throw new ComponentError(`mysql target refused: ${verdict.problem}`);
  return verdict.addresses;
}

function failure(err: unknown, conn: MysqlConnection, log?: ToolLog): ComponentError {
  const raw = conn.redact(String((err as Error | undefined)?.message ?? err));
  log?.debug({ tool: 'mysql2', code: (err as { code?: string } | undefined)?.code, error: raw }, 'mysql connection failed');
  return new ComponentError(describeMysqlError(err, conn.database), { detail: raw });
}

const UNANSWERED = new Set(['ECONNREFUSED', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET']);

/**
 * Connects to the first of the checked addresses that answers (a server that answered, even
 * with a refusal, ends the search). No database is selected, so that a missing database and
 * missing rights can be told apart by `preflight`. With TLS the socket goes to the checked
 * address while the certificate is checked against the URL's host name.
 */
export async function connectMysql(conn: MysqlConnection, opts: MysqlServerOptions = {}): Promise<MysqlServer> {
  const addresses = await addressesFor(conn, opts.targets);
  const connectTimeout = opts.connectTimeoutMs ?? MYSQL_CONNECT_TIMEOUT_MS;
  let last: unknown = new Error('no address');
  for (const address of addresses) {
    const tls = conn.ssl !== 'off';
    try {
      const sql = await mysql.createConnection({
        host: tls ? conn.host : address,
        port: conn.port,
        user: conn.user,
        password: conn.password,
        connectTimeout,
        charset: 'utf8mb4',
        supportBigNumbers: true,
        bigNumberStrings: true,
        dateStrings: true,
        multipleStatements: false,
        ...(tls ? { stream: () => net.connect({ host: address, port: conn.port }), ssl: { rejectUnauthorized: conn.ssl === 'verify', verifyIdentity: conn.ssl === 'verify' } } : {}),
      });
      sql.on('error', () => {}); // a connection lost later fails the query in progress; no unhandled 'error'
      if (opts.signal) {
        const signal = opts.signal;
        if (signal.aborted) sql.destroy();
        else {
          const onAbort = () => sql.destroy();
          signal.addEventListener('abort', onAbort, { once: true });
          sql.once('end', () => signal.removeEventListener('abort', onAbort));
        }
      }
      return { conn, address, sql };
    } catch (err) {
      last = err;
      if (!UNANSWERED.has((err as { code?: string }).code ?? '')) break;
    }
  }
  throw failure(last, conn, opts.log);
}

/** Runs `fn` on a connection to the URL's server, closed afterwards; mysql2 failures become ComponentErrors. */
export async function withMysql<T>(conn: MysqlConnection, opts: MysqlServerOptions, fn: (server: MysqlServer) => Promise<T>): Promise<T> {
  const server = await connectMysql(conn, opts);
  try {
    return await fn(server);
  } catch (err) {
    if (err instanceof ComponentError) throw err;
    throw failure(err, conn, opts.log);
  } finally {
    server.sql.destroy();
  }
}

function list(privileges: string[]): string {
  return `privilege${privileges.length > 1 ? 's' : ''} ${privileges.join(', ')}`;
}

/**
 * Refuses, before any dump or load, a database that does not exist or a user without the rights
 * the work needs (from SHOW GRANTS: global and database-level grants, including the active
 * roles' as the server lists them; table-level grants are not counted). A backup needs
 * SELECT, SHOW VIEW, LOCK TABLES, TRIGGER and EVENT on the database; a restore needs the rights
 * to rebuild every object there and in its scratch databases `<db>__bk_*`.
 */
export async function preflight(server: MysqlServer, purpose: 'backup' | 'restore'): Promise<void> {
  const { conn, sql } = server;
  const [rows] = await sql.query<mysql.RowDataPacket[]>('SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?', [conn.database]);
  const [grantRows] = await sql.query<mysql.RowDataPacket[]>('SHOW GRANTS');
  const grants = parseGrants(grantRows.map((r) => String(Object.values(r)[0])));
  const needed = purpose === 'backup' ? BACKUP_PRIVILEGES : RESTORE_PRIVILEGES;
  const missing = missingPrivileges(grants, conn.database, needed);
  if (rows.length === 0) {
    // A database the user has no right on at all is invisible to it, existing or not.
    if (missing.length === needed.length) throw new ComponentError(`missing ${list(missing)} on database ${conn.database}`);
    throw new ComponentError(databaseMissing(conn.database));
  }
  if (missing.length > 0) throw new ComponentError(`missing ${list(missing)} on database ${conn.database}`);
  if (purpose === 'restore') {
    const scratch = missingPrivileges(grants, `${conn.database}__bk_r_00000000`, RESTORE_PRIVILEGES);
    if (scratch.length > 0) {
      throw new ComponentError(`missing ${list(scratch)} on the scratch databases a restore creates (${conn.database}__bk_*; grant them ON ${scratchPattern(conn.database)}.*)`);
    }
  }
}

/**
 * The save-time check of a mysql component: the URL's shape, the target policy, a connection
 * (within the connect timeout), the database and the rights a backup needs (and a restore's too
 * when `restore` is set). Null when all is well, else the problem as the tenant should read it.
 */
export async function checkMysqlConnection(url: string, opts: MysqlServerOptions & { restore?: boolean } = {}): Promise<string | null> {
  try {
    const conn = parseMysqlUrl(url);
    await withMysql(conn, opts, async (server) => {
      await preflight(server, 'backup');
      if (opts.restore) await preflight(server, 'restore');
    });
    return null;
  } catch (err) {
    if (err instanceof ComponentError) return err.message;
    throw err;
  }
}

/** The connection options every tool gets: no option file of the service user is read, TCP only (never a local socket), the checked address. */
export function toolArgs(server: Pick<MysqlServer, 'conn' | 'address'>): string[] {
  const { conn, address } = server;
  return ['--no-defaults', '--protocol=TCP', `--host=${address}`, `--port=${conn.port}`, `--user=${conn.user}`, ...(conn.ssl !== 'off' ? ['--ssl'] : [])];
}

/**
 * The tools' environment: childEnv() plus MYSQL_PWD. The password travels by environment, as
 * PGPASSWORD does for the postgres tools: /proc/<pid>/environ is readable by the service's own
 * user only, and unlike a --defaults-extra-file nothing is written to disk (nothing to leak on
 * a crash, nothing to clean up) and no quoting rules of option files apply to the password.
 */
export function toolEnv(server: Pick<MysqlServer, 'conn'>): NodeJS.ProcessEnv {
  return childEnv(server.conn.password ? { MYSQL_PWD: server.conn.password } : {});
}

function onPath(name: string): boolean {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    try {
      accessSync(path.join(dir, name), constants.X_OK);
      return true;
    } catch {
      // next
    }
  }
  return false;
}

export interface MysqlTools {
  dump: string;
  client: string;
  /**
   * The command and arguments that run the dump tool with a 1 MiB stdout buffer (coreutils
   * stdbuf, when installed): the tool's stdio writes 8 KiB at a time into a pipe, and reading
   * 20 000 such pieces costs Node more than the dump itself (measured: 1.5 s against 0.95 s
   * for 147 MB); with the buffer the pipe is read in 64 KiB pieces, as fast as the tool
   * writes to /dev/null.
   */
  dumpCommand(args: string[]): [string, string[]];
}

let tools: MysqlTools | undefined;

/** MariaDB's tool names, or MySQL's where MariaDB's are absent. */
export function mysqlTools(): MysqlTools {
  if (!tools) {
    const dump = onPath('mariadb-dump') ? 'mariadb-dump' : 'mysqldump';
    const stdbuf = onPath('stdbuf');
    tools = {
      dump,
      client: onPath('mariadb') ? 'mariadb' : 'mysql',
      dumpCommand: (args) => (stdbuf ? ['stdbuf', ['-o1M', dump, ...args]] : [dump, args]),
    };
  }
  return tools;
}
