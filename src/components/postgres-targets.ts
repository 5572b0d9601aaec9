import type { PostgresConnection } from './postgres-connection.js';
import { createTargetGuard, serverOf, type AllowedHosts, type TargetGuard } from './targets.js';

export { parseAllowedHosts, type AllowedHosts } from './targets.js';

/**
 * Which servers tenants' database components (`postgres`, `mysql`, `redis`) may name: the generic
 * target guard (`targets.ts`: allow-list, resolve, pin) with the service's own PostgreSQL server
 * and Redis protected, plus, for `postgres`, what only a database knows. A backup connects
 * there and a restore DROPS EVERYTHING in that database first; tenant SQL (functions, CHECK
 * constraints, triggers) runs there as whoever the URL names. So the service's own server is
 * refused in every database unless the operator says otherwise (TARGET_ALLOW_SERVICE_SERVER), and
 * the service's own database always.
 */
export interface TargetPolicy {
  /**
   * A problem fit for the tenant (`unresolved` when only DNS failed), or the addresses libpq must
   * use (PGHOSTADDR): the very addresses that were checked, so a DNS answer that changes
   * afterwards cannot redirect the connection.
   */
  check(conn: PostgresConnection): Promise<TargetCheck>;
  /**
   * The same rules for any other server (a `mysql` or `redis` component): the allow-list, the
   * service's own PostgreSQL server and its Redis refused under any name or address. The driver
   * connects only to the addresses returned, in order.
   */
  checkServer(target: { host: string; port: number }): Promise<TargetCheck>;
}

export type TargetCheck = { problem: string; unresolved?: true } | { addresses: string[] };

/**
 * The connection with libpq pinned to the checked addresses, tried in order like libpq tries a
 * name's addresses (`host` is repeated: libpq pairs the two lists; it still names the server for TLS).
 */
export function pinAddresses(conn: PostgresConnection, addresses: string[]): PostgresConnection {
  const host = conn.env.PGHOST ?? '';
  return { ...conn, env: { ...conn.env, PGHOST: addresses.map(() => host).join(','), PGHOSTADDR: addresses.join(',') } };
}

interface OwnDatabase {
  host: string;
  port: number;
  database: string;
}

/** Host, port and database of DATABASE_URL; a socket path (or no host) is this machine. */
export function ownDatabaseOf(databaseUrl: string): OwnDatabase {
  const { host, port } = serverOf(databaseUrl, 5432);
  const u = new URL(databaseUrl);
  return { host, port, database: decodeURIComponent(u.pathname.replace(/^\//, '')) || 'postgres' };
}

const OWN_SERVER = "the backup service's own database server";
const OWN_DATABASE = "that is the backup service's own database";
const OWN_SERVER_REFUSED = `that is ${OWN_SERVER}`;

export function createTargetPolicy(opts: {
  allowedHosts: AllowedHosts;
  ownDatabaseUrl: string;
  /** The service's Redis: never a tenant's target either. */
  ownRedisUrl?: string;
  /** TARGET_ALLOW_SERVICE_SERVER: tenants may name other databases on the service's own server. */
  allowServiceServer?: boolean;
  /** DNS, replaceable in tests. */
  resolve?: (host: string) => Promise<string[]>;
}): TargetPolicy {
  const own = ownDatabaseOf(opts.ownDatabaseUrl);
  const guard: TargetGuard = createTargetGuard({
    allowedHosts: opts.allowedHosts,
    protectedServers: [
      { host: own.host, port: own.port, what: OWN_SERVER, allowed: opts.allowServiceServer === true },
      ...(opts.ownRedisUrl ? [{ ...serverOf(opts.ownRedisUrl, 6379), what: "the backup service's own Redis server" }] : []),
    ],
    ...(opts.resolve ? { resolve: opts.resolve } : {}),
  });
  const verdictOf = (verdict: Awaited<ReturnType<TargetGuard['check']>>): TargetCheck =>
    'problem' in verdict ? (verdict.unresolved ? { problem: verdict.problem, unresolved: true } : { problem: verdict.problem }) : { addresses: verdict.addresses };
  return {
    async checkServer(target) {
      const verdict = await guard.check(target);
      // TARGET_ALLOW_SERVICE_SERVER is about tenants' PostgreSQL databases only.
      if ('addresses' in verdict && verdict.ownServer === OWN_SERVER && target.port === own.port) return { problem: OWN_SERVER_REFUSED };
      return verdictOf(verdict);
    },
    async check(conn) {
      const verdict = await guard.check({ host: conn.env.PGHOST ?? '', port: Number(conn.env.PGPORT ?? 5432) });
      if (verdict.ownServer === OWN_SERVER && conn.database === own.database) return { problem: OWN_DATABASE };
      return verdictOf(verdict);
    },
  };
}
