import { networkInterfaces } from 'node:os';
import { describe, expect, it } from 'vitest';
import { parsePostgresUrl } from './postgres-connection.js';
import { createTargetPolicy, ownDatabaseOf, parseAllowedHosts, pinAddresses } from './postgres-targets.js';

const DNS: Record<string, string[]> = {
  localhost: ['::1', '127.0.0.1'],
  'db.internal': ['10.1.2.3'],
  'replica.db.internal': ['10.1.2.4', '10.1.2.5'],
  'db.example.com': ['93.184.216.34'],
  'example.com': ['93.184.216.1'], // not matched by *.example.com
  'sneaky.example.net': ['127.0.0.2'], // a public name that points back at this machine
  'mixed.example.net': ['10.9.9.9', '93.184.216.2'],
};
const resolve = async (host: string) => {
  if (/^[\d.]+$|:/.test(host)) return [host];
  const found = DNS[host.toLowerCase()]; // DNS names are case-insensitive
  if (!found) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
  return found;
};
const OWN = 'postgresql://postgres@127.0.0.1:5432/backups';
const policy = (allowed: string, own = OWN) => createTargetPolicy({ allowedHosts: parseAllowedHosts(allowed), ownDatabaseUrl: own, resolve });
const check = (allowed: string, url: string, own?: string) => policy(allowed, own).check(parsePostgresUrl(url));

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

describe('TargetPolicy', () => {
  const ownServer = { problem: "that is the backup service's own database server" };
  const ownDatabase = { problem: "that is the backup service's own database" };

  it('pins libpq to every checked address the name had', async () => {
    expect(await check('10.0.0.0/8', 'postgresql://u:p@replica.db.internal/app')).toEqual({ addresses: ['10.1.2.4', '10.1.2.5'] });
    expect(await check('public', 'postgresql://u@db.example.com/app')).toEqual({ addresses: ['93.184.216.34'] });
  });

  it("refuses every database of the service's own server, whatever the host is called and whatever the list says", async () => {
    const all = '127.0.0.0/8, ::1, public, *.example.net, 10.0.0.0/8';
    for (const url of [
      'postgresql://u@127.0.0.1:5432/backups',
      'postgresql://u@127.0.0.1:5432/other',
      'postgresql://u@127.0.0.1/postgres',
      'postgresql://u@localhost/template1',
      'postgresql://u@[::1]:5432/other',
      'postgresql://u@sneaky.example.net/other',
      'postgresql://u@127.0.0.1/other?port=5432',
    ]) {
      expect(await check(all, url)).toEqual(url.endsWith('/backups') ? ownDatabase : ownServer);
    }
    const nic = Object.values(networkInterfaces()).flatMap((l) => l ?? []).find((i) => !i.internal && i.family === 'IPv4');
    if (nic) expect(await check(`${nic.address}, ${all}`, `postgresql://u@${nic.address}/other`)).toEqual(ownServer);
    // another port here, or the same name elsewhere, is someone else's server
    expect(await check(all, 'postgresql://u@db.internal/backups')).toEqual({ addresses: ['10.1.2.3'] });
    expect(await check(all, 'postgresql://u@127.0.0.1:5433/backups')).toEqual({ addresses: ['127.0.0.1'] });
    expect(await check(all, 'postgresql://u@127.0.0.1/backups?port=5433')).toEqual({ addresses: ['127.0.0.1'] });
  });

  it('protects a remote service server by its addresses', async () => {
    const remote = 'postgresql://svc@db.internal:5432/backups';
    expect(await check('10.0.0.0/8', 'postgresql://u@10.1.2.3/other', remote)).toEqual(ownServer);
    expect(await check('127.0.0.1', 'postgresql://u@127.0.0.1/other', remote)).toEqual({ addresses: ['127.0.0.1'] });
  });

  it("never reaches the service's Redis", async () => {
    const p = createTargetPolicy({ allowedHosts: parseAllowedHosts('127.0.0.1'), ownDatabaseUrl: OWN, ownRedisUrl: 'redis://127.0.0.1:6379', resolve });
    expect(await p.check(parsePostgresUrl('postgresql://u@127.0.0.1:6379/x'))).toEqual({ problem: "that is the backup service's own Redis server" });
  });

  it('TARGET_ALLOW_SERVICE_SERVER lifts the refusal for other databases, never for its own', async () => {
    const p = createTargetPolicy({ allowedHosts: parseAllowedHosts('public'), ownDatabaseUrl: OWN, allowServiceServer: true, resolve });
    expect(await p.check(parsePostgresUrl('postgresql://u@127.0.0.1/other'))).toEqual({ addresses: ['127.0.0.1'] });
    expect(await p.check(parsePostgresUrl('postgresql://u@localhost:5432/other'))).toEqual({ addresses: ['::1', '127.0.0.1'] });
    expect(await p.check(parsePostgresUrl('postgresql://u@localhost/backups'))).toEqual(ownDatabase);
    // it is about that server only: the rest of loopback stays refused
    expect(await p.check(parsePostgresUrl('postgresql://u@127.0.0.1:5433/other'))).toEqual({ problem: expect.stringMatching(/not among the hosts/) });
  });

  it('confines tenants to the listed names, wildcards and ranges', async () => {
    const allowed = 'db.internal, *.example.com, 10.9.0.0/16';
    expect(await check(allowed, 'postgresql://u@DB.Internal/app')).toEqual({ addresses: ['10.1.2.3'] });
    expect(await check(allowed, 'postgresql://u@db.example.com/app')).toEqual({ addresses: ['93.184.216.34'] });
    // only the addresses inside the range are used
    expect(await check(allowed, 'postgresql://u@mixed.example.net/app')).toEqual({ addresses: ['10.9.9.9'] });
    const refused = { problem: expect.stringMatching(/^host (replica\.db\.internal|127\.0\.0\.1|example\.com) is not among the hosts the operator allows \(TARGET_ALLOWED_HOSTS\)$/) };
    expect(await check(allowed, 'postgresql://u@replica.db.internal/app')).toEqual(refused);
    expect(await check(allowed, 'postgresql://u@127.0.0.1:5433/app')).toEqual(refused);
    expect(await check(allowed, 'postgresql://u@example.com/app')).toEqual(refused);
  });

  it('refuses private, loopback and metadata servers by default', async () => {
    for (const host of ['10.0.0.1', '169.254.169.254', '[::1]', '127.0.0.1', '[fd00:ec2::254]', 'db.internal', 'localhost']) {
      expect(await check('public', `postgresql://u@${host}:5433/app`)).toEqual({ problem: expect.stringMatching(/not among the hosts the operator allows/) });
    }
  });

  it('pins libpq to the checked addresses, keeping the name for TLS', () => {
    const conn = pinAddresses(parsePostgresUrl('postgresql://u:p@replica.db.internal:6000/app?sslmode=verify-full'), ['10.1.2.4', '10.1.2.5']);
    expect(conn.env).toMatchObject({ PGHOST: 'replica.db.internal,replica.db.internal', PGHOSTADDR: '10.1.2.4,10.1.2.5', PGPORT: '6000', PGPASSWORD: 'p' });
    expect(conn.database).toBe('app');
  });
});
