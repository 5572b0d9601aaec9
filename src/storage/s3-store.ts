import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Sha256Meter } from './checksum.js';
import { checkArtifactKey, checkArtifactPrefix } from './file-store.js';
import { parseS3Url, resolveS3Options, s3ObjectKey, s3StoreUrl, type S3StoreOptions } from './s3-config.js';
import {
  ArtifactNotFoundError,
  checkByteRange,
  InvalidArtifactKeyError,
  RangeNotSatisfiableError,
  type ArtifactStore,
  type ListedArtifact,
  type PutOptions,
  type PutResult,
} from './types.js';

export { parseS3Url, resolveS3Options, type ResolvedS3Options, type S3StoreOptions } from './s3-config.js';

/** 8 MiB parts, two in flight: a put holds at most ~(queue + 1) parts in memory, whatever the artifact's size. */
const PART_SIZE = 8 * 1024 * 1024;
const QUEUE_SIZE = 2;
/** DeleteObjects takes at most 1000 keys per request. */
const DELETE_BATCH = 1000;

function errorName(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'name' in err && typeof err.name === 'string' ? err.name : undefined;
}

function httpStatus(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null || !('$metadata' in err)) return undefined;
  const meta = err.$metadata;
  return typeof meta === 'object' && meta !== null && 'httpStatusCode' in meta && typeof meta.httpStatusCode === 'number' ? meta.httpStatusCode : undefined;
}

/** A missing key, not a missing bucket: a misconfigured bucket must surface, not read as "no artifact". */
function isMissingKey(err: unknown): boolean {
  const name = errorName(err);
  return name === 'NoSuchKey' || name === 'NotFound';
}

/** `bytes first-last/total`, total possibly `*`. */
function parseContentRange(value: string | undefined): { first: number; last: number; total: number | undefined } | undefined {
  const match = value === undefined ? null : /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(value.trim());
  if (!match) return undefined;
  return { first: Number(match[1]), last: Number(match[2]), total: match[3] === '*' ? undefined : Number(match[3]) };
}

function sizeFromInvalidRange(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  // AWS (and s3rver) put <ActualObjectSize> in the error body, which the SDK copies onto the error.
  const actual = 'ActualObjectSize' in err ? Number(err.ActualObjectSize) : NaN;
  return Number.isSafeInteger(actual) && actual >= 0 ? actual : undefined;
}

/**
 * Skips `skip` bytes of `body`, returns the next `length`, and destroys the body (nothing more is
 * downloaded). A body that ends early is an error (a truncated transfer), never short data.
 */
async function readSlice(body: Readable, skip: number, length: number): Promise<Buffer> {
  const out = Buffer.allocUnsafe(length);
  let toSkip = skip;
  let filled = 0;
  try {
    for await (const chunk of body) {
      let part = chunk as Buffer;
      if (toSkip > 0) {
        const dropped = Math.min(toSkip, part.length);
        toSkip -= dropped;
        part = part.subarray(dropped);
      }
      const taken = part.copy(out, filled, 0, Math.min(part.length, length - filled));
      filled += taken;
      if (filled === length) break;
    }
  } finally {
    body.destroy();
  }
  if (filled !== length) throw new Error(`S3 GetObject body ended after ${filled} of the ${length} bytes of the range`);
  return out;
}

function toReadable(body: NodeJS.ReadableStream | Readable): Readable {
  return body instanceof Readable ? body : new Readable().wrap(body);
}

export function createS3Store(url: string, opts: S3StoreOptions = {}): ArtifactStore {
  const { bucket, prefix } = parseS3Url(url);
  const resolved = resolveS3Options(opts);
  const config: S3ClientConfig = {
    region: resolved.region,
    forcePathStyle: resolved.forcePathStyle,
    // An unreachable endpoint fails fast. No socket idle timeout: a restore may pause reading a
    // GetObject body for minutes (pg_restore building indexes) and must not lose the stream.
    requestHandler: { connectionTimeout: 10_000 },
  };
  if (resolved.endpoint !== undefined) config.endpoint = resolved.endpoint;
  if (resolved.credentials !== undefined) config.credentials = resolved.credentials;
  const client = new S3Client(config);

  const objectKey = (key: string) => s3ObjectKey(prefix, key);

  /** Idempotent: an upload that is already gone (completed or aborted) is fine. */
  async function abortMultipart(Key: string, UploadId: string): Promise<void> {
    try {
      await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key, UploadId }));
    } catch (err) {
      if (errorName(err) !== 'NoSuchUpload' && httpStatus(err) !== 404) throw err;
    }
  }

  /**
   * Parts of uploads that never completed (a worker killed mid-put) are invisible but billed:
   * deleting a prefix sweeps them too. Servers without the API, or credentials without the
   * permission, skip the sweep; a bucket lifecycle rule is the backstop there.
   */
  async function abortUploadsUnder(base: string, olderThan?: Date): Promise<number> {
    let aborted = 0;
    let KeyMarker: string | undefined;
    let UploadIdMarker: string | undefined;
    for (;;) {
      let page;
      try {
        page = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: base, KeyMarker, UploadIdMarker }));
      } catch (err) {
        const name = errorName(err);
        if (name === 'NotImplemented' || name === 'AccessDenied' || httpStatus(err) === 501) return aborted;
        throw err;
      }
      for (const upload of page.Uploads ?? []) {
        if (upload.Key === undefined || upload.UploadId === undefined) continue;
        if (olderThan && !(upload.Initiated && upload.Initiated < olderThan)) continue;
        await abortMultipart(upload.Key, upload.UploadId);
        aborted++;
      }
      if (!page.IsTruncated) return aborted;
      if (page.NextKeyMarker === undefined) throw new Error('S3 ListMultipartUploads was truncated without a next marker');
      KeyMarker = page.NextKeyMarker;
      UploadIdMarker = page.NextUploadIdMarker;
    }
  }

  async function deleteBatch(keys: string[]): Promise<void> {
    const out = await client.send(
      new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys.map((Key) => ({ Key })), Quiet: true } }),
    );
    const failed = (out.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey');
    const first = failed[0];
    if (first) throw new Error(`S3 DeleteObjects failed for ${failed.length} key(s), first ${JSON.stringify(first.Key)}: ${first.Code ?? 'unknown error'}`);
  }

  async function headSize(key: string, Key: string): Promise<number> {
    let out;
    try {
      out = await client.send(new HeadObjectCommand({ Bucket: bucket, Key }));
    } catch (err) {
      if (isMissingKey(err)) throw new ArtifactNotFoundError(key);
      throw err;
    }
    if (typeof out.ContentLength !== 'number') throw new Error('S3 HeadObject returned no Content-Length');
    return out.ContentLength;
  }

  /** ListObjectsV2 page by page; keys outside the store's key syntax (e.g. `dir/` markers) are not listed. */
  async function* listPages(listPrefix: string): AsyncGenerator<ListedArtifact> {
    const base = prefix === '' ? listPrefix : `${prefix}/${listPrefix}`;
    const strip = prefix === '' ? 0 : prefix.length + 1;
    let ContinuationToken: string | undefined;
    for (;;) {
      const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: base, ContinuationToken }));
      for (const o of page.Contents ?? []) {
        if (o.Key === undefined || !o.Key.startsWith(base)) continue;
        const key = o.Key.slice(strip);
        if (checkArtifactKey(key) !== null) continue;
        yield { key, bytes: o.Size ?? 0, modifiedAt: o.LastModified ?? new Date(0) };
      }
      if (!page.IsTruncated) return;
      if (page.NextContinuationToken === undefined) throw new Error('S3 ListObjectsV2 was truncated without a continuation token');
      ContinuationToken = page.NextContinuationToken;
    }
  }

  return {
    url: s3StoreUrl(bucket, prefix),

    async put(key: string, body: NodeJS.ReadableStream | Readable, opts: PutOptions = {}): Promise<PutResult> {
      const input = toReadable(body);
      let Key: string;
      try {
        Key = objectKey(key);
        opts.signal?.throwIfAborted();
      } catch (err) {
        input.destroy();
        throw err;
      }
      const meter = new Sha256Meter(opts.onProgress);
      // Failures reach the Upload as a destroyed Body, never through upload.abort(): abort() makes
      // done() reject at once while parts are still in flight and before AbortMultipartUpload is
      // sent, so put() could return with an upload (or, mid-Complete, an object) still appearing.
      // A Body error instead settles done() only after every in-flight request and the abort.
      const upload = new Upload({ client, params: { Bucket: bucket, Key, Body: meter }, partSize: PART_SIZE, queueSize: QUEUE_SIZE });
      const feeding = pipeline(input, meter, opts.signal ? { signal: opts.signal } : {});
      const uploading = upload.done();
      // If S3 gives up first, nothing reads the meter any more: unblock the feeder.
      uploading.catch((err: unknown) => meter.destroy(err instanceof Error ? err : new Error('S3 upload failed')));
      const [fed, uploaded] = await Promise.allSettled([feeding, uploading]);
      if (fed.status === 'fulfilled' && uploaded.status === 'fulfilled') return meter.result();

      input.destroy();
      if (upload.uploadId !== undefined) {
        // lib-storage has normally aborted it already; a second, idempotent try covers a failed first one.
        await abortMultipart(Key, upload.uploadId).catch(() => {});
      }
      if (uploaded.status === 'fulfilled') {
        // The object completed although the body reported a failure after its end: never keep it.
        await client.send(new DeleteObjectCommand({ Bucket: bucket, Key })).catch(() => {});
      }
      throw fed.status === 'rejected' ? fed.reason : (uploaded as PromiseRejectedResult).reason;
    },

    async get(key: string): Promise<Readable> {
      const Key = objectKey(key);
      let out;
      try {
        out = await client.send(new GetObjectCommand({ Bucket: bucket, Key }));
      } catch (err) {
        if (isMissingKey(err)) throw new ArtifactNotFoundError(key);
        throw err;
      }
      if (!(out.Body instanceof Readable)) throw new Error('S3 GetObject returned no readable body');
      return out.Body;
    },

    async putBuffer(key: string, body: Buffer, opts?: { sha256?: string }): Promise<PutResult> {
      const Key = objectKey(key);
      if (!Buffer.isBuffer(body)) throw new TypeError('putBuffer takes a Buffer');
      // One PutObject whatever the size (S3 takes up to 5 GiB in one): the object appears whole or
      // not at all, and no multipart upload can be left behind. The SDK may retry it (a Buffer replays).
      await client.send(new PutObjectCommand({ Bucket: bucket, Key, Body: body, ContentLength: body.length }));
      return { bytes: body.length, sha256: opts?.sha256 ?? createHash('sha256').update(body).digest('hex') };
    },

    async getRange(key: string, start: number, end: number): Promise<Buffer> {
      const Key = objectKey(key);
      checkByteRange(start, end);
      if (start === end) {
        // No empty HTTP range exists: check that the object is there and long enough.
        const size = await headSize(key, Key);
        if (size < end) throw new RangeNotSatisfiableError(key, start, end, size);
        return Buffer.alloc(0);
      }
      let out;
      try {
        out = await client.send(new GetObjectCommand({ Bucket: bucket, Key, Range: `bytes=${start}-${end - 1}` }));
      } catch (err) {
        if (isMissingKey(err)) throw new ArtifactNotFoundError(key);
        if (errorName(err) === 'InvalidRange' || httpStatus(err) === 416) {
          // The range starts at or past the end of the object.
          const size = sizeFromInvalidRange(err) ?? (await headSize(key, Key).catch((e: unknown) => {
            if (e instanceof ArtifactNotFoundError) throw e;
            return undefined;
          }));
          throw new RangeNotSatisfiableError(key, start, end, size);
        }
        throw err;
      }
      if (!(out.Body instanceof Readable)) throw new Error('S3 GetObject returned no readable body');
      const body = out.Body;
      // What the body holds: the Content-Range of a 206, or the whole object of a 200 (a server that
      // ignores Range, or answers an empty object whole). Anything but a superset of the range is refused.
      const range = parseContentRange(out.ContentRange);
      const total = range ? range.total : out.ContentLength;
      const first = range ? range.first : 0;
      const last = range ? range.last : total === undefined ? -1 : total - 1;
      if (total !== undefined && total < end) {
        // S3 answers a range running past the end with the bytes it has: never hand them out as the range.
        body.destroy();
        throw new RangeNotSatisfiableError(key, start, end, total);
      }
      if (first > start || last < end - 1) {
        body.destroy();
        throw new Error(`S3 GetObject answered bytes ${first}-${last} for bytes ${start}-${end - 1}`);
      }
      return readSlice(body, start - first, end - start);
    },

    async size(key: string): Promise<number> {
      return headSize(key, objectKey(key));
    },

    list(listPrefix: string): AsyncIterable<ListedArtifact> {
      const problem = checkArtifactPrefix(listPrefix, true);
      if (problem) throw new InvalidArtifactKeyError(listPrefix, problem);
      return listPages(listPrefix);
    },

    async exists(key: string): Promise<boolean> {
      const Key = objectKey(key);
      try {
        await client.send(new HeadObjectCommand({ Bucket: bucket, Key }));
        return true;
      } catch (err) {
        if (isMissingKey(err)) return false;
        throw err;
      }
    },

    async delete(key: string): Promise<void> {
      const Key = objectKey(key);
      try {
        await client.send(new DeleteObjectCommand({ Bucket: bucket, Key }));
      } catch (err) {
        if (!isMissingKey(err)) throw err;
      }
    },

    async sweepTemps(prefixToSweep: string, olderThan: Date): Promise<number> {
      const problem = checkArtifactPrefix(prefixToSweep, true);
      if (problem) throw new InvalidArtifactKeyError(prefixToSweep, problem);
      const base = prefixToSweep === '' ? (prefix ? `${prefix}/` : '') : `${objectKey(prefixToSweep.slice(0, -1))}/`;
      return abortUploadsUnder(base, olderThan);
    },

    async deletePrefix(prefixToDelete: string): Promise<void> {
      const problem = checkArtifactPrefix(prefixToDelete, false);
      if (problem) throw new InvalidArtifactKeyError(prefixToDelete, problem);
      const base = `${objectKey(prefixToDelete.slice(0, -1))}/`;
      await abortUploadsUnder(base);
      // ListObjectsV2 continuation tokens are key-based, so deleting a page before asking for the next is safe.
      let ContinuationToken: string | undefined;
      for (;;) {
        const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: base, ContinuationToken }));
        const keys = (page.Contents ?? []).flatMap((o) => (o.Key === undefined ? [] : [o.Key]));
        for (let i = 0; i < keys.length; i += DELETE_BATCH) await deleteBatch(keys.slice(i, i + DELETE_BATCH));
        if (!page.IsTruncated) return;
        if (page.NextContinuationToken === undefined) throw new Error('S3 ListObjectsV2 was truncated without a continuation token');
        ContinuationToken = page.NextContinuationToken;
      }
    },

    locationOf(key: string): string {
      return `s3://${bucket}/${objectKey(key)}`;
    },
  };
}
