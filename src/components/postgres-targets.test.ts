import { networkInterfaces } from 'node:os';
import { describe, expect, it } from 'vitest';
import { parsePostgresUrl } from './postgres-connection.js';
import { createPostgresTargetPolicy, ownDatabaseOf, parseAllowedHosts, pinAddresses } from './postgres-targets.js';

const DNS: Record<string, string[]> = {
  localhost: ['::1', '127.0.0.1'],
  'db.internal': ['10.1.2.3'],
  'replica.db.internal': ['10.1.2.4', '10.1.2.5'],
  'db.example.com': ['203.0.113.7'],
  'example.com': ['198.51.100.1'], // not matched by *.example.com
  'sneaky.example.net': ['127.0.0.2'], // a public name that points back at this machine
  'mixed.example.net': ['10.9.9.9', '192.0.2.1'],
};
const resolve = async (host: string) => {
  if (/^[\d.]+$|:/.test(host)) return [host];
  const found = DNS[host.toLowerCase()]; // DNS names are case-insensitive
  if (!found) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
  return found;
};
const OWN = 'postgresql://postgres@127.0.0.1:5432/backups';
const policy = (allowed: string, own = OWN) => createPostgresTargetPolicy({ allowedHosts: parseAllowedHosts(allowed), ownDatabaseUrl: own, resolve });
const check = (allowed: string, url: string, own?: string) => policy(allowed, own).check(parsePostgresUrl(url));

describe('parseAllowedHosts', () => {
  it('reads names, wildcards, addresses and ranges', () => {
    const allowed = parseAllowedHosts(' DB.internal, *.example.com ,10.0.0.0/8, 192.0.2.1, fd00::/8 ');
    expect(allowed.any).toBe(false);
    expect([...allowed.names]).toEqual(['db.internal']);
    expect(allowed.suffixes).toEqual(['.example.com']);
    expect(allowed.addresses.check('10.200.0.1', 'ipv4')).toBe(true);
    expect(allowed.addresses.check('192.0.2.1', 'ipv4')).toBe(true);
    expect(allowed.addresses.check('192.0.2.2', 'ipv4')).toBe(false);
    expect(allowed.addresses.check('fd12::1', 'ipv6')).toBe(true);
    expect(parseAllowedHosts('*').any).toBe(true);
  });

  it.each(['', ' , ', '10.0.0.0/33', '10.0.0.0/8/1', 'bad host', 'http://x', '*.', '**.x'])('refuses %j', (text) => {
    expect(() => parseAllowedHosts(text)).toThrow();
  });
});

describe('ownDatabaseOf', () => {
  it.each([
    ['postgresql://u:p@db.internal:6543/svc', { host: 'db.internal', port: 6543, database: 'svc' }],
    ['postgresql://u@127.0.0.1/svc', { host: '127.0.0.1', port: 5432, database: 'svc' }],
    ['postgresql:///svc?host=/var/run/postgresql', { host: '127.0.0.1', port: 5432, database: 'svc' }],
    ['postgresql://[::1]:5433/svc', { host: '::1', port: 5433, database: 'svc' }],
  ])('%s', (url, expected) => {
    expect(ownDatabaseOf(url)).toEqual(expected);
  });
});

describe('PostgresTargetPolicy', () => {
  it('lets anything through with *, pinned to every address the name had', async () => {
    expect(await check('*', 'postgresql://u:p@replica.db.internal/app')).toEqual({ addresses: ['10.1.2.4', '10.1.2.5'] });
    expect(await check('*', 'postgresql://u@127.0.0.1:5432/appdb')).toEqual({ addresses: ['127.0.0.1'] });
  });

  it("never reaches the service's own database, whatever the host is called", async () => {
    const own = { problem: "that is the backup service's own database" };
    expect(await check('*', 'postgresql://u@127.0.0.1:5432/backups')).toEqual(own);
    expect(await check('*', 'postgresql://u@localhost/backups')).toEqual(own);
    expect(await check('*', 'postgresql://u@[::1]:5432/backups')).toEqual(own);
    expect(await check('*', 'postgresql://u@sneaky.example.net/backups')).toEqual(own);
    const nic = Object.values(networkInterfaces()).flatMap((l) => l ?? []).find((i) => !i.internal && i.family === 'IPv4');
    if (nic) expect(await check('*', `postgresql://u@${nic.address}/backups`)).toEqual(own);
    // the same name elsewhere, or another database or port here, is someone else's
    expect(await check('*', 'postgresql://u@db.internal/backups')).toEqual({ addresses: ['10.1.2.3'] });
    expect(await check('*', 'postgresql://u@127.0.0.1/other')).toEqual({ addresses: ['127.0.0.1'] });
    expect(await check('*', 'postgresql://u@127.0.0.1:5433/backups')).toEqual({ addresses: ['127.0.0.1'] });
    expect(await check('*', 'postgresql://u@127.0.0.1/backups?port=5433')).toEqual({ addresses: ['127.0.0.1'] });
  });

  it('protects a remote service database by its addresses', async () => {
    const remote = 'postgresql://svc@db.internal:5432/backups';
    expect(await check('*', 'postgresql://u@10.1.2.3/backups', remote)).toEqual({ problem: "that is the backup service's own database" });
    expect(await check('*', 'postgresql://u@127.0.0.1/backups', remote)).toEqual({ addresses: ['127.0.0.1'] });
  });

  it('confines tenants to the listed names, wildcards and ranges', async () => {
    const allowed = 'db.internal, *.example.com, 10.9.0.0/16';
    expect(await check(allowed, 'postgresql://u@DB.Internal/app')).toEqual({ addresses: ['10.1.2.3'] });
    expect(await check(allowed, 'postgresql://u@db.example.com/app')).toEqual({ addresses: ['203.0.113.7'] });
    // only the addresses inside the range are used
    expect(await check(allowed, 'postgresql://u@mixed.example.net/app')).toEqual({ addresses: ['10.9.9.9'] });
    const refused = { problem: expect.stringMatching(/^host (replica\.db\.internal|127\.0\.0\.1|example\.com) is not among the hosts the operator allows/) };
    expect(await check(allowed, 'postgresql://u@replica.db.internal/app')).toEqual(refused);
    expect(await check(allowed, 'postgresql://u@127.0.0.1/app')).toEqual(refused);
    expect(await check(allowed, 'postgresql://u@example.com/app')).toEqual(refused);
    // with names only, a name not listed is refused before any DNS lookup
    expect(await check('db.internal', 'postgresql://u@nowhere.invalid/app')).toEqual({ problem: expect.stringMatching(/not among the hosts/) });
  });

  it('tells a name that does not resolve apart from a refusal', async () => {
    expect(await check('*', 'postgresql://u@nowhere.invalid/app')).toEqual({ problem: 'host nowhere.invalid does not resolve', unresolved: true });
  });

  it('pins libpq to the checked addresses, keeping the name for TLS', () => {
    const conn = pinAddresses(parsePostgresUrl('postgresql://u:p@replica.db.internal:6000/app?sslmode=verify-full'), ['10.1.2.4', '10.1.2.5']);
    expect(conn.env).toMatchObject({ PGHOST: 'replica.db.internal,replica.db.internal', PGHOSTADDR: '10.1.2.4,10.1.2.5', PGPORT: '6000', PGPASSWORD: 'p' });
    expect(conn.database).toBe('app');
  });
});
