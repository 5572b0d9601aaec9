import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';
import { networkInterfaces } from 'node:os';

/**
 * The one guard for every outbound connection a tenant chooses (database servers today, webhooks
 * later): allow-list, resolve, pin. A name is resolved once; the addresses that pass are the only
 * ones the caller may connect to, so a DNS answer that changes afterwards cannot redirect it.
 *
 * By default only public addresses pass: loopback, private, CGNAT, link-local, cloud metadata,
 * documentation, unspecified, multicast and reserved ranges are refused unless the operator lists
 * them (TARGET_ALLOWED_HOSTS). The service's own servers (its PostgreSQL, its Redis) are refused
 * under any name or address, whatever the list says.
 */

export type TargetVerdict =
  /** A problem fit for the tenant; `unresolved` when only DNS failed (the name may exist later); `ownServer` names the protected server it is. */
  | { problem: string; unresolved?: true; ownServer?: string }
  /** The addresses to connect to: the very ones that were checked. `ownServer` names a protected server that was let through (TARGET_ALLOW_SERVICE_SERVER). */
  | { addresses: string[]; ownServer?: string };

export interface TargetGuard {
  check(target: { host: string; port: number }): Promise<TargetVerdict>;
}

export interface AllowedHosts {
  /** Public addresses pass (`public`, the default; `*` is read the same way). */
  public: boolean;
  names: Set<string>;
  /** '*.example.com' is kept as '.example.com' */
  suffixes: string[];
  addresses: BlockList;
}

/** The allow-list when the operator sets none. */
export const DEFAULT_ALLOWED_HOSTS = 'public';

const HOST_NAME = /^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,62}[a-z0-9_])?)*$/;

/**
 * Parses a comma-separated list of `public` (every public address), host names, `*.domain`
 * wildcards, IP addresses and CIDR ranges. `*` is an old spelling of `public`: it no longer lets
 * loopback or private addresses through.
 */
export function parseAllowedHosts(text: string): AllowedHosts {
  const allowed: AllowedHosts = { public: false, names: new Set(), suffixes: [], addresses: new BlockList() };
  const entries = text.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
  if (entries.length === 0) throw new Error('must list at least one host (or public)');
  for (const entry of entries) {
    if (entry === 'public' || entry === '*') {
      allowed.public = true;
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
      throw new Error(`"${entry}" is neither public, a host name, a *.domain wildcard, an IP address nor a CIDR range`);
    }
  }
  return allowed;
}

function blockList(v4: string[], v6: string[], singles: string[] = []): BlockList {
  const list = new BlockList();
  for (const range of v4) {
    const [a, p] = range.split('/');
    list.addSubnet(a as string, Number(p), 'ipv4');
  }
  for (const range of v6) {
    const [a, p] = range.split('/');
    list.addSubnet(a as string, Number(p), 'ipv6');
  }
  for (const ip of singles) list.addAddress(ip, isIP(ip) === 6 ? 'ipv6' : 'ipv4');
  return list;
}

/** Cloud metadata and link-local service endpoints: never reachable through a listed name, only through a listed address or range. */
const METADATA = blockList(
  ['169.254.169.0/24', '169.254.170.0/24'],
  [],
  ['100.100.100.200', '192.0.0.192', 'fd00:ec2::254', 'fd00:ec2::23', 'fd20:ce::254'],
);

/** Never a database: this-network, unspecified, multicast, broadcast and reserved space. Only a listed address or range lifts it. */
const NEVER_BY_NAME = blockList(['0.0.0.0/8', '224.0.0.0/4', '240.0.0.0/4'], ['::/128', 'ff00::/8']);

/** Not public (IANA special-purpose registries); refused unless listed. */
const NOT_PUBLIC = blockList(
  [
    '0.0.0.0/8', '10.0.0.0/8', '100.64.0.0/10', '127.0.0.0/8', '169.254.0.0/16', '172.16.0.0/12', '192.0.0.0/24',
    '192.0.2.0/24', '192.88.99.0/24', '192.168.0.0/16', '198.18.0.0/15', '198.51.100.0/24', '203.0.113.0/24',
    '224.0.0.0/4', '240.0.0.0/4',
  ],
  [
    '::/128', '::1/128', '64:ff9b::/96', '64:ff9b:1::/48', '100::/64', '2001::/23', '2001:db8::/32', '2002::/16',
    '3fff::/20', 'fc00::/7', 'fe80::/10', 'fec0::/10', 'ff00::/8',
  ],
);

/**
 * An IPv4-mapped IPv6 address is the IPv4 address it maps, judged (and pinned) as such, however it
 * is spelled: `::ffff:10.0.0.1`, `::ffff:a00:1` (the WHATWG URL parser turns `[::ffff:127.0.0.1]`
 * into `[::ffff:7f00:1]`), `0:0:0:0:0:ffff:a00:1`. Otherwise the address, lower-cased.
 */
export function normalizeAddress(ip: string): string {
  const a = ip.toLowerCase();
  if (isIP(a) !== 6) return a;
  const g = ipv6Groups(a);
  if (g && g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) {
    const [hi, lo] = [g[6] as number, g[7] as number];
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return a;
}

/** The eight 16-bit groups of a valid IPv6 address (null with a zone index, which no mapped address has). */
function ipv6Groups(a: string): number[] | null {
  if (a.includes('%')) return null;
  let text = a;
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [b0, b1, b2, b3] = v4.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((b0 << 8) | b1).toString(16)}:${((b2 << 8) | b3).toString(16)}`;
  }
  const parts = text.split('::');
  const groups = (s: string | undefined) => (s ? s.split(':').map((h) => parseInt(h, 16)) : []);
  const head = groups(parts[0]);
  if (parts.length === 1) return head.length === 8 ? head : null;
  const tail = groups(parts[1]);
  return [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
}

const familyOf = (ip: string) => (isIP(ip) === 6 ? 'ipv6' : 'ipv4');
const inList = (list: BlockList, ip: string) => list.check(ip, familyOf(ip));

export function isPublicAddress(ip: string): boolean {
  return !inList(NOT_PUBLIC, normalizeAddress(ip));
}

/** Addresses that reach this machine whatever a server listens on: loopback, unspecified, every interface address. */
export function isLocalAddress(ip: string): boolean {
  const a = normalizeAddress(ip);
  if (isIP(a) === 4 && (a.startsWith('127.') || a.startsWith('0.'))) return true;
  if (a === '::1' || a === '::') return true;
  return Object.values(networkInterfaces()).some((list) => list?.some((i) => normalizeAddress(i.address.replace(/%.*$/, '')) === a));
}

export async function resolveHost(host: string): Promise<string[]> {
  if (isIP(host)) return [host];
  return (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);
}

/** A server the tenants must never reach (the service's own PostgreSQL, its Redis). */
export interface ProtectedServer {
  host: string;
  port: number;
  /** For the refusal: "the backup service's own database server". */
  what: string;
  /** TARGET_ALLOW_SERVICE_SERVER lets tenants onto it (the caller still guards what matters most there). */
  allowed?: boolean;
}

/** Host and port of a server URL (postgresql://, redis://); a socket path, or no host, is this machine. */
export function serverOf(url: string, defaultPort: number): { host: string; port: number } {
  const u = new URL(url);
  const hostParam = u.searchParams.get('host');
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1') || (hostParam && !hostParam.startsWith('/') ? hostParam : '127.0.0.1');
  const port = Number(u.port || u.searchParams.get('port') || defaultPort);
  return { host, port };
}

export function createTargetGuard(opts: {
  allowedHosts: AllowedHosts;
  /** The variable operators set, for refusals. */
  setting?: string;
  protectedServers?: ProtectedServer[];
  /** DNS, replaceable in tests. */
  resolve?: (host: string) => Promise<string[]>;
}): TargetGuard {
  const resolve = opts.resolve ?? resolveHost;
  const setting = opts.setting ?? 'TARGET_ALLOWED_HOSTS';
  const { allowedHosts } = opts;
  const servers = (opts.protectedServers ?? []).map((server) => {
    let known: Promise<{ addresses: Set<string>; local: boolean }> | undefined;
    const addresses = () =>
      (known ??= resolve(server.host).then(
        (list) => ({ addresses: new Set(list.map(normalizeAddress)), local: list.some(isLocalAddress) }),
        () => ({ addresses: new Set<string>(), local: true }), // cannot tell: assume this machine, the safe side
      ));
    return { ...server, addresses };
  });
  const nameListed = (host: string) => {
    const name = host.toLowerCase().replace(/\.$/, '');
    return allowedHosts.names.has(name) || allowedHosts.suffixes.some((s) => name.endsWith(s));
  };
  const addressAllowed = (ip: string, byName: boolean) => {
    if (inList(allowedHosts.addresses, ip)) return true; // a listed address or range lifts every default denial
    if (inList(METADATA, ip) || inList(NEVER_BY_NAME, ip)) return false;
    if (byName) return true;
    return allowedHosts.public && !inList(NOT_PUBLIC, ip);
  };

  return {
    async check({ host, port }) {
      const refused = { problem: `host ${host} is not among the hosts the operator allows (${setting})` };
      const byName = nameListed(host);
      // Names only: a name not listed is refused before any DNS lookup.
      if (!byName && !allowedHosts.public && allowedHosts.addresses.rules.length === 0) return refused;
      let resolved: string[];
      try {
        resolved = (await resolve(host)).map(normalizeAddress);
      } catch {
        return { problem: `host ${host} does not resolve`, unresolved: true };
      }
      if (resolved.length === 0) return { problem: `host ${host} does not resolve`, unresolved: true };
      // Every address of the name, not only those that would be used: a name that also points at
      // one of the service's own servers is refused outright.
      let ownServer: string | undefined;
      const ownAddresses = new Set<string>();
      for (const server of servers) {
        if (server.port !== port) continue;
        const own = await server.addresses();
        const matching = resolved.filter((ip) => own.addresses.has(ip) || (own.local && isLocalAddress(ip)));
        if (matching.length === 0) continue;
        if (!server.allowed) return { problem: `that is ${server.what}`, ownServer: server.what };
        ownServer ??= server.what;
        for (const ip of matching) ownAddresses.add(ip);
      }
      // TARGET_ALLOW_SERVICE_SERVER is the operator's word for that server, loopback or not.
      const usable = resolved.filter((ip) => ownAddresses.has(ip) || addressAllowed(ip, byName));
      if (usable.length === 0) return refused;
      return ownServer !== undefined ? { addresses: usable, ownServer } : { addresses: usable };
    },
  };
}
