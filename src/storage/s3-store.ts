import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Sha256Meter } from './checksum.js';
import { checkArtifactKey } from './file-store.js';
import { ArtifactNotFoundError, InvalidArtifactKeyError, type ArtifactStore, type PutOptions, type PutResult } from './types.js';

/** 8 MiB parts, two in flight: a put holds at most ~(queue + 1) parts in memory, whatever the artifact's size. */
const PART_SIZE = 8 * 1024 * 1024;
const QUEUE_SIZE = 2;
/** DeleteObjects takes at most 1000 keys per request. */
const DELETE_BATCH = 1000;

export interface S3StoreOptions {
  /** e.g. `http://127.0.0.1:4569`; omitted means AWS itself. Env: S3_ENDPOINT. */
  endpoint?: string;
  /** Env: S3_REGION; default us-east-1. */
  region?: string;
  /** Env: S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY, both or neither; neither means the SDK's default chain (AWS_* env, profile, instance role). */
  accessKeyId?: string;
  secretAccessKey?: string;
  /** Env: S3_FORCE_PATH_STYLE; default true when an endpoint is set (MinIO & co. rarely have per-bucket DNS). */
  forcePathStyle?: boolean;
}

export interface ResolvedS3Options {
  endpoint: string | undefined;
  region: string;
  credentials: { accessKeyId: string; secretAccessKey: string } | undefined;
  forcePathStyle: boolean;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

function parseBoolean(value: string, name: string): boolean {
  if (/^(1|true|yes)$/i.test(value)) return true;
  if (/^(0|false|no)$/i.test(value)) return false;
  throw new Error(`${name} must be true or false`);
}

/** Options win over the environment. Messages never echo values: they may be secrets. */
export function resolveS3Options(opts: S3StoreOptions = {}, env: NodeJS.ProcessEnv = process.env): ResolvedS3Options {
  const endpoint = nonEmpty(opts.endpoint) ?? nonEmpty(env.S3_ENDPOINT);
  if (endpoint !== undefined) {
    let parsed: URL | undefined;
    try {
      parsed = new URL(endpoint);
    } catch {
      parsed = undefined;
    }
    if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) throw new Error('S3 endpoint must be an http(s) URL');
    if (parsed.username || parsed.password) throw new Error('S3 endpoint must not carry credentials');
  }
  const accessKeyId = nonEmpty(opts.accessKeyId) ?? nonEmpty(env.S3_ACCESS_KEY_ID);
  const secretAccessKey = nonEmpty(opts.secretAccessKey) ?? nonEmpty(env.S3_SECRET_ACCESS_KEY);
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) {
    throw new Error('S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY must be set together');
  }
  const envPathStyle = nonEmpty(env.S3_FORCE_PATH_STYLE);
  return {
    endpoint,
    region: nonEmpty(opts.region) ?? nonEmpty(env.S3_REGION) ?? 'us-east-1',
    credentials: accessKeyId !== undefined && secretAccessKey !== undefined ? { accessKeyId, secretAccessKey } : undefined,
    forcePathStyle: opts.forcePathStyle ?? (envPathStyle !== undefined ? parseBoolean(envPathStyle, 'S3_FORCE_PATH_STYLE') : endpoint !== undefined),
  };
}

/** `s3://bucket[/prefix]`. Messages never echo the URL (it may carry credentials). */
export function parseS3Url(url: string): { bucket: string; prefix: string } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error('invalid storage URL');
  }
  if (parsed.protocol !== 's3:') throw new Error('not an s3:// storage URL');
  if (parsed.username || parsed.password) {
    throw new Error('s3 storage URLs must not carry credentials; set S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY');
  }
  if (parsed.port || parsed.search || parsed.hash) throw new Error('s3 storage URLs take no port, query or fragment; set S3_ENDPOINT for the server');
  const bucket = parsed.hostname;
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) throw new Error('s3 storage URL must name a valid bucket (3-63 of a-z, 0-9, ".", "-")');
  const rawPrefix = parsed.pathname.replace(/^\//, '').replace(/\/$/, '');
  if (rawPrefix === '') return { bucket, prefix: '' };
  let prefix: string;
  try {
    prefix = rawPrefix.split('/').map(decodeURIComponent).join('/');
  } catch {
    throw new Error('s3 storage URL has a malformed prefix');
  }
  const problem = checkArtifactKey(prefix);
  if (problem) throw new Error(`s3 storage URL prefix ${problem}`);
  return { bucket, prefix };
}

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

  function objectKey(key: string): string {
    const problem = checkArtifactKey(key);
    if (problem) throw new InvalidArtifactKeyError(key, problem);
    return prefix === '' ? key : `${prefix}/${key}`;
  }

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
  async function abortUploadsUnder(base: string): Promise<void> {
    let KeyMarker: string | undefined;
    let UploadIdMarker: string | undefined;
    for (;;) {
      let page;
      try {
        page = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: base, KeyMarker, UploadIdMarker }));
      } catch (err) {
        const name = errorName(err);
        if (name === 'NotImplemented' || name === 'AccessDenied' || httpStatus(err) === 501) return;
        throw err;
      }
      for (const upload of page.Uploads ?? []) {
        if (upload.Key !== undefined && upload.UploadId !== undefined) await abortMultipart(upload.Key, upload.UploadId);
      }
      if (!page.IsTruncated) return;
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

  return {
    url: prefix === '' ? `s3://${bucket}` : `s3://${bucket}/${prefix}`,

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

    async deletePrefix(prefixToDelete: string): Promise<void> {
      if (!prefixToDelete.endsWith('/')) throw new InvalidArtifactKeyError(prefixToDelete, "a prefix must end with '/'");
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
