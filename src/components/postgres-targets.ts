import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { PostgresConnection } from './postgres-connection.js';

/**
 * Which PostgreSQL servers tenants' `postgres` components may name. A backup connects there and
 * a restore DROPS EVERYTHING in that database first, so a tenant must never reach the service's
 * own database, and an operator can confine tenants to known hosts (POSTGRES_ALLOWED_HOSTS).
 */
export interface PostgresTargetPolicy {
  /**
   * A problem fit for the tenant (`unresolved` when only DNS failed), or the addresses libpq must
   * use (PGHOSTADDR): the very addresses that were checked, so a DNS answer that changes
   * afterwards cannot redirect the connection.
   */
  check(conn: PostgresConnection): Promise<{ problem: string; unresolved?: true } | { addresses: string[] }>;
}

/**
 * The connection with libpq pinned to the checked addresses, tried in order like libpq tries a
 * name's addresses (`host` is repeated: libpq pairs the two lists; it still names the server for TLS).
 */
export function pinAddresses(conn: PostgresConnection, addresses: string[]): PostgresConnection {
  const host = conn.env.PGHOST ?? '';
  return { ...conn, env: { ...conn.env, PGHOST: addresses.map(() => host).join(','), PGHOSTADDR: addresses.join(',') } };
}

export interface AllowedHosts {
  any: boolean;
  names: Set<string>;
  /** '*.example.com' is kept as '.example.com' */
  suffixes: string[];
  addresses: BlockList;
}

const HOST_NAME = /^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,62}[a-z0-9_])?)*$/;

/** Parses `*` or a comma-separated list of host names, `*.domain` wildcards, IP addresses and CIDR ranges. */
export function parseAllowedHosts(text: string): AllowedHosts {
  const allowed: AllowedHosts = { any: false, names: new Set(), suffixes: [], addresses: new BlockList() };
  const entries = text.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
  if (entries.length === 0) throw new Error('must list at least one host (or * for any)');
  for (const entry of entries) {
    if (entry === '*') {
      allowed.any = true;
      continue;
    }
    const [address, prefix, extra] = entry.split('/');
    const family = isIP(address ?? '');
    if (family !== 0) {
      const type = family === 4 ? 'ipv4' : 'ipv6';
      if (extra !== undefined || (prefix !== undefined && !/^\d{1,3}$/.test(prefix)) || Number(prefix) > (family === 4 ? 32 : 128)) {
        throw new Error(`"${entry}" is not a valid address range`);
      }
      if (prefix === undefined) allowed.addresses.addAddress(address as string, type);
      else allowed.addresses.addSubnet(address as string, Number(prefix), type);
    } else if (entry.startsWith('*.') && HOST_NAME.test(entry.slice(2))) {
      allowed.suffixes.push(entry.slice(1));
    } else if (HOST_NAME.test(entry)) {
      allowed.names.add(entry);
    } else {
      throw new Error(`"${entry}" is neither a host name, a *.domain wildcard, an IP address nor a CIDR range`);
    }
  }
  return allowed;
}

const familyOf = (ip: string) => (isIP(ip) === 6 ? 'ipv6' : 'ipv4');

/** Addresses that reach this machine whatever the server listens on. */
function isLocalAddress(ip: string): boolean {
  const v4 = ip.replace(/^::ffff:/i, '');
  if (isIP(v4) === 4 && (v4.startsWith('127.') || v4 === '0.0.0.0')) return true;
  if (ip === '::1' || ip === '::') return true;
  return Object.values(networkInterfaces()).some((list) => list?.some((i) => i.address === ip || i.address === v4));
}

async function resolveAll(host: string): Promise<string[]> {
  if (isIP(host)) return [host];
  return (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);
}

interface OwnDatabase {
  host: string;
  port: number;
  database: string;
}

/** Host, port and database of DATABASE_URL; a socket path (or no host) is this machine. */
export function ownDatabaseOf(databaseUrl: string): OwnDatabase {
  const u = new URL(databaseUrl);
  const hostParam = u.searchParams.get('host');
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1') || (hostParam && !hostParam.startsWith('/') ? hostParam : '127.0.0.1');
  const port = Number(u.port || u.searchParams.get('port') || 5432);
  return { host, port, database: decodeURIComponent(u.pathname.replace(/^\//, '')) || 'postgres' };
}

export function createPostgresTargetPolicy(opts: {
  allowedHosts: AllowedHosts;
  ownDatabaseUrl: string;
  /** DNS, replaceable in tests. */
  resolve?: (host: string) => Promise<string[]>;
}): PostgresTargetPolicy {
  const resolve = opts.resolve ?? resolveAll;
  const own = ownDatabaseOf(opts.ownDatabaseUrl);
  let ownAddresses: Promise<{ addresses: Set<string>; local: boolean }> | undefined;
  const ownServer = () => {
    ownAddresses ??= resolve(own.host).then(
      (list) => ({ addresses: new Set(list), local: list.some(isLocalAddress) }),
      () => ({ addresses: new Set<string>(), local: true }), // cannot tell: assume this machine, the safe side
    );
    return ownAddresses;
  };
  const { allowedHosts } = opts;
  const nameAllowed = (host: string) => {
    const name = host.toLowerCase().replace(/\.$/, '');
    return allowedHosts.any || allowedHosts.names.has(name) || allowedHosts.suffixes.some((s) => name.endsWith(s));
  };

  return {
    async check(conn) {
      const host = conn.env.PGHOST ?? '';
      const port = Number(conn.env.PGPORT ?? 5432);
      const refused = { problem: `host ${host} is not among the hosts the operator allows (POSTGRES_ALLOWED_HOSTS)` };
      const byName = nameAllowed(host);
      if (!byName && allowedHosts.addresses.rules.length === 0) return refused;
      let addresses: string[];
      try {
        addresses = await resolve(host);
      } catch {
        return { problem: `host ${host} does not resolve`, unresolved: true };
      }
      const usable = byName ? addresses : addresses.filter((ip) => allowedHosts.addresses.check(ip, familyOf(ip)));
      if (usable.length === 0) return refused;
      if (conn.database === own.database && port === own.port) {
        const server = await ownServer();
        if (usable.some((ip) => server.addresses.has(ip) || (server.local && isLocalAddress(ip)))) {
          return { problem: "that is the backup service's own database" };
        }
      }
      return { addresses: usable };
    },
  };
}
