import { BlockList, isIP } from 'node:net';
import { createTargetGuard, normalizeAddress, resolveHost, serverOf, type AllowedHosts, type ProtectedServer } from '../components/targets.js';

/**
 * The SSRF guard for URLs the service calls on a tenant's behalf (webhooks; cluster hooks): the
 * one target guard of `components/targets.ts` (allow-list, resolve, pin) behind the checks only a
 * URL needs. Run at creation (422 with the problem) and again before every call, which then
 * connects only to the addresses returned here (see webhooks/sender.ts), so a DNS answer that
 * changes between the check and the call cannot redirect it.
 *
 * Refused: a scheme other than https (http only with WEBHOOK_ALLOW_HTTP), credentials in the URL,
 * names of cloud metadata services, and any host that is or resolves to a loopback, private,
 * link-local, metadata or otherwise non-public address, unless WEBHOOK_ALLOWED_HOSTS lists it.
 * The WHATWG URL parser has already turned every spelling of an IPv4 address (`127.1`,
 * `0x7f000001`, `2130706433`) into its dotted form; `[::ffff:127.0.0.1]`, which it writes
 * `[::ffff:7f00:1]`, is judged as the IPv4 address it maps (normalizeAddress), and the IPv6 forms
 * that embed an IPv4 address otherwise (`[::127.0.0.1]`) are refused. A refusal says what the
 * address is (loopback, private, link-local, metadata) without naming what a name resolved to.
 */
export type UrlVerdict =
  | { ok: true; url: URL; host: string; port: number; addresses: string[] }
  /** `unresolved`: only DNS failed; at delivery that is a failed attempt, retried later. */
  | { ok: false; problem: string; unresolved?: true };

export interface UrlGuard {
  check(url: string): Promise<UrlVerdict>;
}

/** What a refused address is, for the tenant's 422 (first match wins; IPv4 rules also match IPv4-mapped IPv6). */
const KINDS: [string, BlockList][] = [
  ['a loopback address', ranges(['127.0.0.0/8'], ['::1/128'])],
  ['a cloud metadata address', ranges(['169.254.169.254/32', '169.254.170.2/32', '100.100.100.200/32', '192.0.0.192/32'], ['fd00:ec2::254/128', 'fd00:ec2::23/128', 'fd20:ce::254/128'])],
  ['a link-local address', ranges(['169.254.0.0/16'], ['fe80::/10'])],
  ['a private address', ranges(['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10'], ['fc00::/7', 'fec0::/10'])],
  ['an unspecified address', ranges(['0.0.0.0/8'], ['::/128'])],
];

/**
 * IPv6 forms that embed an IPv4 address the target guard would judge as IPv6: the deprecated
 * IPv4-compatible `::a.b.c.d` (the URL parser writes `[::127.0.0.1]` as `[::7f00:1]`) and the
 * IPv4-translated `::ffff:0:a.b.c.d`. No receiver needs them; refused unless listed.
 */
const EMBEDDED_V4 = ranges([], ['::/96', '::ffff:0:0:0/96']);

function ranges(v4: string[], v6: string[]): BlockList {
  const list = new BlockList();
  for (const [family, rs] of [['ipv4', v4], ['ipv6', v6]] as const) {
    for (const r of rs) {
      const [a, p] = r.split('/');
      list.addSubnet(a as string, Number(p), family);
    }
  }
  return list;
}

const familyOf = (ip: string) => (isIP(ip) === 6 ? 'ipv6' : 'ipv4');

/** The kind of the first non-public address among `addresses`, or null when every one is public. */
function kindOf(addresses: string[]): string | null {
  for (const ip of addresses.map(normalizeAddress)) {
    const kind = KINDS.find(([, list]) => list.check(ip, familyOf(ip)));
    if (kind) return kind[0];
  }
  return null;
}

/** Names of metadata services, refused whatever they resolve to (a listed name does not lift it). */
const METADATA_NAMES = new Set(['metadata.google.internal', 'metadata.goog', 'metadata', 'instance-data', 'instance-data.ec2.internal', 'metadata.azure.com']);

export function createUrlGuard(opts: {
  allowedHosts: AllowedHosts;
  allowHttp: boolean;
  /** The service's own servers (its PostgreSQL, its Redis): never a target. */
  protectedServers?: ProtectedServer[];
  /** DNS, replaceable in tests. */
  resolve?: (host: string) => Promise<string[]>;
  /** The variable operators set, for refusals. */
  setting?: string;
}): UrlGuard {
  const { allowedHosts } = opts;
  const setting = opts.setting ?? 'WEBHOOK_ALLOWED_HOSTS';
  const resolve = opts.resolve ?? resolveHost;
  const listed = (ip: string) => allowedHosts.addresses.check(ip, familyOf(ip));
  // With names only in the list, the target guard refuses an unlisted name before any lookup; so does explain.
  const looksUp = (name: string) =>
    allowedHosts.public || allowedHosts.addresses.rules.length > 0 || allowedHosts.names.has(name) || allowedHosts.suffixes.some((s) => name.endsWith(s));
  /** Why a refused host is refused, in words a tenant can act on (the guard's own words otherwise). */
  const explain = async (host: string, problem: string): Promise<string> => {
    const literal = isIP(host) !== 0;
    if (!literal && !looksUp(host)) return problem;
    const addresses = literal ? [host] : await resolve(host).catch(() => []);
    const kind = kindOf(addresses);
    if (!kind) return problem;
    return `${literal ? `host ${host} is` : `host ${host} resolves to`} ${kind}, which webhooks may not call unless the operator allows it (${setting})`;
  };
  const guard = createTargetGuard({ allowedHosts, setting, resolve, ...(opts.protectedServers ? { protectedServers: opts.protectedServers } : {}) });
  return {
    async check(text) {
      let url: URL;
      try {
        url = new URL(text);
      } catch {
        return { ok: false, problem: 'is not an absolute URL' };
      }
      if (url.protocol !== 'https:' && url.protocol !== 'http:') return { ok: false, problem: `scheme ${url.protocol.replace(/:$/, '')} is not allowed: use https` };
      if (url.protocol === 'http:' && !opts.allowHttp) return { ok: false, problem: 'http is not allowed: use https (the operator may allow http with WEBHOOK_ALLOW_HTTP)' };
      if (url.username || url.password) return { ok: false, problem: 'must not carry credentials (user:password@): authenticate the request by its signature' };
      const host = url.hostname.replace(/^\[(.*)\]$/, '$1').replace(/\.$/, '').toLowerCase();
      if (!host) return { ok: false, problem: 'has no host' };
      if (METADATA_NAMES.has(host)) return { ok: false, problem: `host ${host} is a cloud metadata service` };
      const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
      const verdict = await guard.check({ host, port });
      if ('problem' in verdict) {
        if (verdict.unresolved) return { ok: false, problem: verdict.problem, unresolved: true };
        return { ok: false, problem: verdict.ownServer ? verdict.problem : await explain(host, verdict.problem) };
      }
      const addresses = verdict.addresses.filter((ip) => listed(ip) || !EMBEDDED_V4.check(ip, familyOf(ip)));
      if (addresses.length === 0) return { ok: false, problem: `host ${host} ${isIP(host) ? 'is' : 'resolves to'} an IPv6 address that embeds an IPv4 address (IPv4-compatible or -translated), which webhooks may not call` };
      return { ok: true, url, host, port, addresses };
    },
  };
}

/** The service's own servers, as the URL guard must refuse them. */
export function ownServers(databaseUrl: string, redisUrl: string): ProtectedServer[] {
  return [
    { ...serverOf(databaseUrl, 5432), what: "the backup service's own database server" },
    { ...serverOf(redisUrl, 6379), what: "the backup service's own Redis server" },
  ];
}
