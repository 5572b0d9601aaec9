/**
 * What an s3:// store is, without the AWS SDK: the URL's bucket and prefix and the S3_* settings,
 * checked when the store is configured (at start), while the SDK itself (s3-store.ts, ~12 MB of
 * resident memory) loads only once the store is first used (index.ts).
 */
import { checkArtifactKey } from './file-store.js';
import { InvalidArtifactKeyError } from './types.js';

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

/** A store's URL as the API shows it: `s3://bucket[/prefix]`. */
export function s3StoreUrl(bucket: string, prefix: string): string {
  return prefix === '' ? `s3://${bucket}` : `s3://${bucket}/${prefix}`;
}

/** The object key of artifact `key` in a store under `prefix`; InvalidArtifactKeyError for a bad key. */
export function s3ObjectKey(prefix: string, key: string): string {
  const problem = checkArtifactKey(key);
  if (problem) throw new InvalidArtifactKeyError(key, problem);
  return prefix === '' ? key : `${prefix}/${key}`;
}
