import { createTargetGuard, serverOf, type AllowedHosts, type ProtectedServer } from '../components/targets.js';

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
 * `0x7f000001`, `2130706433`) into its dotted form, and `[::ffff:127.0.0.1]` is judged as the
 * IPv4 address it maps.
 */
export type UrlVerdict =
  | { ok: true; url: URL; host: string; port: number; addresses: string[] }
  /** `unresolved`: only DNS failed; at delivery that is a failed attempt, retried later. */
  | { ok: false; problem: string; unresolved?: true };

export interface UrlGuard {
  check(url: string): Promise<UrlVerdict>;
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
  const setting = opts.setting ?? 'WEBHOOK_ALLOWED_HOSTS';
  const guard = createTargetGuard({
    allowedHosts: opts.allowedHosts,
    setting,
    ...(opts.protectedServers ? { protectedServers: opts.protectedServers } : {}),
    ...(opts.resolve ? { resolve: opts.resolve } : {}),
  });
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
      if ('problem' in verdict) return verdict.unresolved ? { ok: false, problem: verdict.problem, unresolved: true } : { ok: false, problem: verdict.problem };
      return { ok: true, url, host, port, addresses: verdict.addresses };
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
