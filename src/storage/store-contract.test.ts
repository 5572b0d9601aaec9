/**
 * The operations a content-addressed repository reads and writes packs through (getRange, size,
 * list, putBuffer), run against both stores: the file store in a temp directory and the S3 store
 * against s3rver (see s3-test-server.ts). Store-specific cases follow the shared contract.
 */
import { ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { ArtifactNotFoundError, createFileStore, InvalidArtifactKeyError, RangeNotSatisfiableError, type ArtifactStore, type ListedArtifact } from './index.js';
import { createS3Store } from './s3-store.js';
import { S3_TEST_CREDENTIALS, startS3TestServer, type S3TestServer } from './s3-test-server.js';

const MiB = 1024 * 1024;
const BAD_KEYS = ['', '/abs/key', 'a/../b', '..', 'a//b', 'a/', './a', 'a/.hidden', 'a\\b', 'a\0b'];
const BAD_PREFIXES = ['a', '/', '/a/', 'a//', '../', './', 'a/../', '.hidden/', 'a\\b/'];

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

async function collect(listing: AsyncIterable<ListedArtifact>): Promise<ListedArtifact[]> {
  const out: ListedArtifact[] = [];
  for await (const item of listing) out.push(item);
  return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

async function keysOf(listing: AsyncIterable<ListedArtifact>): Promise<string[]> {
  return (await collect(listing)).map((i) => i.key);
}

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

interface Harness {
  store(): ArtifactStore;
  /** Asserts that nothing was stored or requested since the test began. */
  expectNoIo(): Promise<void>;
}

function contract(h: Harness): void {
  const data = randomBytes(256 * 1024 + 17);

  describe('getRange', () => {
    beforeEach(async () => {
      await h.store().putBuffer('packs/ab/pack-1', data);
    });

    it('returns exactly the bytes at the start, in the middle, at the end and the whole object', async () => {
      const s = h.store();
      const n = data.length;
      for (const [start, end] of [
        [0, 1], // s3rver serves `bytes=0-0` as the whole object (its `if (end)`): the store must still cut out 1 byte
        [1, 2],
        [0, 4096],
        [1000, 70_000],
        [n - 4096, n],
        [n - 1, n],
        [0, n],
      ] as const) {
        const got = await s.getRange('packs/ab/pack-1', start, end);
        expect(got.length, `[${start}, ${end})`).toBe(end - start);
        expect(got.equals(data.subarray(start, end)), `[${start}, ${end})`).toBe(true);
      }
      expect((await s.getRange('packs/ab/pack-1', 10, 10)).length).toBe(0);
      expect((await s.getRange('packs/ab/pack-1', n, n)).length).toBe(0);
    });

    it('refuses a range past the end instead of returning short data', async () => {
      const s = h.store();
      const n = data.length;
      for (const [start, end] of [
        [n - 10, n + 1], // overlaps the end: S3 would answer the 10 bytes it has
        [n, n + 1], // starts at the end
        [n + 100, n + 200], // starts past it
        [n + 1, n + 1], // empty, but past the end
        [0, n + 1],
      ] as const) {
        const err = await s.getRange('packs/ab/pack-1', start, end).then(
          () => null,
          (e: unknown) => e,
        );
        expect(err, `[${start}, ${end})`).toBeInstanceOf(RangeNotSatisfiableError);
        expect(err).toMatchObject({ name: 'RangeNotSatisfiableError', key: 'packs/ab/pack-1', start, end, size: n });
      }
    });

    it('handles an empty object', async () => {
      const s = h.store();
      await s.putBuffer('packs/empty', Buffer.alloc(0));
      expect((await s.getRange('packs/empty', 0, 0)).length).toBe(0);
      await expect(s.getRange('packs/empty', 0, 1)).rejects.toMatchObject({ name: 'RangeNotSatisfiableError', size: 0 });
    });

    it('throws ArtifactNotFoundError for a missing key, also for an empty range', async () => {
      const s = h.store();
      await expect(s.getRange('packs/ab/missing', 0, 10)).rejects.toBeInstanceOf(ArtifactNotFoundError);
      await expect(s.getRange('packs/ab/missing', 0, 10)).rejects.toMatchObject({ key: 'packs/ab/missing' });
      await expect(s.getRange('packs/ab/missing', 5, 5)).rejects.toBeInstanceOf(ArtifactNotFoundError);
      await expect(s.getRange('packs/ab', 0, 1)).rejects.toBeInstanceOf(ArtifactNotFoundError); // a "directory"
    });
  });

  describe('size', () => {
    it('is the byte size, and ArtifactNotFoundError when missing', async () => {
      const s = h.store();
      await s.putBuffer('a/b', data);
      await s.putBuffer('a/empty', Buffer.alloc(0));
      expect(await s.size('a/b')).toBe(data.length);
      expect(await s.size('a/empty')).toBe(0);
      await expect(s.size('a/missing')).rejects.toBeInstanceOf(ArtifactNotFoundError);
      await expect(s.size('a')).rejects.toBeInstanceOf(ArtifactNotFoundError);
    });
  });

  describe('putBuffer', () => {
    it('stores the buffer, visible to every read, and replaces an existing key', async () => {
      const s = h.store();
      expect(await s.putBuffer('packs/cd/pack-2', data)).toEqual({ bytes: data.length, sha256: sha256(data) });
      expect(await s.exists('packs/cd/pack-2')).toBe(true);
      expect((await readAll(await s.get('packs/cd/pack-2'))).equals(data)).toBe(true);
      expect(await collect(s.list('packs/'))).toMatchObject([{ key: 'packs/cd/pack-2', bytes: data.length }]);

      const second = Buffer.from('replaced');
      expect(await s.putBuffer('packs/cd/pack-2', second)).toEqual({ bytes: second.length, sha256: sha256(second) });
      expect((await s.getRange('packs/cd/pack-2', 0, second.length)).toString()).toBe('replaced');
      expect(await s.size('packs/cd/pack-2')).toBe(second.length);
    });

    it('stores a 16 MiB pack', async () => {
      const s = h.store();
      const pack = randomBytes(16 * MiB);
      expect(await s.putBuffer('packs/ef/pack-16m', pack)).toEqual({ bytes: pack.length, sha256: sha256(pack) });
      expect(await s.size('packs/ef/pack-16m')).toBe(pack.length);
      const tail = await s.getRange('packs/ef/pack-16m', pack.length - MiB - 3, pack.length);
      expect(tail.equals(pack.subarray(pack.length - MiB - 3))).toBe(true);
    });
  });

  describe('list', () => {
    it('lists every key under nested prefixes and under the empty prefix, with sizes and times', async () => {
      const s = h.store();
      const before = Date.now() - 2_000; // file systems and S3 round mtimes
      await s.putBuffer('packs/00/p1', Buffer.from('1'));
      await s.putBuffer('packs/00/p2', Buffer.from('22'));
      await s.putBuffer('packs/01/p3', Buffer.from('333'));
      await s.putBuffer('packs/010/p4', Buffer.from('4444')); // shares a string prefix with packs/01/
      await s.putBuffer('snapshots/s1', Buffer.from('snap'));
      await s.putBuffer('top', Buffer.from('t'));

      const all = await collect(s.list(''));
      expect(all.map((i) => [i.key, i.bytes])).toEqual([
        ['packs/00/p1', 1],
        ['packs/00/p2', 2],
        ['packs/01/p3', 3],
        ['packs/010/p4', 4],
        ['snapshots/s1', 4],
        ['top', 1],
      ]);
      for (const item of all) {
        expect(item.modifiedAt).toBeInstanceOf(Date);
        expect(item.modifiedAt.getTime()).toBeGreaterThanOrEqual(before);
        expect(item.modifiedAt.getTime()).toBeLessThanOrEqual(Date.now() + 2_000);
      }
      expect(await keysOf(s.list('packs/'))).toEqual(['packs/00/p1', 'packs/00/p2', 'packs/01/p3', 'packs/010/p4']);
      expect(await keysOf(s.list('packs/01/'))).toEqual(['packs/01/p3']);
      expect(await keysOf(s.list('packs/00/'))).toEqual(['packs/00/p1', 'packs/00/p2']);
      expect(await keysOf(s.list('nothing/here/'))).toEqual([]);
      expect(await keysOf(s.list('top/'))).toEqual([]); // a key is not a prefix of itself

      // Every listed key reads back at its listed size.
      for (const item of all) expect(await s.size(item.key)).toBe(item.bytes);
    });

    it('is empty for an empty store', async () => {
      expect(await keysOf(h.store().list(''))).toEqual([]);
    });

    it('does not list a put that is still pending', async () => {
      const s = h.store();
      await s.putBuffer('packs/00/done', Buffer.from('done'));
      const body = new PassThrough();
      const pending = s.put('packs/00/pending', body);
      body.write(randomBytes(64 * 1024));
      await new Promise((resolve) => setTimeout(resolve, 50)); // let the temp file / upload start
      expect(await keysOf(s.list(''))).toEqual(['packs/00/done']);
      expect(await keysOf(s.list('packs/00/'))).toEqual(['packs/00/done']);
      body.end(Buffer.from('end'));
      await pending;
      expect(await keysOf(s.list('packs/00/'))).toEqual(['packs/00/done', 'packs/00/pending']);
    });

    it('can be left early', async () => {
      const s = h.store();
      for (let i = 0; i < 5; i++) await s.putBuffer(`a/${i}/x`, Buffer.from('x'));
      let seen = 0;
      for await (const _ of s.list('a/')) if (++seen === 2) break;
      expect(seen).toBe(2);
      expect((await keysOf(s.list('a/'))).length).toBe(5);
    });
  });

  describe('key checks', () => {
    it.each(BAD_KEYS)('refuses the key %j before any I/O', async (key) => {
      const s = h.store();
      await expect(s.getRange(key, 0, 1)).rejects.toBeInstanceOf(InvalidArtifactKeyError);
      await expect(s.size(key)).rejects.toBeInstanceOf(InvalidArtifactKeyError);
      await expect(s.putBuffer(key, Buffer.from('x'))).rejects.toBeInstanceOf(InvalidArtifactKeyError);
      await h.expectNoIo();
    });

    it.each(BAD_PREFIXES)('refuses the prefix %j before any I/O', async (prefix) => {
      const s = h.store();
      expect(() => s.list(prefix)).toThrow(InvalidArtifactKeyError);
      await expect(s.deletePrefix(prefix)).rejects.toBeInstanceOf(InvalidArtifactKeyError);
      await h.expectNoIo();
    });

    it.each([
      [-1, 5],
      [5, 4],
      [0.5, 2],
      [0, Number.NaN],
      [0, Infinity],
    ])('refuses the range [%d, %d) before any I/O', async (start, end) => {
      await expect(h.store().getRange('a/b', start, end)).rejects.toBeInstanceOf(RangeError);
      await h.expectNoIo();
    });

    it('never echoes the store URL in errors', async () => {
      const s = h.store();
      const errors = await Promise.all([
        s.getRange('a/missing', 0, 1).catch((e: unknown) => e),
        s.size('a/missing').catch((e: unknown) => e),
        s.getRange('a/.x', 0, 1).catch((e: unknown) => e),
      ]);
      for (const err of errors) {
        expect(err).toBeInstanceOf(Error);
        expect((err as Error).message).not.toContain(s.url);
        expect((err as Error).message).not.toContain('://');
      }
    });
  });
}

// ---- file store ---------------------------------------------------------------------------

describe('file store', () => {
  let root: string;
  let store: ArtifactStore;

  beforeEach(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'store-contract-'));
    store = createFileStore(root);
  });
  afterEach(async () => {
    vi.restoreAllMocks();
    await rm(root, { recursive: true, force: true });
  });

  contract({
    store: () => store,
    async expectNoIo() {
      expect(await readdir(root)).toEqual([]);
    },
  });

  it('skips its own temp files, dot-entries and symlinks when listing', async () => {
    await store.putBuffer('packs/00/p1', Buffer.from('1'));
    await writeFile(path.join(root, 'packs/00/.p2.0123456789abcdef.partial'), 'half');
    await mkdir(path.join(root, '.hidden-dir'));
    await writeFile(path.join(root, '.hidden-dir/x'), 'x');
    await import('node:fs/promises').then((fs) => fs.symlink(path.join(root, 'packs/00/p1'), path.join(root, 'packs/00/link')));
    expect(await keysOf(store.list(''))).toEqual(['packs/00/p1']);
    expect(await keysOf(store.list('packs/00/'))).toEqual(['packs/00/p1']);
  });

  it('lists a large directory and closes directory handles when left early', async () => {
    const many = Array.from({ length: 1500 }, (_, i) => `big/${String(i).padStart(4, '0')}`);
    await mkdir(path.join(root, 'big'));
    for (let i = 0; i < many.length; i += 100) {
      await Promise.all(many.slice(i, i + 100).map((k) => writeFile(path.join(root, ...k.split('/')), 'x')));
    }
    expect(await keysOf(store.list('big/'))).toEqual(many);

    const fds = async () => (await readdir('/proc/self/fd').catch(() => null))?.length;
    const before = await fds();
    for (let round = 0; round < 20; round++) {
      for await (const _ of store.list('')) break;
    }
    if (before !== undefined) expect(await fds()).toBeLessThanOrEqual(before + 2);
  });

  it('putBuffer fsyncs the file and the directory before returning', async () => {
    const probe = await open(path.join(root, 'probe'), 'w');
    const proto = Object.getPrototypeOf(probe) as { sync: () => Promise<void> };
    await probe.close();
    await rm(path.join(root, 'probe'));
    const sync = vi.spyOn(proto, 'sync');
    await store.putBuffer('packs/00/p', randomBytes(1000));
    expect(sync).toHaveBeenCalledTimes(2); // the temp file, then its directory after the rename
  });

  it('putBuffer leaves nothing behind when it fails, and keeps what was there', async () => {
    await store.putBuffer('a/b/c', Buffer.from('keep'));
    // 'a/b' is a directory: renaming a file over it fails after the temp file was written.
    await expect(store.putBuffer('a/b', randomBytes(1000))).rejects.toMatchObject({ code: expect.stringMatching(/^E/) });
    expect(await keysOf(store.list(''))).toEqual(['a/b/c']);
    expect(await readdir(path.join(root, 'a'))).toEqual(['b']);
    expect(await readdir(path.join(root, 'a/b'))).toEqual(['c']);
    expect((await store.getRange('a/b/c', 0, 4)).toString()).toBe('keep');
  });

  it('getRange of a file truncated in place is refused, not short', async () => {
    await store.putBuffer('a/p', randomBytes(10_000));
    const handle = await open(path.join(root, 'a/p'), 'r+');
    await handle.truncate(5000);
    await handle.close();
    await expect(store.getRange('a/p', 4000, 6000)).rejects.toMatchObject({ name: 'RangeNotSatisfiableError', size: 5000 });
    expect((await store.getRange('a/p', 4000, 5000)).length).toBe(1000);
  });
});

// ---- s3 store -----------------------------------------------------------------------------

describe('s3 store', () => {
  const BUCKET = 'contract';
  let server: S3TestServer;
  let raw: S3Client;
  let store: ArtifactStore;
  let prefix: string;

  beforeAll(async () => {
    server = await startS3TestServer([BUCKET]);
    raw = new S3Client({ endpoint: server.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: S3_TEST_CREDENTIALS });
  });
  afterAll(async () => {
    raw?.destroy();
    await server?.close();
  });
  beforeEach(async () => {
    prefix = `run-${randomBytes(4).toString('hex')}`;
    store = createS3Store(`s3://${BUCKET}/${prefix}`, { endpoint: server.endpoint, ...S3_TEST_CREDENTIALS });
    await server.resetRequests();
  });

  contract({
    store: () => store,
    async expectNoIo() {
      expect(await server.requests()).toEqual([]);
    },
  });

  const isPutObject = (r: string) => r.startsWith('PUT ') && !r.includes('partNumber') && !r.includes('uploadId');
  const isMultipart = (r: string) => r.includes('uploads') || r.includes('uploadId') || r.includes('partNumber');

  it('putBuffer sends one PutObject, no multipart, for a 64 MiB body', async () => {
    const body = randomBytes(64 * MiB);
    await server.resetRequests();
    expect(await store.putBuffer('packs/big', body)).toEqual({ bytes: body.length, sha256: sha256(body) });
    const requests = await server.requests();
    expect(requests.filter(isPutObject)).toHaveLength(1);
    expect(requests.filter(isMultipart)).toEqual([]);
    expect(await store.size('packs/big')).toBe(body.length);
    expect((await store.getRange('packs/big', 32 * MiB, 32 * MiB + 100)).equals(body.subarray(32 * MiB, 32 * MiB + 100))).toBe(true);
  }, 60_000);

  it('getRange sends one ranged GetObject, size one HeadObject', async () => {
    await store.putBuffer('a/p', randomBytes(5000));
    await server.resetRequests();
    await store.getRange('a/p', 100, 200);
    await store.size('a/p');
    expect(await server.requests()).toEqual([`GET /${BUCKET}/${prefix}/a/p?x-id`, `HEAD /${BUCKET}/${prefix}/a/p?`]);
    // A range starting past the end: S3's InvalidRange carries the object's size, no HeadObject needed.
    await server.resetRequests();
    await expect(store.getRange('a/p', 6000, 7000)).rejects.toMatchObject({ name: 'RangeNotSatisfiableError', size: 5000 });
    expect(await server.requests()).toEqual([`GET /${BUCKET}/${prefix}/a/p?x-id`]);
  });

  it('lists more than one ListObjectsV2 page, only under its own prefix, skipping foreign keys', async () => {
    const other = createS3Store(`s3://${BUCKET}/${prefix}-other`, { endpoint: server.endpoint, ...S3_TEST_CREDENTIALS });
    await other.putBuffer('packs/00/p', Buffer.from('other store'));
    const many = Array.from({ length: 1003 }, (_, i) => `packs/${String(i % 7).padStart(2, '0')}/${String(i).padStart(4, '0')}`);
    for (let i = 0; i < many.length; i += 100) {
      await Promise.all(many.slice(i, i + 100).map((k) => raw.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${prefix}/${k}`, Body: 'xy' }))));
    }
    // Objects another tool wrote that are not valid keys of this store.
    await raw.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${prefix}/packs/folder/`, Body: Buffer.from('f') }));
    await raw.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${prefix}/packs/.tmp`, Body: Buffer.from('f') }));
    await server.resetRequests();

    const listed = await collect(store.list(''));
    expect(listed.map((i) => i.key)).toEqual([...many].sort());
    expect(listed.every((i) => i.bytes === 2)).toBe(true);
    expect(await server.requests()).toEqual([`GET /${BUCKET}/?list-type&prefix`, `GET /${BUCKET}/?continuation-token&list-type&prefix`]);

    expect(await keysOf(store.list('packs/03/'))).toEqual(many.filter((k) => k.startsWith('packs/03/')).sort());
    expect(await keysOf(other.list(''))).toEqual(['packs/00/p']);

    const direct = await raw.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${prefix}/packs/` }));
    expect(direct.KeyCount).toBe(1000); // sanity: a page holds 1000 keys, so the store followed a continuation
    await store.deletePrefix('packs/');
    await other.deletePrefix('packs/');
  }, 60_000);

  it('a store without a prefix lists the whole bucket', async () => {
    const bucketStore = createS3Store(`s3://${BUCKET}`, { endpoint: server.endpoint, ...S3_TEST_CREDENTIALS });
    await store.putBuffer('x/y', Buffer.from('z'));
    const keys = await keysOf(bucketStore.list(`${prefix}/`));
    expect(keys).toEqual([`${prefix}/x/y`]);
    expect(await keysOf(bucketStore.list(''))).toContain(`${prefix}/x/y`);
  });

  it('surfaces a missing bucket from getRange and list', async () => {
    const wrong = createS3Store('s3://no-such-bucket/x', { endpoint: server.endpoint, ...S3_TEST_CREDENTIALS });
    await expect(wrong.getRange('k', 0, 1)).rejects.toMatchObject({ name: 'NoSuchBucket' });
    await expect(collect(wrong.list(''))).rejects.toMatchObject({ name: 'NoSuchBucket' });
  });
});

// ---- an S3 endpoint that misbehaves -------------------------------------------------------

describe('s3 store against a server that answers ranges wrongly', () => {
  const object = randomBytes(1000);
  type Mode = 'truncated' | 'short-body' | 'wrong-range' | 'ignores-range' | 'superset';
  let mode: Mode = 'truncated';
  let http: Server;
  let store: ArtifactStore;

  beforeAll(async () => {
    http = createServer((req, res) => {
      const match = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
      const start = Number(match?.[1] ?? 0);
      const last = Number(match?.[2] ?? object.length - 1);
      const partial = (first: number, end: number, body: Buffer, length = body.length) => {
        res.writeHead(206, { 'Content-Range': `bytes ${first}-${end}/${object.length}`, 'Content-Length': String(length) });
        return body;
      };
      switch (mode) {
        case 'truncated': {
          res.writeHead(206, { 'Content-Range': `bytes ${start}-${last}/${object.length}`, 'Content-Length': String(last + 1 - start) });
          res.write(object.subarray(start, start + (last + 1 - start) / 2));
          setTimeout(() => res.destroy(), 10);
          return;
        }
        case 'short-body':
          return res.end(partial(start, last, object.subarray(start, start + 5)));
        case 'wrong-range':
          return res.end(partial(start + 1, last + 1, object.subarray(start + 1, last + 2)));
        case 'ignores-range':
          res.writeHead(200, { 'Content-Length': String(object.length) });
          return res.end(object);
        case 'superset':
          return res.end(partial(0, object.length - 1, object));
      }
    });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    const { port } = http.address() as AddressInfo;
    store = createS3Store('s3://bucket/p', { endpoint: `http://127.0.0.1:${port}`, ...S3_TEST_CREDENTIALS });
  });
  afterAll(async () => {
    http.closeAllConnections();
    await new Promise((resolve) => http.close(resolve));
  });

  it.each([
    ['truncated', /./], // the connection drops mid-body: whatever the SDK's stream reports
    ['short-body', /^S3 GetObject body ended after 5 of the 200 bytes of the range$/],
    ['wrong-range', /^S3 GetObject answered bytes 101-300 for bytes 100-299$/],
  ] as const)('refuses a %s answer rather than return other bytes', async (m, message) => {
    mode = m;
    const err = await store.getRange('k', 100, 300).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).not.toContain('127.0.0.1');
  });

  it.each(['ignores-range', 'superset'] as const)('cuts the range out of a %s answer', async (m) => {
    mode = m;
    expect((await store.getRange('k', 100, 300)).equals(object.subarray(100, 300))).toBe(true);
    await expect(store.getRange('k', 900, 1001)).rejects.toMatchObject({ name: 'RangeNotSatisfiableError', size: 1000 });
  });
});
