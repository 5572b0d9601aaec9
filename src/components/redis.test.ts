import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import net from 'node:net';
import tls from 'node:tls';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startRedisServer, type ScratchRedisServer } from '../../test/helpers/redis-server.js';
import { decodeStreamManifest } from '../repo/manifest.js';
import { MemoryRepo, fromArray } from '../repo/memory-repo.test-helper.js';
import { IntegrityError, type ChunkSink } from '../repo/types.js';
import { createTargetPolicy, parseAllowedHosts } from './postgres-targets.js';
import { checkRedisConnection, checkRedisUrl, redisDriver, type RedisConfig } from './redis.js';
import { ComponentError, type ComponentBackupContext } from './types.js';
import { ArtifactChangedError } from './verify.js';

const targets = createTargetPolicy({
  allowedHosts: parseAllowedHosts('127.0.0.1,localhost,::1'),
  ownDatabaseUrl: 'postgresql://postgres@127.0.0.1:5432/x',
  ownRedisUrl: 'redis://127.0.0.1:6379',
});
const base = { dataRoot: '/nonexistent', targets };
const repo = new MemoryRepo({ chunkSize: 256 * 1024 });
const servers: ScratchRedisServer[] = [];
const clients: Redis[] = [];

async function server(args: string[] = []): Promise<ScratchRedisServer> {
  const s = await startRedisServer({ args });
  servers.push(s);
  return s;
}

function client(port: number, db = 0): Redis {
  const c = new Redis({ port, host: '127.0.0.1', db, lazyConnect: false, maxRetriesPerRequest: 1 });
  clients.push(c);
  return c;
}

async function collect(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const b of it) parts.push(b);
  return Buffer.concat(parts);
}

async function backup(config: RedisConfig, extra: Partial<ComponentBackupContext> = {}) {
  const snap = redisDriver.backup(config, { ...base, sink: repo, previous: null, ...extra });
  const manifest = await collect(snap.manifest);
  return { manifest, bytes: snap.logicalBytes() };
}

function restore(config: RedisConfig, manifest: Buffer, source = repo) {
  return redisDriver.restore(config, { ...base, source, manifest: fromArray([manifest]) });
}

const failure = (p: Promise<unknown>) => p.then(() => new Error('expected a failure'), (e: unknown) => e as Error);

interface KeyState {
  type: string;
  dump: string;
  pttl: number;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * A key's value as comparable bytes: its DUMP, except for sets and hashes kept as hash tables,
 * whose DUMP follows the table's order (which a RESTORE may change): their sorted members then.
 */
async function valueOf(c: Redis, key: Buffer, type: string): Promise<string> {
  if (type === 'set') return sha(Buffer.concat((await c.smembersBuffer(key)).sort(Buffer.compare).flatMap((m) => [Buffer.from(`${m.length}:`), m])));
  if (type === 'hash') {
    const all = await c.hgetallBuffer(key);
    return sha(Buffer.from(JSON.stringify(Object.entries(all).map(([f, v]) => [f, v.toString('hex')]).sort())));
  }
  return sha((await c.dumpBuffer(key)) as Buffer);
}

/** Every key of the given databases: type, value (see valueOf), PTTL. Keys as hex (binary-safe). */
async function stateOf(port: number, dbs: number[]): Promise<Map<string, KeyState>> {
  const out = new Map<string, KeyState>();
  for (const db of dbs) {
    const c = new Redis({ port, host: '127.0.0.1', db });
    try {
      const keys = await c.keysBuffer('*');
      for (const k of keys) {
        const [type, pttl] = await Promise.all([c.type(k), c.pttl(k)]);
        out.set(`${db}/${k.toString('hex')}`, { type, dump: await valueOf(c, k, type), pttl });
      }
    } finally {
      c.disconnect();
    }
  }
  return out;
}

function expectSameState(after: Map<string, KeyState>, before: Map<string, KeyState>, elapsedMs: number) {
  expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
  for (const [key, want] of before) {
    const got = after.get(key) as KeyState;
    expect({ key, type: got.type, dump: got.dump }).toEqual({ key, type: want.type, dump: want.dump });
    if (want.pttl < 0) expect(got.pttl).toBe(want.pttl);
    else {
      expect(got.pttl).toBeLessThanOrEqual(want.pttl);
      expect(got.pttl).toBeGreaterThan(want.pttl - elapsedMs - 1000);
    }
  }
}

const BIN_KEY = Buffer.from([0xff, 0x00, 0xfe, 0x0a, 0x0d, 0x80, 0x41]);
const BIN_VALUE = Buffer.from([0x00, 0xc3, 0x28, 0xff, 0xfe, 0x0d, 0x0a, 0x24, 0x45, 0x4f, 0x46]);
const BIG = randomBytes(50 * 1024 * 1024);

async function seed(port: number): Promise<void> {
  const c0 = client(port, 0);
  await c0.set('str', 'hello');
  await c0.set('int', '12345');
  await c0.set(BIN_KEY, BIN_VALUE);
  await c0.hset('hash', { a: '1', b: '2', bin: BIN_VALUE });
  await c0.hset('bighash', Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`f${i}`, `v${i}`])));
  await c0.rpush('list', 'a', 'b', 'c', BIN_VALUE);
  await c0.sadd('set', 'x', 'y', 'z');
  await c0.sadd('intset', '1', '2', '3');
  await c0.zadd('zset', 1, 'one', 2.5, 'two', -3, 'three');
  for (let i = 0; i < 5; i++) await c0.xadd('stream', '*', 'n', String(i));
  await c0.xgroup('CREATE', 'stream', 'grp', '0');
  await c0.xreadgroup('GROUP', 'grp', 'consumer1', 'COUNT', '2', 'STREAMS', 'stream', '>');
  await c0.set('ttl', 'soon', 'PX', 600_000);
  await c0.hset('ttlhash', { f: 'v' });
  await c0.pexpire('ttlhash', 900_000);
  await c0.set('big', BIG);
  await c0.call('FUNCTION', 'LOAD', "#!lua name=bklib\nredis.register_function('bkecho', function(keys, args) return args[1] end)");
  const c1 = client(port, 1);
  await c1.set('in-db1', 'one');
  await c1.set(BIN_KEY, Buffer.from('db1 binary'));
  await c1.set('ttl1', 'x', 'PX', 300_000);
  const c5 = client(port, 5);
  await c5.rpush('in-db5', 'five');
  await c5.zadd('z5', 5, BIN_VALUE);
}

afterAll(async () => {
  for (const c of clients) c.disconnect();
  await Promise.all(servers.map((s) => s.stop()));
});

describe('redis URLs', () => {
  it('accepts redis:// and rediss:// with user, password and db; says what is wrong otherwise', () => {
    expect(checkRedisUrl('redis://h')).toBeNull();
    expect(checkRedisUrl('rediss://user:p%40ss@h.example.com:6380/3')).toBeNull();
    expect(checkRedisUrl('redis://:secret@[::1]:7000/0')).toBeNull();
    expect(checkRedisUrl('http://h')).toBe('the URL must start with redis:// or rediss://');
    expect(checkRedisUrl('redis://h/x')).toBe('the URL path must be a database index (/0, /1, ...)');
    expect(checkRedisUrl('redis://h/1/2')).toBe('the URL path must be a database index (/0, /1, ...)');
    expect(checkRedisUrl('redis://h?db=2')).toBe('the URL may not have parameters (?...)');
    expect(checkRedisUrl('redis://user@h')).toBe('the URL names a user but no password (redis://user:password@host)');
    expect(checkRedisUrl('redis://')).toBe('the URL names no host');
    expect(checkRedisUrl('not a url')).toBe('not a valid URL (expected redis://[user:password@]host[:port][/db])');
  });

  it('a bad URL fails the backup manifest and the check', async () => {
    const err = await failure(backup({ url: 'redis://h/abc' }));
    expect(err).toBeInstanceOf(ComponentError);
    expect(err.message).toBe('invalid redis URL: the URL path must be a database index (/0, /1, ...)');
    expect(await checkRedisConnection('redis://h/abc')).toBe('invalid redis URL: the URL path must be a database index (/0, /1, ...)');
  });
});

describe('redis backup and restore', () => {
  let src: ScratchRedisServer;
  let dst: ScratchRedisServer;

  beforeAll(async () => {
    [src, dst] = await Promise.all([server(), server()]);
    await seed(src.port);
  });

  it('round trip across databases 0, 1 and 5: every key, type, value, TTL and stream group; keys written after the backup are gone', async () => {
    const t0 = Date.now(); // before the PTTLs are read: the time that passes after counts against them
    const before = await stateOf(src.port, [0, 1, 5]);
    const groupsBefore = await client(src.port).xinfo('GROUPS', 'stream');
    let consistentAt = -1;
    let bytesSeen = 0;
    const totals = new Set<number | null>();
    const put = await backup(
      { url: src.url },
      {
        onConsistent: () => (consistentAt = bytesSeen),
        onProgress: (p) => {
          bytesSeen = p.bytes_done;
          totals.add(p.bytes_total);
        },
      },
    );
    expect(consistentAt).toBe(0); // the fork comes before a byte of the payload
    expect(bytesSeen).toBe(put.bytes);
    expect(totals).toEqual(new Set([null])); // diskless: the length is not announced
    expect(put.bytes).toBeGreaterThan(50 * 1024 * 1024);
    const ref = await decodeStreamManifest(fromArray([put.manifest]));
    expect(ref.bytes).toBe(put.bytes);
    const rdb = await collect(await redisDriver.exportArchive(fromArray([put.manifest]), repo));
    expect(rdb.length).toBe(put.bytes);
    expect(rdb.subarray(0, 5).toString()).toBe('REDIS');

    // written after the backup: in the source (and a database the snapshot does not use), and on the target beforehand
    await client(src.port, 0).set('late', 'x');
    await client(src.port, 3).set('late3', 'x');
    await client(dst.port, 0).set('str', 'other');
    await client(dst.port, 2).set('stale', 'y');
    await client(dst.port, 7).hset('stale-hash', 'f', 'v');

    await restore({ url: dst.url }, put.manifest);
    const after = await stateOf(dst.port, [0, 1, 5]);
    expectSameState(after, before, Date.now() - t0);
    expect(after.size).toBe(before.size);
    for (const db of [2, 3, 7]) expect(await client(dst.port, db).dbsize()).toBe(0);
    expect(await client(dst.port, 0).exists('late')).toBe(0);
    // values, read back
    const d0 = client(dst.port, 0);
    expect(await d0.getBuffer(BIN_KEY)).toEqual(BIN_VALUE);
    expect((await d0.getBuffer('big'))?.equals(BIG)).toBe(true);
    expect(await d0.hgetallBuffer('hash')).toEqual({ a: Buffer.from('1'), b: Buffer.from('2'), bin: BIN_VALUE });
    expect(await d0.zrange('zset', 0, -1, 'WITHSCORES')).toEqual(['three', '-3', 'one', '1', 'two', '2.5']);
    expect(await d0.xinfo('GROUPS', 'stream')).toEqual(groupsBefore);
    expect(await d0.xpending('stream', 'grp')).toEqual(await client(src.port).xpending('stream', 'grp'));
    expect(await client(dst.port, 5).lrange('in-db5', 0, -1)).toEqual(['five']);
    expect(await d0.call('FCALL', 'bkecho', '0', 'hi')).toBe('hi'); // the snapshot's functions

    // restoring again over the restored target gives the same state (and the late source key is not in it)
    await restore({ url: dst.url }, put.manifest);
    expectSameState(await stateOf(dst.port, [0, 1, 5]), before, Date.now() - t0);
    await client(src.port, 0).del('late');
    await client(src.port, 3).del('late3');
  }, 120_000);

  it('a master that writes the snapshot to disk first announces its length; writes after the consistent point are not in it', async () => {
    const disk = await server(['--repl-diskless-sync', 'no']);
    const c = client(disk.port);
    await c.set('a', '1');
    await c.rpush('l', 'x', 'y');
    let late: Promise<unknown> | undefined;
    const totals = new Set<number | null>();
    const put = await backup(
      { url: disk.url },
      {
        onConsistent: () => {
          late = c.set('after-fork', 'x');
        },
        onProgress: (p) => totals.add(p.bytes_total),
      },
    );
    await late;
    expect(late).toBeDefined();
    expect(totals).toEqual(new Set([put.bytes]));
    const target = await server();
    await restore({ url: target.url }, put.manifest);
    const t = client(target.port);
    expect(await t.get('a')).toBe('1');
    expect(await t.lrange('l', 0, -1)).toEqual(['x', 'y']);
    expect(await t.exists('after-fork')).toBe(0);
    expect(await c.get('after-fork')).toBe('x');
  });

  it("a consistent backup does not take another replica's snapshot that predates its request: it asks again and holds the writes made before it asked", async () => {
    // A slow save to disk (0.1 s per key) that another replica started: a new replica would be
    // attached to it, and get a snapshot older than its own request.
    const busy = await server(['--repl-diskless-sync', 'no', '--rdb-key-save-delay', '100000']);
    const c = client(busy.port);
    for (let i = 0; i < 20; i++) await c.set(`k${i}`, String(i));
    const other = net.connect({ host: '127.0.0.1', port: busy.port });
    other.on('error', () => {});
    other.write('PSYNC ? -1\r\n'); // another replica: its full resynchronization (never read)
    try {
      await new Promise((r) => setTimeout(r, 300));
      await c.set('before-request', 'x'); // after that save began, before our request
      let late: Promise<unknown> | undefined;
      const put = await backup({ url: busy.url }, { onConsistent: () => (late = c.set('after-fork', 'x')) });
      await late;
      const target = await server();
      await restore({ url: target.url }, put.manifest);
      const t = client(target.port);
      expect(await t.get('before-request')).toBe('x');
      expect(await t.exists('after-fork')).toBe(0);
      expect(await t.get('k19')).toBe('19');
    } finally {
      other.destroy();
    }
  }, 60_000);

  it('a restore that cannot succeed leaves the target as it was: a corrupt chunk, a length other than recorded, a database the target lacks', async () => {
    const s = await server();
    const c = client(s.port, 0);
    for (let i = 0; i < 2000; i++) void c.set(`k${i}`, randomBytes(200));
    await client(s.port, 6).set('in-db6', 'x');
    const put = await backup({ url: s.url });
    const ref = await decodeStreamManifest(fromArray([put.manifest]));
    expect(ref.chunks.length).toBeGreaterThan(1);

    const target = await server(['--databases', '4']);
    const t = client(target.port);
    await t.set('keep', 'me');

    // a database the target does not have
    let err = await failure(restore({ url: target.url }, put.manifest));
    expect(err).toBeInstanceOf(ComponentError);
    expect(err.message).toBe('the snapshot has keys in database 6, which the target server does not have (it has 4 databases)');
    expect(await t.get('keep')).toBe('me');

    // a chunk that fails its check
    const copy = new MemoryRepo({ chunkSize: repo.chunkSize });
    for (const [id, data] of repo.chunks) copy.chunks.set(id, data);
    copy.corrupt(ref.chunks[1] as string);
    const big = await server();
    const b = client(big.port);
    await b.set('keep', 'me');
    err = await failure(restore({ url: big.url }, put.manifest, copy));
    expect(err).toBeInstanceOf(IntegrityError);
    expect(await b.get('keep')).toBe('me');

    // a stream shorter than its manifest says
    const short = new MemoryRepo({ chunkSize: repo.chunkSize });
    const shortRef = await short.writeStream(fromArray([(await collect(repo.read(ref.chunks))).subarray(0, 1000)]));
    const lying = Buffer.from(put.manifest.toString().replace(`"bytes":${ref.bytes}`, `"bytes":${shortRef.bytes}`).replace(/\{"chunks":.*\n/s, `{"chunks":${JSON.stringify(shortRef.chunks)}}\n`));
    const lyingRef = await decodeStreamManifest(fromArray([lying]));
    expect(lyingRef.bytes).toBe(1000);
    err = await failure(restore({ url: big.url }, lying, short));
    expect(err).toBeInstanceOf(ComponentError);
    expect(err.message).toBe('the snapshot is not a valid RDB file (redis-server refused to load it)');
    expect(await b.get('keep')).toBe('me');
    // bytes other than the manifest records
    const longer = { ...short, read: () => repo.read(ref.chunks) } as unknown as MemoryRepo;
    err = await failure(restore({ url: big.url }, lying, longer));
    expect(err).toBeInstanceOf(ArtifactChangedError);
    expect(await b.get('keep')).toBe('me');
  });

  it('an aborted restore leaves the target as it was, and no scratch server or temp file behind', async () => {
    const s = await server();
    await client(s.port).set('from-snapshot', BIG.subarray(0, 4 << 20));
    const put = await backup({ url: s.url });
    const target = await server();
    const t = client(target.port);
    await t.set('keep', 'me');
    const slow = new MemoryRepo({ chunkSize: repo.chunkSize });
    for (const [id, data] of repo.chunks) slow.chunks.set(id, data);
    slow.readDelayMs = 20;
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 150);
    const err = await failure(redisDriver.restore({ url: target.url }, { ...base, source: slow, manifest: fromArray([put.manifest]), signal: ac.signal }));
    expect(err.name).toBe('AbortError');
    expect(await t.get('keep')).toBe('me');
    expect(await t.exists('from-snapshot')).toBe(0);
    expect(readdirSync(tmpdir()).filter((n) => n.startsWith('bk-redis-restore-'))).toEqual([]);
    expect(execFileSync('ps', ['-eo', 'args']).toString()).not.toContain('bk-redis-restore-');
  });

  it('waits through the keepalives of a master that delays its diskless transfer', async () => {
    const delayed = await server(['--repl-diskless-sync-delay', '2']);
    await client(delayed.port).set('k', 'v');
    const started = Date.now();
    const put = await backup({ url: delayed.url });
    expect(Date.now() - started).toBeGreaterThan(1500);
    const target = await server();
    await restore({ url: target.url }, put.manifest);
    expect(await client(target.port).get('k')).toBe('v');
  });

  it('a server that dies mid-transfer errors the manifest', async () => {
    const dying = await server();
    const dc = client(dying.port);
    await dc.set('big', BIG);
    dc.disconnect();
    let killed = false;
    const slow: ChunkSink = {
      async writeStream(source) {
        let n = 0;
        for await (const piece of source) {
          n += piece.length;
          if (n > 1 << 20 && !killed) {
            killed = true;
            await dying.stop();
          }
        }
        return { chunks: [], bytes: n };
      },
      reuse: async (files) => files.map(() => false),
    };
    const snap = redisDriver.backup({ url: dying.url }, { ...base, sink: slow, previous: null });
    const err = await failure(collect(snap.manifest));
    expect(killed).toBe(true);
    expect(err).toBeInstanceOf(ComponentError);
    expect(err.message).toMatch(/^the (server closed the connection|connection failed \(ECONNRESET\)) before the snapshot was complete/);
  });

  it('aborting mid-backup errors the manifest and lets the server go', async () => {
    const ac = new AbortController();
    const slow: ChunkSink = {
      async writeStream(source) {
        let n = 0;
        for await (const piece of source) {
          n += piece.length;
          if (n > 1 << 20) ac.abort();
          await new Promise((r) => setTimeout(r, 5));
        }
        return { chunks: [], bytes: n };
      },
      reuse: async (files) => files.map(() => false),
    };
    const snap = redisDriver.backup({ url: src.url }, { ...base, sink: slow, previous: null, signal: ac.signal });
    const err = await failure(collect(snap.manifest));
    expect(err.name).toBe('AbortError');
    const info = client(src.port);
    await vi.waitFor(async () => expect(await info.info('replication')).toMatch(/connected_slaves:0/), { timeout: 5000 });
  });
});

describe('redis failures a tenant can cause', () => {
  let locked: ScratchRedisServer;
  const PASSWORD = 'S3cret/pa$$ word';
  const enc = encodeURIComponent(PASSWORD);

  beforeAll(async () => {
    locked = await server(['--requirepass', PASSWORD]);
    const admin = new Redis({ port: locked.port, host: '127.0.0.1', password: PASSWORD });
    clients.push(admin);
    await admin.acl('SETUSER', 'norepl', 'on', '>norepl-pw', '~*', '&*', '+@all', '-psync', '-sync', '-replconf');
    await admin.acl('SETUSER', 'noacl', 'on', '>noacl-pw', '~*', '&*', '+@all', '-acl', '-psync', '-sync');
    await admin.acl('SETUSER', 'replok', 'on', '>replok-pw', '~*', '&*', '+@all', '-acl');
    await admin.set('k', 'v');
  });

  const port = () => locked.port;

  it('wrong password, missing password and an unknown user: authentication failed, from backup, check and restore', async () => {
    for (const url of [`redis://:wrong@127.0.0.1:${port()}`, `redis://127.0.0.1:${port()}`, `redis://nobody:${enc}@127.0.0.1:${port()}`]) {
      const err = await failure(backup({ url }));
      expect(err).toBeInstanceOf(ComponentError);
      expect(err.message).toBe('authentication failed');
      expect(await checkRedisConnection(url, { targets })).toBe('authentication failed');
      const r = await failure(restore({ url }, Buffer.from('')));
      expect(r.message).toBe('authentication failed');
    }
    expect(await checkRedisConnection(`redis://:${enc}@127.0.0.1:${port()}`, { targets })).toBeNull();
    expect(await checkRedisConnection(`redis://replok:replok-pw@127.0.0.1:${port()}`, { targets })).toBeNull();
  });

  it('a database index the server does not have', async () => {
    const url = `redis://:${enc}@127.0.0.1:${port()}/99`;
    expect((await failure(backup({ url }))).message).toBe('database 99 does not exist on the server');
    expect(await checkRedisConnection(url, { targets })).toBe('database 99 does not exist on the server');
  });

  it('an unreachable server: refused, or no answer within the connect timeout', async () => {
    const closed = await new Promise<number>((resolve) => {
      const srv = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(p));
      });
    });
    const url = `redis://127.0.0.1:${closed}`;
    const err = await failure(backup({ url }));
    expect(err).toBeInstanceOf(ComponentError);
    expect(err.message).toBe('server unreachable (connection refused)');
    expect(await checkRedisConnection(url, { targets })).toBe('server unreachable (connection refused)');
    // a server that accepts TCP but never finishes TLS: the connect timeout
    const silent = net.createServer(() => {}).listen(0, '127.0.0.1');
    await new Promise((r) => silent.once('listening', r));
    try {
      const p = (silent.address() as net.AddressInfo).port;
      const started = Date.now();
      const e = await failure(backup({ url: `rediss://127.0.0.1:${p}`, connectTimeoutMs: 300 }));
      expect(e.message).toBe('server unreachable (no answer within 300 ms)');
      expect(Date.now() - started).toBeLessThan(3000);
      expect(await checkRedisConnection(`rediss://127.0.0.1:${p}`, { targets, connectTimeoutMs: 300 })).toBe('server unreachable (no answer within 300 ms)');
    } finally {
      silent.close();
    }
  });

  it('rediss:// speaks TLS to the checked address, names the URL host (SNI) and checks the certificate', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'bk-redis-tls-'));
    try {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-days', '1', '-keyout', `${dir}/k.pem`, '-out', `${dir}/c.pem`], { stdio: 'ignore' });
      // the SNI of the ClientHello (the client refuses the self-signed certificate afterwards)
      const sni: string[] = [];
      const wrapped = tls.createServer({
        SNICallback: (name, cb) => {
          sni.push(name);
          cb(null, tls.createSecureContext({ key: readFileSync(`${dir}/k.pem`), cert: readFileSync(`${dir}/c.pem`) }));
        },
      });
      wrapped.on('tlsClientError', () => {});
      await new Promise<void>((r) => wrapped.listen(0, '127.0.0.1', () => r()));
      const p = (wrapped.address() as net.AddressInfo).port;
      const pinned = createTargetPolicy({
        allowedHosts: parseAllowedHosts('127.0.0.1,localhost'),
        ownDatabaseUrl: 'postgresql://postgres@127.0.0.1:5432/x',
        resolve: async () => ['127.0.0.1'],
      });
      const err = await failure(redisDriver.backup({ url: `rediss://localhost:${p}` }, { ...base, targets: pinned, sink: repo, previous: null }).manifest[Symbol.asyncIterator]().next());
      expect(err).toBeInstanceOf(ComponentError);
      expect(err.message).toBe('server unreachable (TLS handshake failed: DEPTH_ZERO_SELF_SIGNED_CERT)');
      expect(sni).toEqual(['localhost']);
      wrapped.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a user without replication rights is told what to grant, by backup and by the check (with and without ACL DRYRUN)', async () => {
    const want = (user: string) => `the Redis user "${user}" may not replicate, which a snapshot needs: grant it +psync +replconf +sync (or +@admin)`;
    const norepl = `redis://norepl:norepl-pw@127.0.0.1:${port()}`;
    const noacl = `redis://noacl:noacl-pw@127.0.0.1:${port()}`;
    for (const [url, user] of [[norepl, 'norepl'], [noacl, 'noacl']] as const) {
      const err = await failure(backup({ url }));
      expect(err).toBeInstanceOf(ComponentError);
      expect(err.message).toBe(want(user));
      expect(err.message).not.toContain('pw');
      expect(await checkRedisConnection(url, { targets })).toBe(want(user));
    }
    // the check took no snapshot
    const admin = new Redis({ port: port(), host: '127.0.0.1', password: PASSWORD });
    clients.push(admin);
    expect(await admin.info('stats')).toMatch(/total_forks:0\b/);
    // replication rights, but no ACL DRYRUN: the PSYNC probe says yes, still without a fork
    expect(await checkRedisConnection(`redis://replok:replok-pw@127.0.0.1:${port()}`, { targets })).toBeNull();
    expect(await admin.info('stats')).toMatch(/total_forks:0\b/);
    expect(await admin.info('replication')).toMatch(/connected_slaves:0/);
    // and that user can back up
    const put = await backup({ url: `redis://replok:replok-pw@127.0.0.1:${port()}` });
    expect(put.bytes).toBeGreaterThan(0);
  });

  it("the service's own Redis is refused by the policy, under any name, before any connection", async () => {
    const connect = vi.spyOn(net, 'connect');
    const tlsConnect = vi.spyOn(tls, 'connect');
    try {
      const urls = ['redis://127.0.0.1:6379', 'redis://localhost:6379', 'redis://[::1]:6379', 'redis://[::ffff:127.0.0.1]:6379', 'rediss://127.0.0.1:6379/2'];
      for (const url of urls) {
        const err = await failure(backup({ url }));
        expect(err).toBeInstanceOf(ComponentError);
        expect(err.message).toMatch(/^redis target refused: /);
        expect(err.message).toBe("redis target refused: that is the backup service's own Redis server");
        expect(await checkRedisConnection(url, { targets })).toBe(err.message);
        const before = repo.readCalls;
        const r = await failure(restore({ url }, Buffer.from('')));
        expect(r.message).toBe(err.message);
        expect(repo.readCalls).toBe(before);
      }
      expect(connect).not.toHaveBeenCalled();
      expect(tlsConnect).not.toHaveBeenCalled();
    } finally {
      connect.mockRestore();
      tlsConnect.mockRestore();
    }
  });

  it('nothing connects before the manifest is read', async () => {
    const connect = vi.spyOn(net, 'connect');
    try {
      const snap = redisDriver.backup({ url: `redis://:${enc}@127.0.0.1:${port()}` }, { ...base, sink: repo, previous: null });
      await new Promise((r) => setTimeout(r, 50));
      expect(connect).not.toHaveBeenCalled();
      await collect(snap.manifest);
      expect(connect).toHaveBeenCalledTimes(1);
    } finally {
      connect.mockRestore();
    }
  });

  it('connects only to the addresses the policy checked, in order, the first that answers', async () => {
    const s = await server();
    await client(s.port).set('pinned', 'yes');
    const pinned = createTargetPolicy({
      allowedHosts: parseAllowedHosts('127.0.0.2,127.0.0.1'),
      ownDatabaseUrl: 'postgresql://postgres@127.0.0.1:5432/x',
      ownRedisUrl: 'redis://127.0.0.1:6379',
      resolve: async (host) => (host === 'cache.tenant.test' ? ['127.0.0.2', '127.0.0.1'] : ['127.0.0.1']),
    });
    const connect = vi.spyOn(net, 'connect');
    try {
      const snap = redisDriver.backup({ url: `redis://cache.tenant.test:${s.port}` }, { ...base, targets: pinned, sink: repo, previous: null });
      const manifest = await collect(snap.manifest);
      const hosts = connect.mock.calls.map((c) => (c[0] as unknown as { host?: string }).host);
      expect(hosts).toEqual(['127.0.0.2', '127.0.0.1']); // 127.0.0.2 refuses (the server listens on 127.0.0.1 only)
      const target = await server();
      await redisDriver.restore({ url: target.url }, { ...base, source: repo, manifest: fromArray([manifest]) });
      expect(await client(target.port).get('pinned')).toBe('yes');
    } finally {
      connect.mockRestore();
    }
  });

  it('a restore user without FLUSHALL/RESTORE is told what to grant before anything is flushed', async () => {
    const s = await server();
    await client(s.port).set('x', '1');
    const put = await backup({ url: s.url });
    const admin = new Redis({ port: locked.port, host: '127.0.0.1', password: PASSWORD });
    clients.push(admin);
    await admin.acl('SETUSER', 'norestore', 'on', '>nr-pw', '~*', '&*', '+@all', '-restore');
    const err = await failure(restore({ url: `redis://norestore:nr-pw@127.0.0.1:${port()}` }, put.manifest));
    expect(err).toBeInstanceOf(ComponentError);
    expect(err.message).toBe('the Redis user "norestore" may not restore: grant it +flushall +restore +select +ping (or +@all) on every key (~*)');
    expect(await admin.get('k')).toBe('v');
  });
});

describe('a hostile server', () => {
  it('cannot make the service buffer a reply no Redis server would send: the check refuses it at once', async () => {
    // Answers every command with a 4 GB bulk string, then trickles bytes for as long as it is read.
    const sockets = new Set<net.Socket>();
    const server = net.createServer((s) => {
      sockets.add(s);
      s.on('error', () => {});
      s.once('data', () => {
        s.write('$4000000000\r\n');
        const t = setInterval(() => s.writable && s.write(Buffer.alloc(64 * 1024, 120)), 5);
        s.on('close', () => clearInterval(t));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const { port } = server.address() as net.AddressInfo;
      const rss = process.memoryUsage().rss;
      const t0 = Date.now();
      const problem = await checkRedisConnection(`redis://127.0.0.1:${port}`);
      expect(problem).toMatch(/larger than a Redis server would/);
      expect(Date.now() - t0).toBeLessThan(5000);
      expect(process.memoryUsage().rss - rss).toBeLessThan(200 * 1024 * 1024);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    }
  });
});
