import { networkInterfaces } from 'node:os';
import { describe, expect, it } from 'vitest';
import { createTargetGuard, DEFAULT_ALLOWED_HOSTS, isLocalAddress, isPublicAddress, normalizeAddress, parseAllowedHosts, serverOf } from './targets.js';

const DNS: Record<string, string[]> = {
  localhost: ['::1', '127.0.0.1'],
  'db.internal': ['10.1.2.3'],
  'db.example.com': ['93.184.216.34'],
  'v6.example.com': ['2606:4700::6810:85e5'],
  'rebind.example.com': ['93.184.216.35', '127.0.0.1'], // a public name that also points back here
  'private.example.com': ['192.168.1.20'],
  'metadata.internal': ['169.254.169.254'],
};
const resolve = async (host: string) => {
  if (/^[\d.]+$|:/.test(host)) return [host];
  const found = DNS[host.toLowerCase()];
  if (!found) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
  return found;
};
const guard = (allowed = DEFAULT_ALLOWED_HOSTS, extra: Partial<Parameters<typeof createTargetGuard>[0]> = {}) =>
  createTargetGuard({ allowedHosts: parseAllowedHosts(allowed), resolve, ...extra });
const check = (host: string, allowed?: string, port = 5432) => guard(allowed).check({ host, port });
const notAllowed = (host: string) => ({ problem: `host ${host} is not among the hosts the operator allows (TARGET_ALLOWED_HOSTS)` });

describe('the default allow-list: public addresses only', () => {
  it.each([
    '10.0.0.1', '172.16.5.4', '172.31.255.255', '192.168.0.1', '100.64.0.1', '127.0.0.1', '127.9.9.9', '0.0.0.0', '0.1.2.3',
    '169.254.169.254', '169.254.1.1', '169.254.170.2', '100.100.100.200', '192.0.0.192', '224.0.0.1', '239.255.255.250', '255.255.255.255',
    '240.0.0.1', '192.0.2.1', '198.51.100.1', '203.0.113.9', '198.18.0.1',
    '::1', '::', 'fd00:ec2::254', 'fc00::1', 'fd12:3456::1', 'fe80::1', 'ff02::1', '::ffff:127.0.0.1', '::ffff:10.0.0.1',
    '::ffff:169.254.169.254', '64:ff9b::a00:1', '2002:a00:1::1', '2001:db8::1', 'fec0::1',
    // the same IPv4-mapped addresses as the WHATWG URL parser writes them ([::ffff:127.0.0.1] -> [::ffff:7f00:1])
    '::ffff:7f00:1', '::ffff:a00:1', '::ffff:a9fe:a9fe', '0:0:0:0:0:ffff:7f00:1', '::FFFF:7F00:1',
  ])('refuses %s', async (ip) => {
    expect(await check(ip)).toEqual(notAllowed(ip));
    expect(isPublicAddress(ip)).toBe(false);
  });

  it('refuses names that resolve there too', async () => {
    for (const host of ['localhost', 'db.internal', 'private.example.com', 'metadata.internal']) expect(await check(host)).toEqual(notAllowed(host));
  });

  it('lets public addresses and names through, pinned to what was checked', async () => {
    expect(await check('93.184.216.34')).toEqual({ addresses: ['93.184.216.34'] });
    expect(await check('db.example.com')).toEqual({ addresses: ['93.184.216.34'] });
    expect(await check('v6.example.com')).toEqual({ addresses: ['2606:4700::6810:85e5'] });
    expect(await check('8.8.8.8')).toEqual({ addresses: ['8.8.8.8'] });
    // only the public addresses of a name are used
    expect(await check('rebind.example.com')).toEqual({ addresses: ['93.184.216.35'] });
  });

  it('tells a name that does not resolve apart from a refusal', async () => {
    expect(await check('nowhere.invalid')).toEqual({ problem: 'host nowhere.invalid does not resolve', unresolved: true });
  });

  it('reads `*` (the old default) as public, no longer as anything', async () => {
    expect(await check('127.0.0.1', '*')).toEqual(notAllowed('127.0.0.1'));
    expect(await check('db.example.com', '*')).toEqual({ addresses: ['93.184.216.34'] });
  });
});

describe('listed entries lift the default denial for what they match', () => {
  it('addresses and ranges', async () => {
    expect(await check('127.0.0.1', '127.0.0.1')).toEqual({ addresses: ['127.0.0.1'] });
    expect(await check('10.1.2.3', '10.0.0.0/8')).toEqual({ addresses: ['10.1.2.3'] });
    expect(await check('db.internal', '10.0.0.0/8')).toEqual({ addresses: ['10.1.2.3'] });
    expect(await check('::1', '::1')).toEqual({ addresses: ['::1'] });
    expect(await check('localhost', '127.0.0.0/8')).toEqual({ addresses: ['127.0.0.1'] }); // ::1 is not listed
    // an explicitly listed metadata address is the operator's word
    expect(await check('169.254.169.254', '169.254.169.254')).toEqual({ addresses: ['169.254.169.254'] });
  });

  it('names and wildcards, but never onto metadata addresses through a name', async () => {
    expect(await check('DB.Internal', 'db.internal')).toEqual({ addresses: ['10.1.2.3'] });
    expect(await check('db.internal', '*.internal')).toEqual({ addresses: ['10.1.2.3'] });
    expect(await check('metadata.internal', '*.internal')).toEqual(notAllowed('metadata.internal'));
    expect(await check('metadata.internal', 'metadata.internal')).toEqual(notAllowed('metadata.internal'));
  });

  it('a list confines tenants to it: public addresses only with `public` in it', async () => {
    expect(await check('db.example.com', 'db.internal')).toEqual(notAllowed('db.example.com'));
    expect(await check('8.8.8.8', '10.0.0.0/8')).toEqual(notAllowed('8.8.8.8'));
    expect(await check('8.8.8.8', 'public, 10.0.0.0/8')).toEqual({ addresses: ['8.8.8.8'] });
    expect(await check('10.1.2.3', 'public, 10.0.0.0/8')).toEqual({ addresses: ['10.1.2.3'] });
    expect(await check('192.168.0.1', 'public, 10.0.0.0/8')).toEqual(notAllowed('192.168.0.1'));
  });

  it('with names only, a name not listed is refused before any DNS lookup', async () => {
    let lookups = 0;
    const g = createTargetGuard({ allowedHosts: parseAllowedHosts('db.internal'), resolve: async (h) => (lookups++, resolve(h)) });
    expect(await g.check({ host: 'nowhere.invalid', port: 5432 })).toEqual(notAllowed('nowhere.invalid'));
    expect(lookups).toBe(0);
  });
});

describe("the service's own servers", () => {
  const own = (allowed: boolean) => [
    { ...serverOf('postgresql://postgres@127.0.0.1:5432/backups', 5432), what: "the backup service's own database server", allowed },
    { ...serverOf('redis://127.0.0.1:6379', 6379), what: "the backup service's own Redis server" },
  ];
  const ownRefusal = { problem: "that is the backup service's own database server" };

  it('are refused under any name or address of this machine, whatever the list says', async () => {
    const g = guard('127.0.0.0/8, ::1, public, *.example.com', { protectedServers: own(false) });
    for (const host of ['127.0.0.1', '127.0.0.2', 'localhost', '::1', '0.0.0.0', '::ffff:127.0.0.1', 'rebind.example.com']) {
      expect(await g.check({ host, port: 5432 })).toEqual({ ...ownRefusal, ownServer: own(false)[0]!.what });
    }
    const nic = Object.values(networkInterfaces()).flatMap((l) => l ?? []).find((i) => !i.internal && i.family === 'IPv4');
    if (nic) expect(await g.check({ host: nic.address, port: 5432 })).toMatchObject(ownRefusal);
    expect(await g.check({ host: '127.0.0.1', port: 6379 })).toMatchObject({ problem: "that is the backup service's own Redis server" });
    // another port on this machine is another server
    expect(await g.check({ host: '127.0.0.1', port: 55432 })).toEqual({ addresses: ['127.0.0.1'] });
  });

  it('a remote one by its addresses', async () => {
    const g = guard('10.0.0.0/8, 127.0.0.1', { protectedServers: [{ host: 'db.internal', port: 5432, what: 'the backup service\'s own database server' }] });
    expect(await g.check({ host: "10.1.2.3", port: 5432 })).toMatchObject(ownRefusal);
    expect(await g.check({ host: '127.0.0.1', port: 5432 })).toEqual({ addresses: ['127.0.0.1'] });
  });

  it('TARGET_ALLOW_SERVICE_SERVER lets tenants onto the PostgreSQL server, even on loopback, and says so; never onto Redis', async () => {
    const g = guard(DEFAULT_ALLOWED_HOSTS, { protectedServers: own(true) });
    expect(await g.check({ host: '127.0.0.1', port: 5432 })).toEqual({ addresses: ['127.0.0.1'], ownServer: "the backup service's own database server" });
    expect(await g.check({ host: '127.0.0.1', port: 6379 })).toMatchObject({ problem: "that is the backup service's own Redis server" });
    expect(await g.check({ host: '127.0.0.1', port: 55432 })).toEqual(notAllowed('127.0.0.1'));
  });
});

describe('normalizeAddress', () => {
  it.each([
    ['::ffff:127.0.0.1', '127.0.0.1'],
    ['::ffff:7f00:1', '127.0.0.1'],
    ['::FFFF:7F00:0001', '127.0.0.1'],
    ['0:0:0:0:0:ffff:7f00:1', '127.0.0.1'],
    ['0000:0000:0000:0000:0000:ffff:a9fe:a9fe', '169.254.169.254'],
    ['::ffff:a00:1', '10.0.0.1'],
    ['::ffff:0:0', '0.0.0.0'],
    ['::ffff:5db8:d822', '93.184.216.34'],
  ])('maps %s to %s', (ip, v4) => {
    expect(normalizeAddress(ip)).toBe(v4);
  });

  it.each(['::1', '::', '::7f00:1', '::ffff:0:7f00:1', '1::ffff:7f00:1', '64:ff9b::7f00:1', '2606:4700::6810:85e5', 'fe80::1%eth0', '10.0.0.1'])('leaves %s alone', (ip) => {
    expect(normalizeAddress(ip)).toBe(ip);
  });

  it('lower-cases other IPv6 addresses', () => {
    expect(normalizeAddress('2606:4700::6810:85E5')).toBe('2606:4700::6810:85e5');
  });

  it('a mapped loopback address, however spelled, is this machine and is pinned as IPv4', async () => {
    expect(isLocalAddress('::ffff:7f00:1')).toBe(true);
    expect(isLocalAddress('0:0:0:0:0:ffff:7f00:2')).toBe(true);
    expect(await check('::ffff:7f00:1', '127.0.0.1')).toEqual({ addresses: ['127.0.0.1'] });
    const own = [{ ...serverOf('postgresql://postgres@127.0.0.1:5432/backups', 5432), what: "the backup service's own database server" }];
    const g = guard('127.0.0.0/8, ::ffff:0:0/96, public', { protectedServers: own });
    for (const host of ['::ffff:7f00:1', '0:0:0:0:0:ffff:7f00:1', '::ffff:7f00:2']) {
      expect(await g.check({ host, port: 5432 })).toMatchObject({ problem: "that is the backup service's own database server" });
    }
  });
});

describe('parseAllowedHosts', () => {
  it('reads public, names, wildcards, addresses and ranges', () => {
    const allowed = parseAllowedHosts(' DB.internal, *.example.com ,10.0.0.0/8, 192.0.2.1, fd00::/8, public ');
    expect(allowed.public).toBe(true);
    expect([...allowed.names]).toEqual(['db.internal']);
    expect(allowed.suffixes).toEqual(['.example.com']);
    expect(allowed.addresses.check('10.200.0.1', 'ipv4')).toBe(true);
    expect(allowed.addresses.check('192.0.2.2', 'ipv4')).toBe(false);
    expect(allowed.addresses.check('fd12::1', 'ipv6')).toBe(true);
    expect(parseAllowedHosts('db.internal').public).toBe(false);
  });

  it.each(['', ' , ', '10.0.0.0/33', '10.0.0.0/8/1', 'bad host', 'http://x', '*.', '**.x'])('refuses %j', (text) => {
    expect(() => parseAllowedHosts(text)).toThrow();
  });
});
