import { describe, expect, it } from 'vitest';
import { parseAllowedHosts } from '../components/targets.js';
import { createUrlGuard, ownServers } from './url-guard.js';

const DNS: Record<string, string[]> = {
  'hooks.example.com': ['93.184.216.34'],
  'v6.example.com': ['2606:4700::6810:85e5'],
  'loop.example.com': ['127.0.0.1'],
  'loop6.example.com': ['::1'],
  'mapped.example.com': ['::ffff:7f00:1'],
  'compat.example.com': ['::7f00:1'],
  'private.example.com': ['10.1.2.3'],
  'private6.example.com': ['fd12:3456::1'],
  'linklocal.example.com': ['169.254.1.1'],
  'imds.example.com': ['169.254.169.254'],
  'cgnat.example.com': ['100.64.0.1'],
  'zero.example.com': ['0.0.0.0'],
  'mixed.example.com': ['10.0.0.1', '93.184.216.35'], // only the public address is used
  'metadata.google.internal': ['169.254.169.254'],
  localhost: ['::1', '127.0.0.1'],
};
const lookups: string[] = [];
const resolve = async (host: string) => {
  lookups.push(host);
  if (/^[\d.]+$|:/.test(host)) return [host];
  const found = DNS[host.toLowerCase()];
  if (!found) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
  return found;
};
const guard = (o: { allowed?: string; http?: boolean } = {}) =>
  createUrlGuard({
    allowedHosts: parseAllowedHosts(o.allowed ?? 'public'),
    allowHttp: o.http ?? false,
    protectedServers: ownServers('postgresql://postgres@127.0.0.1:5432/backups', 'redis://127.0.0.1:6379'),
    resolve,
  });
const problemOf = async (url: string, o?: { allowed?: string; http?: boolean }) => {
  const v = await guard(o).check(url);
  return v.ok ? null : v.problem;
};

describe('the webhook URL guard, by default (public https only)', () => {
  it('lets a public https URL through, pinned to the addresses checked', async () => {
    const v = await guard().check('https://hooks.example.com/in?x=1');
    expect(v).toMatchObject({ ok: true, host: 'hooks.example.com', port: 443, addresses: ['93.184.216.34'] });
    expect(await guard().check('https://v6.example.com:8443/')).toMatchObject({ ok: true, port: 8443, addresses: ['2606:4700::6810:85e5'] });
    expect(await guard().check('https://mixed.example.com/')).toMatchObject({ ok: true, addresses: ['93.184.216.35'] });
    expect(await guard().check('https://93.184.216.34/')).toMatchObject({ ok: true, addresses: ['93.184.216.34'] });
  });

  it.each([
    ['https://127.0.0.1/', 'host 127.0.0.1 is a loopback address'],
    ['https://127.1/', 'host 127.0.0.1 is a loopback address'],
    ['https://0x7f000001/', 'host 127.0.0.1 is a loopback address'],
    ['https://2130706433/', 'host 127.0.0.1 is a loopback address'],
    ['https://0177.0.0.1/', 'host 127.0.0.1 is a loopback address'],
    ['https://[::1]/', 'host ::1 is a loopback address'],
    ['https://[::ffff:127.0.0.1]/', 'host ::ffff:7f00:1 is a loopback address'],
    ['https://[0:0:0:0:0:ffff:7f00:1]/', 'host ::ffff:7f00:1 is a loopback address'],
    ['https://localhost/', 'host localhost resolves to a loopback address'],
    ['https://LOCALHOST./', 'host localhost resolves to a loopback address'],
    ['https://loop.example.com/', 'host loop.example.com resolves to a loopback address'],
    ['https://loop6.example.com/', 'host loop6.example.com resolves to a loopback address'],
    ['https://mapped.example.com/', 'host mapped.example.com resolves to a loopback address'],
    ['https://10.0.0.1/', 'host 10.0.0.1 is a private address'],
    ['https://172.16.0.1/', 'host 172.16.0.1 is a private address'],
    ['https://192.168.1.1/', 'host 192.168.1.1 is a private address'],
    ['https://[fd00::1]/', 'host fd00::1 is a private address'],
    ['https://[::ffff:10.0.0.1]/', 'host ::ffff:a00:1 is a private address'],
    ['https://private.example.com/', 'host private.example.com resolves to a private address'],
    ['https://private6.example.com/', 'host private6.example.com resolves to a private address'],
    ['https://cgnat.example.com/', 'host cgnat.example.com resolves to a private address'],
    ['https://169.254.1.1/', 'host 169.254.1.1 is a link-local address'],
    ['https://[fe80::1]/', 'host fe80::1 is a link-local address'],
    ['https://linklocal.example.com/', 'host linklocal.example.com resolves to a link-local address'],
    ['https://169.254.169.254/latest/meta-data/', 'host 169.254.169.254 is a cloud metadata address'],
    ['https://[::ffff:169.254.169.254]/', 'host ::ffff:a9fe:a9fe is a cloud metadata address'],
    ['https://imds.example.com/', 'host imds.example.com resolves to a cloud metadata address'],
    ['https://0.0.0.0/', 'host 0.0.0.0 is an unspecified address'],
    ['https://0/', 'host 0.0.0.0 is an unspecified address'],
    ['https://zero.example.com/', 'host zero.example.com resolves to an unspecified address'],
  ])('refuses %s: %s', async (url, problem) => {
    expect(await problemOf(url)).toBe(`${problem}, which webhooks may not call unless the operator allows it (WEBHOOK_ALLOWED_HOSTS)`);
  });

  it('refuses IPv6 forms that embed an IPv4 address', async () => {
    expect(await problemOf('https://[::127.0.0.1]/')).toMatch(/^host ::7f00:1 is an IPv6 address that embeds an IPv4 address/);
    expect(await problemOf('https://compat.example.com/')).toMatch(/^host compat.example.com resolves to an IPv6 address that embeds an IPv4 address/);
    expect(await problemOf('https://[::ffff:0:127.0.0.1]/')).toMatch(/embeds an IPv4 address/);
  });

  it('refuses metadata service names before any lookup, even when listed', async () => {
    lookups.length = 0;
    expect(await problemOf('https://metadata.google.internal/computeMetadata/v1/')).toBe('host metadata.google.internal is a cloud metadata service');
    expect(await problemOf('https://METADATA.google.internal./', { allowed: 'metadata.google.internal, 169.254.169.254' })).toBe('host metadata.google.internal is a cloud metadata service');
    expect(lookups).toEqual([]);
  });

  it.each([
    ['https://user:pass@hooks.example.com/', 'must not carry credentials (user:password@): authenticate the request by its signature'],
    ['https://user@hooks.example.com/', 'must not carry credentials (user:password@): authenticate the request by its signature'],
    ['ftp://hooks.example.com/', 'scheme ftp is not allowed: use https'],
    ['file:///etc/passwd', 'scheme file is not allowed: use https'],
    ['gopher://hooks.example.com/', 'scheme gopher is not allowed: use https'],
    ['javascript:alert(1)', 'scheme javascript is not allowed: use https'],
    ['http://hooks.example.com/', 'http is not allowed: use https (the operator may allow http with WEBHOOK_ALLOW_HTTP)'],
    ['hooks.example.com/in', 'is not an absolute URL'],
    ['https://', 'is not an absolute URL'],
    ['https://nowhere.invalid/', 'host nowhere.invalid does not resolve'],
  ])('refuses %s', async (url, problem) => {
    expect(await problemOf(url)).toBe(problem);
  });

  it('tells a name that does not resolve apart (retried at delivery)', async () => {
    expect(await guard().check('https://nowhere.invalid/')).toEqual({ ok: false, problem: 'host nowhere.invalid does not resolve', unresolved: true });
  });
});

describe('WEBHOOK_ALLOWED_HOSTS and WEBHOOK_ALLOW_HTTP', () => {
  const local = { allowed: '127.0.0.1', http: true };

  it('http only with WEBHOOK_ALLOW_HTTP', async () => {
    expect(await guard({ http: true }).check('http://hooks.example.com/')).toMatchObject({ ok: true, port: 80 });
  });

  it('a listed address lets a receiver on it through, under each spelling', async () => {
    for (const url of ['http://127.0.0.1:8123/hook', 'http://127.1:8123/', 'http://[::ffff:127.0.0.1]:8123/', 'http://localhost:8123/']) {
      expect(await guard(local).check(url)).toMatchObject({ ok: true, port: 8123, addresses: ['127.0.0.1'] });
    }
    // the list confines webhooks to it: no public address without `public`
    expect(await problemOf('http://hooks.example.com/', local)).toBe('host hooks.example.com is not among the hosts the operator allows (WEBHOOK_ALLOWED_HOSTS)');
    // and lifts nothing else
    expect(await problemOf('http://127.0.0.2:8123/', local)).toMatch(/^host 127.0.0.2 is a loopback address/);
    expect(await problemOf('http://[::1]:8123/', local)).toMatch(/^host ::1 is a loopback address/);
  });

  it("never the service's own PostgreSQL or Redis, whatever the list says", async () => {
    const all = { allowed: '127.0.0.0/8, ::1, public', http: true };
    for (const url of ['http://127.0.0.1:5432/', 'http://127.1:5432/', 'http://[::ffff:127.0.0.1]:5432/', 'http://localhost:5432/', 'http://[::1]:5432/', 'http://2130706433:5432/']) {
      expect(await problemOf(url, all)).toBe("that is the backup service's own database server");
    }
    expect(await problemOf('http://127.0.0.1:6379/', all)).toBe("that is the backup service's own Redis server");
    expect(await problemOf('http://[::ffff:7f00:1]:6379/', all)).toBe("that is the backup service's own Redis server");
  });

  it('with names only in the list, an unlisted name is refused without a lookup', async () => {
    lookups.length = 0;
    expect(await problemOf('https://loop.example.com/', { allowed: 'hooks.internal' })).toBe('host loop.example.com is not among the hosts the operator allows (WEBHOOK_ALLOWED_HOSTS)');
    expect(lookups).toEqual([]);
    expect(await problemOf('https://127.0.0.1/', { allowed: 'hooks.internal' })).toMatch(/^host 127.0.0.1 is a loopback address/);
  });

  it('a listed name or range lifts the refusal for what it matches, never for metadata by name', async () => {
    expect(await guard({ allowed: 'private.example.com' }).check('https://private.example.com/')).toMatchObject({ ok: true, addresses: ['10.1.2.3'] });
    expect(await guard({ allowed: '10.0.0.0/8' }).check('https://10.9.8.7/')).toMatchObject({ ok: true, addresses: ['10.9.8.7'] });
    expect(await problemOf('https://imds.example.com/', { allowed: 'imds.example.com' })).toMatch(/resolves to a cloud metadata address/);
  });
});
