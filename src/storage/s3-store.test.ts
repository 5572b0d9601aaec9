import {
  CreateMultipartUploadCommand,
  GetObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ArtifactNotFoundError, createStore, InvalidArtifactKeyError, putJson, sha256OfStream, type ArtifactStore } from './index.js';
import { createS3Store, parseS3Url, resolveS3Options } from './s3-store.js';
import { S3_TEST_CREDENTIALS, startS3TestServer, type S3TestServer } from './s3-test-server.js';

const BUCKET = 'artifacts';
const MiB = 1024 * 1024;

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
  // A fresh store prefix per test keeps tests independent inside one bucket.
  prefix = `run-${randomBytes(4).toString('hex')}`;
  store = createS3Store(`s3://${BUCKET}/${prefix}`, { endpoint: server.endpoint, ...S3_TEST_CREDENTIALS });
  await server.resetRequests();
});

/** Every object key in the bucket under `p`, sorted. */
async function listKeys(p = ''): Promise<string[]> {
  const keys: string[] = [];
  let ContinuationToken: string | undefined;
  do {
    const page = await raw.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: p, ContinuationToken }));
    for (const o of page.Contents ?? []) if (o.Key) keys.push(o.Key);
    ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (ContinuationToken);
  return keys.sort();
}

async function inProgressUploads(p = `${prefix}/`): Promise<string[]> {
  const out = await raw.send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: p }));
  return (out.Uploads ?? []).map((u) => u.Key ?? '?');
}

async function sent(operation: 'UploadPart' | 'CompleteMultipartUpload' | 'AbortMultipartUpload'): Promise<number> {
  const match = {
    UploadPart: (r: string) => r.startsWith('PUT ') && r.includes('partNumber'),
    CompleteMultipartUpload: (r: string) => r.startsWith('POST ') && r.includes('uploadId'),
    AbortMultipartUpload: (r: string) => r.startsWith('DELETE ') && r.includes('uploadId'),
  }[operation];
  return (await server.requests()).filter(match).length;
}

/** `total` pseudo-random bytes made 1 MiB at a time as the consumer pulls, hashed as they are handed out. */
function lazyBody(total: number, opts: { failAfter?: number; failure?: Error } = {}) {
  const hash = createHash('sha256');
  let produced = 0;
  const stream = new Readable({
    highWaterMark: MiB,
    read() {
      if (opts.failAfter !== undefined && produced >= opts.failAfter) {
        this.destroy(opts.failure ?? new Error('body failed'));
        return;
      }
      if (produced >= total) {
        this.push(null);
        return;
      }
      const chunk = randomBytes(Math.min(MiB, total - produced));
      produced += chunk.length;
      hash.update(chunk);
      this.push(chunk);
    },
  });
  return { stream, digest: () => hash.digest('hex'), produced: () => produced };
}

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

describe('s3 store', () => {
  it('streams a multipart-sized artifact and records the hash and size of what S3 serves back', async () => {
    const total = 20 * MiB + 12_345; // three 8 MiB parts, the last one short
    const body = lazyBody(total);
    const progress: number[] = [];
    const result = await store.put('tenant/cluster/backup/db.pgdump', body.stream, { onProgress: (n) => progress.push(n) });

    expect(result).toEqual({ bytes: total, sha256: body.digest() });
    expect(await sent('UploadPart')).toBe(3);
    expect(await sent('CompleteMultipartUpload')).toBe(1);
    expect(await inProgressUploads()).toEqual([]);
    expect(progress.at(-1)).toBe(total);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));

    // Download through the raw client (the object really sits at prefix/key) and through the store.
    const direct = await raw.send(new GetObjectCommand({ Bucket: BUCKET, Key: `${prefix}/tenant/cluster/backup/db.pgdump` }));
    expect(await sha256OfStream(direct.Body as Readable)).toEqual(result);
    expect(await sha256OfStream(await store.get('tenant/cluster/backup/db.pgdump'))).toEqual(result);
    expect(store.locationOf('tenant/cluster/backup/db.pgdump')).toBe(`s3://${BUCKET}/${prefix}/tenant/cluster/backup/db.pgdump`);
    expect(store.url).toBe(`s3://${BUCKET}/${prefix}`);
  });

  it('round-trips small and empty artifacts with a single PutObject', async () => {
    const data = Buffer.concat([randomBytes(100_000), Buffer.from('tail')]);
    const result = await store.put('a/small', Readable.from([data.subarray(0, 5), data.subarray(5)]));
    expect(result).toEqual({ bytes: data.length, sha256: createHash('sha256').update(data).digest('hex') });
    expect((await readAll(await store.get('a/small'))).equals(data)).toBe(true);
    expect(await sent('UploadPart')).toBe(0);

    expect(await store.put('a/empty', Readable.from([]))).toEqual({ bytes: 0, sha256: createHash('sha256').digest('hex') });
    expect((await readAll(await store.get('a/empty'))).length).toBe(0);
  });

  it('answers exists, get and delete for present and missing keys, idempotently', async () => {
    await store.put('t/c/b/db.pgdump', Readable.from([Buffer.from('dump')]));
    expect(await store.exists('t/c/b/db.pgdump')).toBe(true);
    expect(await store.exists('t/c/b')).toBe(false); // no directories in S3
    await store.put('t/c/b/db.pgdump', Readable.from([Buffer.from('two')]));
    expect((await readAll(await store.get('t/c/b/db.pgdump'))).toString()).toBe('two');

    await store.delete('t/c/b/db.pgdump');
    expect(await store.exists('t/c/b/db.pgdump')).toBe(false);
    await expect(store.get('t/c/b/db.pgdump')).rejects.toBeInstanceOf(ArtifactNotFoundError);
    await expect(store.get('never/written')).rejects.toMatchObject({ name: 'ArtifactNotFoundError', key: 'never/written' });
    await store.delete('t/c/b/db.pgdump'); // idempotent
    expect(await listKeys(`${prefix}/`)).toEqual([]);
  });

  it('surfaces a missing bucket instead of calling the artifact missing', async () => {
    const wrong = createS3Store('s3://no-such-bucket/x', { endpoint: server.endpoint, ...S3_TEST_CREDENTIALS });
    await expect(wrong.get('k')).rejects.toMatchObject({ name: 'NoSuchBucket' });
  });

  it('deletes every key under a prefix across nested prefixes and pages, and nothing else', async () => {
    const other = createS3Store(`s3://${BUCKET}/${prefix}-other`, { endpoint: server.endpoint, ...S3_TEST_CREDENTIALS });
    await other.put('t/c/b1/db.pgdump', Readable.from([Buffer.from('other store')]));
    await store.put('t/c/b1/files.tar.gz', Readable.from([Buffer.from('1')]));
    await store.put('t/c/b1/nested/deeper/part', Readable.from([Buffer.from('2')]));
    await store.put('t/c/b10/db.pgdump', Readable.from([Buffer.from('3')]));
    await store.put('t/c2/b1/db.pgdump', Readable.from([Buffer.from('4')]));
    await putJson(store, 't/c/b1/manifest.json', { ok: true });
    // 1005 more keys: two ListObjectsV2 pages, and more than one DeleteObjects batch's worth.
    const many = Array.from({ length: 1005 }, (_, i) => `${prefix}/t/c/b1/many/${String(i).padStart(4, '0')}`);
    for (let i = 0; i < many.length; i += 50) {
      await Promise.all(many.slice(i, i + 50).map((Key) => raw.send(new PutObjectCommand({ Bucket: BUCKET, Key, Body: 'x' }))));
    }
    // A multipart upload a killed worker left under the prefix, and one outside it.
    await raw.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: `${prefix}/t/c/b1/crashed.tar.gz` }));
    await raw.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: `${prefix}/t/c/b10/crashed.tar.gz` }));

    await store.deletePrefix('t/c/b1/');
    expect(await listKeys(`${prefix}/`)).toEqual([`${prefix}/t/c/b10/db.pgdump`, `${prefix}/t/c2/b1/db.pgdump`]);
    expect(await inProgressUploads(`${prefix}/`)).toEqual([`${prefix}/t/c/b10/crashed.tar.gz`]);
    expect(await other.exists('t/c/b1/db.pgdump')).toBe(true);

    await store.deletePrefix('t/c/b1/'); // idempotent
    await store.deletePrefix('t/');
    expect(await listKeys(`${prefix}/`)).toEqual([]);
    expect(await inProgressUploads(`${prefix}/`)).toEqual([]);
    await expect(store.deletePrefix('t/c')).rejects.toBeInstanceOf(InvalidArtifactKeyError);
    await expect(store.deletePrefix('../')).rejects.toBeInstanceOf(InvalidArtifactKeyError);
    await other.deletePrefix('t/');
  });

  it('rejects with the body error after parts were sent, leaving no object and no multipart upload', async () => {
    const failure = new Error('pg_dump exited with code 1');
    const body = lazyBody(64 * MiB, { failAfter: 18 * MiB, failure });
    await expect(store.put('t/c/b/db.pgdump', body.stream)).rejects.toBe(failure);

    expect(await sent('UploadPart')).toBeGreaterThanOrEqual(1); // a real multipart upload existed
    expect(await sent('AbortMultipartUpload')).toBeGreaterThanOrEqual(1);
    expect(await sent('CompleteMultipartUpload')).toBe(0);
    expect(await inProgressUploads()).toEqual([]);
    expect(await store.exists('t/c/b/db.pgdump')).toBe(false);
    expect(await listKeys(`${prefix}/`)).toEqual([]);
  });

  it('keeps the previous object when a replacing put fails early', async () => {
    await store.put('t/c/b/manifest.json', Readable.from([Buffer.from('one')]));
    const failure = new Error('early failure');
    await expect(store.put('t/c/b/manifest.json', lazyBody(MiB, { failAfter: 0, failure }).stream)).rejects.toBe(failure);
    expect((await readAll(await store.get('t/c/b/manifest.json'))).toString()).toBe('one');
    expect(await inProgressUploads()).toEqual([]);
  });

  it('stops on abort, destroys the body and cleans up', async () => {
    const controller = new AbortController();
    const body = lazyBody(64 * MiB);
    const put = store.put('t/c/b/files.tar.gz', body.stream, {
      signal: controller.signal,
      onProgress: (n) => {
        if (n >= 12 * MiB) controller.abort();
      },
    });
    await expect(put).rejects.toMatchObject({ name: 'AbortError' });
    expect(body.stream.destroyed).toBe(true);
    expect(body.produced()).toBeLessThan(64 * MiB);
    expect(await inProgressUploads()).toEqual([]);
    expect(await listKeys(`${prefix}/`)).toEqual([]);

    const aborted = AbortSignal.abort();
    const early = Readable.from([Buffer.from('x')]);
    await expect(store.put('t/c/b/early', early, { signal: aborted })).rejects.toMatchObject({ name: 'AbortError' });
    expect(early.destroyed).toBe(true);
  });

  it.each(['', '/abs/key', 'a/../b', '..', 'a//b', 'a/', './a', 'a/.hidden', 'a\\b', 'a\0b'])('rejects the key %j', async (key) => {
    const body = Readable.from([Buffer.from('x')]);
    await expect(store.put(key, body)).rejects.toBeInstanceOf(InvalidArtifactKeyError);
    expect(body.destroyed).toBe(true);
    await expect(store.get(key)).rejects.toBeInstanceOf(InvalidArtifactKeyError);
    await expect(store.exists(key)).rejects.toBeInstanceOf(InvalidArtifactKeyError);
    await expect(store.delete(key)).rejects.toBeInstanceOf(InvalidArtifactKeyError);
    expect(() => store.locationOf(key)).toThrow(InvalidArtifactKeyError);
    expect(await server.requests()).toEqual([]); // refused before any request
  });
});

describe('s3 configuration', () => {
  it('parses bucket and prefix, refusing credentials and malformed URLs without echoing them', () => {
    expect(parseS3Url('s3://my-bucket')).toEqual({ bucket: 'my-bucket', prefix: '' });
    expect(parseS3Url('s3://my-bucket/')).toEqual({ bucket: 'my-bucket', prefix: '' });
    expect(parseS3Url('s3://my.bucket/backups/prod/')).toEqual({ bucket: 'my.bucket', prefix: 'backups/prod' });
    for (const bad of ['s3://AKIA:secret@bucket/p', 's3://Bad_Bucket/p', 's3://bucket//p', 's3://bucket:9000/p', 's3://bucket/p?secret=1', 's3://bucket/%E0%A4%A']) {
      expect(() => parseS3Url(bad), bad).toThrow();
      try {
        parseS3Url(bad);
      } catch (err) {
        expect((err as Error).message).not.toContain('secret');
      }
    }
  });

  it('takes the environment when options are omitted, options first', () => {
    expect(resolveS3Options({}, {})).toEqual({ endpoint: undefined, region: 'us-east-1', credentials: undefined, forcePathStyle: false });
    const env = { S3_ENDPOINT: 'http://127.0.0.1:4569', S3_REGION: 'eu-west-1', S3_ACCESS_KEY_ID: 'id', S3_SECRET_ACCESS_KEY: 'key' };
    expect(resolveS3Options({}, env)).toEqual({
      endpoint: 'http://127.0.0.1:4569',
      region: 'eu-west-1',
      credentials: { accessKeyId: 'id', secretAccessKey: 'key' },
      forcePathStyle: true,
    });
    expect(resolveS3Options({}, { ...env, S3_FORCE_PATH_STYLE: 'false' }).forcePathStyle).toBe(false);
    expect(resolveS3Options({ region: 'ap-south-1', forcePathStyle: false, accessKeyId: 'o', secretAccessKey: 'p' }, env)).toMatchObject({
      region: 'ap-south-1',
      forcePathStyle: false,
      credentials: { accessKeyId: 'o', secretAccessKey: 'p' },
    });
    expect(() => resolveS3Options({}, { S3_ACCESS_KEY_ID: 'id' })).toThrow('must be set together');
    expect(() => resolveS3Options({}, { S3_FORCE_PATH_STYLE: 'maybe' })).toThrow('S3_FORCE_PATH_STYLE');
    expect(() => resolveS3Options({}, { S3_ENDPOINT: 'ftp://u:secret@host' })).toThrow(/^S3 endpoint must be an http\(s\) URL$/);
  });

  it('is what createStore opens for s3:// URLs', () => {
    const s = createStore(`s3://${BUCKET}/some/prefix/`);
    expect(s.url).toBe(`s3://${BUCKET}/some/prefix`);
    expect(s.locationOf('k/v')).toBe(`s3://${BUCKET}/some/prefix/k/v`);
  });

  /** Runs `fn` with these S3_* settings in process.env, then puts the old ones back. */
  async function withS3Env<T>(vars: Record<string, string>, fn: () => T | Promise<T>): Promise<T> {
    const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
    Object.assign(process.env, vars);
    try {
      return await fn();
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  }

  it('createStore loads the SDK at first use, and its store does every operation', async () => {
    const env = { S3_ENDPOINT: server.endpoint, S3_ACCESS_KEY_ID: S3_TEST_CREDENTIALS.accessKeyId, S3_SECRET_ACCESS_KEY: S3_TEST_CREDENTIALS.secretAccessKey };
    await withS3Env(env, async () => {
      const s = createStore(`s3://${BUCKET}/${prefix}`);
      expect(() => s.locationOf('../x')).toThrow(InvalidArtifactKeyError);
      await s.putBuffer('a/one', Buffer.from('hello'));
      await s.put('a/two', Readable.from([Buffer.from('world!')]));
      expect(await s.exists('a/one')).toBe(true);
      expect((await s.getRange('a/one', 1, 4)).toString()).toBe('ell');
      expect(await s.size('a/two')).toBe(6);
      const chunks: Buffer[] = [];
      for await (const c of await s.get('a/two')) chunks.push(c as Buffer);
      expect(Buffer.concat(chunks).toString()).toBe('world!');
      const listed: string[] = [];
      for await (const o of s.list('a/')) listed.push(o.key);
      expect(listed.sort()).toEqual(['a/one', 'a/two']);
      await s.delete('a/one');
      await expect(s.get('a/one')).rejects.toBeInstanceOf(ArtifactNotFoundError);
      await s.deletePrefix('a/');
      expect(await s.exists('a/two')).toBe(false);
      expect(await s.sweepTemps('', new Date())).toBe(0);
      expect(await listKeys(`${prefix}/`)).toEqual([]);
    });
  });

  it('createStore checks the S3_* settings at once, before the SDK loads', async () => {
    await withS3Env({ S3_FORCE_PATH_STYLE: 'maybe' }, () => {
      expect(() => createStore(`s3://${BUCKET}/x`)).toThrow('S3_FORCE_PATH_STYLE');
    });
  });
});
