import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import { DEFAULT_ALLOWED_HOSTS, parseAllowedHosts, type AllowedHosts } from './components/targets.js';
import { DEFAULT_SEAL_NICE } from './repo/thread-priority.mjs';

export const ROLE_NAMES = ['api', 'worker', 'scheduler', 'archiver'] as const;
export type RoleName = (typeof ROLE_NAMES)[number];

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

// Every error names the variable (zod puts its name in front) and the form it expects, and shows
// what it got: `PORT: must be an integer port number 0-65535 (got "abc")`. Secrets show only
// their length.
const got = (v: string) => `got ${JSON.stringify(v.length > 80 ? `${v.slice(0, 77)}...` : v)}`;
const gotSecret = (v: string) => `got ${v.length} character${v.length === 1 ? '' : 's'}`;
/** A URL's user:password part is not repeated in an error. */
const gotUrl = (v: string) => got(v.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@]*@/i, '$1***@'));

function fail(ctx: z.RefinementCtx, message: string): never {
  ctx.addIssue({ code: 'custom', message });
  return z.NEVER as never;
}

/** A number read the way Number() reads it (as z.coerce did), within [min, max]. */
function num(form: string, opts: { min: number; max?: number; integer?: boolean }) {
  return z.string().transform((v, ctx): number => {
    const n = Number(v);
    const ok = Number.isFinite(n) && (!opts.integer || Number.isInteger(n)) && n >= opts.min && n <= (opts.max ?? Number.MAX_SAFE_INTEGER);
    return ok ? n : fail(ctx, `must be ${form} (${got(v)})`);
  });
}
const int = (form: string, min: number, max?: number) => num(form, { min, max, integer: true });
const ms = (min: number) => int(`an integer number of milliseconds, at least ${min}`, min);

const url = (form: string, test: (v: string) => boolean) =>
  z.string().transform((v, ctx): string => (test(v) ? v : fail(ctx, `must be ${form} (${gotUrl(v)})`)));
const fileOrS3Url = url('a file:///absolute/path or s3://bucket/prefix URL', (v) => v.startsWith('file:///') || v.startsWith('s3://'));

const nonEmpty = (form: string) => z.string().transform((v, ctx): string => (v.trim() ? v : fail(ctx, `must be ${form} (${got(v)})`)));
const secret = (form: string) => z.string().transform((v, ctx): string => (v.length >= 16 ? v : fail(ctx, `must be ${form} (${gotSecret(v)})`)));

const HOSTS_FORM = 'a comma-separated list of public, host names, *.domain wildcards, IP addresses and CIDR ranges, e.g. "public,db.internal,10.0.0.0/8"';
const allowedHosts = z.string().transform((v, ctx): AllowedHosts => {
  try {
    return parseAllowedHosts(v);
  } catch (err) {
    return fail(ctx, `${(err as Error).message}; expected ${HOSTS_FORM}`);
  }
});

const roles = z.string().transform((v, ctx): RoleName[] => {
  const form = `a comma-separated subset of ${ROLE_NAMES.join(',')}`;
  const list = v.split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = list.find((r) => !(ROLE_NAMES as readonly string[]).includes(r));
  if (unknown !== undefined) return fail(ctx, `unknown role "${unknown}": must be ${form} (${got(v)})`);
  if (list.length === 0) return fail(ctx, `at least one role is required: must be ${form} (${got(v)})`);
  return [...new Set(list)] as RoleName[];
});

const envSchema = z.object({
  DATABASE_URL: url('a postgresql:// URL, e.g. postgresql://postgres@127.0.0.1:5432/backups', (v) => /^postgres(ql)?:\/\//.test(v)).default(
    'postgresql://postgres@127.0.0.1:5432/backups',
  ),
  REDIS_URL: url('a redis:// (or rediss://) URL, e.g. redis://127.0.0.1:6379', (v) => /^rediss?:\/\//.test(v)).default('redis://127.0.0.1:6379'),
  PORT: int('an integer port number 0-65535 (0: any free port)', 0, 65535).default(3000),
  HOST: nonEmpty('a host name or IP address to listen on, e.g. 127.0.0.1 or 0.0.0.0').default('127.0.0.1'),
  ADMIN_TOKEN: secret('a platform operator token of at least 16 characters').optional(),
  DATA_ROOT: nonEmpty('a directory path').default('./data/sources'),
  STORAGE_URL: fileOrS3Url.optional(),
  STORAGE_SECONDARY_URL: fileOrS3Url.optional(),
  ENCRYPTION_KEY: z
    .string()
    .transform((v, ctx): string => {
      const bytes = Buffer.from(v, 'base64').length;
      return bytes === 32 ? v : fail(ctx, `must be 32 bytes, base64-encoded (44 characters, e.g. from \`openssl rand -base64 32\`); got ${bytes} bytes`);
    })
    .optional(),
  ROLES: roles.default([...ROLE_NAMES]),
  LOG_LEVEL: z
    .string()
    .transform((v, ctx): (typeof LOG_LEVELS)[number] =>
      (LOG_LEVELS as readonly string[]).includes(v) ? (v as (typeof LOG_LEVELS)[number]) : fail(ctx, `must be one of ${LOG_LEVELS.join(', ')} (${got(v)})`),
    )
    .default('info'),
  WORKER_CONCURRENCY: int('an integer number of jobs 1-64', 1, 64).default(2),
  DB_POOL_SIZE: int('an integer number of connections 1-200', 1, 200).default(10),
  DB_CONNECT_TIMEOUT_MS: ms(100).default(5000),
  BODY_LIMIT_BYTES: int('an integer number of bytes, at least 1024', 1024).default(1_048_576),
  QUEUE_PREFIX: nonEmpty('a non-empty Redis key prefix').default('bull'),
  WORKER_LEASE_MS: ms(1000).default(60_000),
  RECONCILE_INTERVAL_MS: ms(500).default(30_000),
  RETENTION_SWEEP_MS: ms(1000).default(3_600_000),
  SHUTDOWN_GRACE_MS: ms(0).default(20_000),
  TARGET_ALLOWED_HOSTS: allowedHosts.optional(),
  /** Deprecated spelling of TARGET_ALLOWED_HOSTS. */
  POSTGRES_ALLOWED_HOSTS: allowedHosts.optional(),
  TARGET_ALLOW_SERVICE_SERVER: z
    .string()
    .transform((v, ctx): boolean => (v === 'true' || v === 'false' ? v === 'true' : fail(ctx, `must be true or false (${got(v)})`)))
    .default(false),
  RATE_LIMIT_MAX: int('an integer number of requests, at least 1', 1).default(1200),
  RATE_LIMIT_WINDOW_MS: ms(1000).default(60_000),
  METRICS_TOKEN: secret('a bearer token of at least 16 characters').optional(),
  PACK_TARGET_BYTES: int('an integer number of bytes 1048576-268435456 (1-256 MiB)', 1024 * 1024, 256 * 1024 * 1024).default(16 * 1024 * 1024),
  /** Nice value of the repository's CPU-heavy threads (seal pool, libuv pool): 0-19, 0 leaves them at the event loop's. */
  SEAL_NICE: int('an integer nice value 0-19 (0: as the event loop)', 0, 19).default(DEFAULT_SEAL_NICE),
  GC_GRACE_MS: ms(0).default(600_000),
  GC_REPACK_THRESHOLD: num('a fraction 0-1, e.g. 0.5', { min: 0, max: 1 }).default(0.5),
  GC_SWEEP_MS: ms(1000).default(3_600_000),
  VERIFY_SAMPLE_PERCENT: num('a percentage 0-100, e.g. 5', { min: 0, max: 100 }).default(5),
  VERIFY_SWEEP_MS: ms(1000).default(86_400_000),
  OAUTH_TOKEN_TTL_S: int('an integer number of seconds 1-86400', 1, 86_400).default(300),
  /** Exceptions to the SSRF guard for webhook (and hook) URLs: hosts, *.domains, IPs, CIDRs. */
  WEBHOOK_ALLOWED_HOSTS: allowedHosts.optional(),
  WEBHOOK_ALLOW_HTTP: z
    .string()
    .transform((v, ctx): boolean => (v === 'true' || v === 'false' ? v === 'true' : fail(ctx, `must be true or false (${got(v)})`)))
    .default(false),
  /** A delivery attempt that has no 2xx answer within this fails (SPEC section 10: 10 s). */
  WEBHOOK_TIMEOUT_MS: int('an integer number of milliseconds 100-60000', 100, 60_000).default(10_000),
  /** The first retry waits this long; each later one twice as long as the one before, up to WEBHOOK_RETRY_MAX_MS. */
  WEBHOOK_RETRY_BASE_MS: ms(10).default(5_000),
  WEBHOOK_RETRY_MAX_MS: ms(10).default(3_600_000),
  /** A delivery is retried for this long after its first attempt, then recorded failed (at least 24 h by default). */
  WEBHOOK_RETRY_WINDOW_MS: ms(0).default(86_400_000),
  /** A webhook whose every attempt has failed for this long is disabled (5 days). */
  WEBHOOK_DISABLE_AFTER_MS: ms(0).default(5 * 86_400_000),
  /** An archiver that stops renewing its hold on a continuous component's stream is replaced by another after this (SPEC section 13). */
  ARCHIVER_LEASE_MS: ms(3000).default(30_000),
  /** Where archivers keep the WAL they receive until it is in the repository, and workers recover base backups in scratch PostgreSQL instances. */
  PITR_WORK_DIR: nonEmpty('a directory path').default('./data/pitr'),
  /** The OS user scratch PostgreSQL instances run as when the service runs as root (PostgreSQL refuses to run as root). */
  PITR_SCRATCH_USER: nonEmpty('an OS user name, e.g. postgres').default('postgres'),
});

/** The environment variables the service reads (docs and tests check they are all described). */
export const CONFIG_VARIABLES = Object.keys(envSchema.shape) as (keyof typeof envSchema.shape)[];

export type Env = z.infer<typeof envSchema>;

export interface Config {
  databaseUrl: string;
  redisUrl: string;
  port: number;
  host: string;
  adminToken: string | undefined;
  dataRoot: string;
  /** Servers tenants' components may name; by default public addresses only (never the service's own servers). */
  targetAllowedHosts: AllowedHosts;
  /** Tenants may name other databases on the service's own PostgreSQL server (never its own database). */
  targetAllowServiceServer: boolean;
  storageUrl: string;
  storageSecondaryUrl: string | undefined;
  encryptionKey: Buffer;
  roles: RoleName[];
  logLevel: Env['LOG_LEVEL'];
  workerConcurrency: number;
  dbPoolSize: number;
  dbConnectTimeoutMs: number;
  bodyLimitBytes: number;
  queuePrefix: string;
  /** Requests per credential (or per client address without one) per window. */
  rateLimit: { max: number; windowMs: number };
  /** Bearer token /metrics requires; unset: /metrics is not served. */
  metricsToken: string | undefined;
  /** Target size of a pack object of the repository. */
  packTargetBytes: number;
  /** Nice value of the repository's CPU-heavy threads (seal pool and libuv pool); 0: as the event loop. */
  sealNice: number;
  /** How long an unreferenced pack (or an orphan upload) stays in the stores before GC deletes it. */
  gcGraceMs: number;
  /** A live pack whose unreferenced share of bytes exceeds this is repacked. */
  gcRepackThreshold: number;
  /** How often every repository is garbage-collected besides after deletions. */
  gcSweepMs: number;
  /** Share of packs (percent) the periodic check re-reads per tenant, every VERIFY_SWEEP_MS. */
  verifySamplePercent: number;
  verifySweepMs: number;
  /** Lifetime of an OAuth2 access token, in seconds. */
  oauthTokenTtlS: number;
  /** Webhook delivery (SPEC section 10): the SSRF guard's exceptions, the timeout and the retry schedule. */
  webhooks: {
    /** Hosts webhook URLs may name besides public addresses (never the service's own servers). */
    allowedHosts: AllowedHosts;
    allowHttp: boolean;
    timeoutMs: number;
    retryBaseMs: number;
    retryMaxMs: number;
    retryWindowMs: number;
    disableAfterMs: number;
  };
  /** A running job's lease; a worker that stops renewing it is declared lost after this. */
  leaseMs: number;
  /** How often schedulers reconcile PostgreSQL with Redis and reap expired leases. */
  reconcileIntervalMs: number;
  /** How often every cluster's retention is re-evaluated (besides after each backup and policy change). */
  retentionSweepMs: number;
  /** How long a stopping worker lets running jobs finish before aborting them. */
  shutdownGraceMs: number;
  /** Point-in-time recovery (SPEC section 13): the archivers' lease, their spool and the workers' scratch instances, and who those run as under root. */
  pitr: { archiverLeaseMs: number; workDir: string; scratchUser: string };
}

export class ConfigError extends Error {}

/** Parses the environment once; throws ConfigError with one line per problem. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd(), warn: (msg: string) => void = console.warn): Readonly<Config> {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `${i.path.join('.') || 'env'}: ${i.message}`);
    throw new ConfigError(`invalid configuration: ${lines.join('; ')}`);
  }
  const e = parsed.data;
  // A key generated into ./data is one process's own: roles split across processes would each
  // generate another, and a worker could not decrypt what the API stored.
  if (!e.ENCRYPTION_KEY && e.ROLES.length < ROLE_NAMES.length)
    throw new ConfigError(
      `invalid configuration: ENCRYPTION_KEY: required when ROLES is not all of ${ROLE_NAMES.join(',')} (every process must share one key): 32 bytes, base64-encoded, e.g. from \`openssl rand -base64 32\``,
    );
  if (e.POSTGRES_ALLOWED_HOSTS) {
    warn(e.TARGET_ALLOWED_HOSTS ? 'POSTGRES_ALLOWED_HOSTS is deprecated and ignored since TARGET_ALLOWED_HOSTS is set' : 'POSTGRES_ALLOWED_HOSTS is deprecated: rename it TARGET_ALLOWED_HOSTS');
  }
  if (e.TARGET_ALLOW_SERVICE_SERVER) {
    warn("TARGET_ALLOW_SERVICE_SERVER=true: tenants may name any database on the service's own PostgreSQL server but its own, and their SQL runs there as the user their URL names; unsafe with untrusted tenants");
  }
  const dataDir = path.resolve(cwd, 'data');
  return Object.freeze({
    databaseUrl: e.DATABASE_URL,
    redisUrl: e.REDIS_URL,
    port: e.PORT,
    host: e.HOST,
    adminToken: e.ADMIN_TOKEN,
    dataRoot: path.resolve(cwd, e.DATA_ROOT),
    targetAllowedHosts: e.TARGET_ALLOWED_HOSTS ?? e.POSTGRES_ALLOWED_HOSTS ?? parseAllowedHosts(DEFAULT_ALLOWED_HOSTS),
    targetAllowServiceServer: e.TARGET_ALLOW_SERVICE_SERVER,
    storageUrl: e.STORAGE_URL ?? pathToFileURL(path.join(dataDir, 'artifacts')).href,
    storageSecondaryUrl: e.STORAGE_SECONDARY_URL,
    encryptionKey: e.ENCRYPTION_KEY ? Buffer.from(e.ENCRYPTION_KEY, 'base64') : loadOrCreateKey(dataDir, warn),
    roles: e.ROLES,
    logLevel: e.LOG_LEVEL,
    workerConcurrency: e.WORKER_CONCURRENCY,
    dbPoolSize: e.DB_POOL_SIZE,
    dbConnectTimeoutMs: e.DB_CONNECT_TIMEOUT_MS,
    bodyLimitBytes: e.BODY_LIMIT_BYTES,
    queuePrefix: e.QUEUE_PREFIX,
    rateLimit: { max: e.RATE_LIMIT_MAX, windowMs: e.RATE_LIMIT_WINDOW_MS },
    metricsToken: e.METRICS_TOKEN,
    packTargetBytes: e.PACK_TARGET_BYTES,
    sealNice: e.SEAL_NICE,
    gcGraceMs: e.GC_GRACE_MS,
    gcRepackThreshold: e.GC_REPACK_THRESHOLD,
    gcSweepMs: e.GC_SWEEP_MS,
    verifySamplePercent: e.VERIFY_SAMPLE_PERCENT,
    verifySweepMs: e.VERIFY_SWEEP_MS,
    oauthTokenTtlS: e.OAUTH_TOKEN_TTL_S,
    webhooks: {
      allowedHosts: e.WEBHOOK_ALLOWED_HOSTS ?? parseAllowedHosts(DEFAULT_ALLOWED_HOSTS),
      allowHttp: e.WEBHOOK_ALLOW_HTTP,
      timeoutMs: e.WEBHOOK_TIMEOUT_MS,
      retryBaseMs: e.WEBHOOK_RETRY_BASE_MS,
      retryMaxMs: e.WEBHOOK_RETRY_MAX_MS,
      retryWindowMs: e.WEBHOOK_RETRY_WINDOW_MS,
      disableAfterMs: e.WEBHOOK_DISABLE_AFTER_MS,
    },
    leaseMs: e.WORKER_LEASE_MS,
    reconcileIntervalMs: e.RECONCILE_INTERVAL_MS,
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    retentionSweepMs: e.RETENTION_SWEEP_MS,
    pitr: { archiverLeaseMs: e.ARCHIVER_LEASE_MS, workDir: path.resolve(cwd, e.PITR_WORK_DIR), scratchUser: e.PITR_SCRATCH_USER },
  });
}

// No literal default key: a fresh random one is generated once and kept beside the data,
// so secrets survive restarts; operators are told to set ENCRYPTION_KEY explicitly.
function loadOrCreateKey(dataDir: string, warn: (msg: string) => void): Buffer {
  const file = path.join(dataDir, 'encryption.key');
  if (existsSync(file)) {
    const key = Buffer.from(readFileSync(file, 'utf8').trim(), 'base64');
    if (key.length !== 32) throw new ConfigError(`invalid configuration: ${file} does not hold a 32-byte base64 key`);
    return key;
  }
  mkdirSync(dataDir, { recursive: true });
  const key = randomBytes(32);
  writeFileSync(file, key.toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
  warn(`ENCRYPTION_KEY is not set: generated a new key into ${file}; back it up, without it stored secrets cannot be read`);
  return key;
}
