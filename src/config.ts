import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import { DEFAULT_ALLOWED_HOSTS, parseAllowedHosts, type AllowedHosts } from './components/targets.js';

export const ROLE_NAMES = ['api', 'worker', 'scheduler'] as const;
export type RoleName = (typeof ROLE_NAMES)[number];

const fileOrS3Url = z
  .string()
  .refine((v) => v.startsWith('file:///') || v.startsWith('s3://'), 'must be a file:///absolute/path or s3://bucket/prefix URL');

const allowedHosts = z.string().transform((v, ctx) => {
  try {
    return parseAllowedHosts(v);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});

const envSchema = z.object({
  DATABASE_URL: z
    .string()
    .refine((v) => /^postgres(ql)?:\/\//.test(v), 'must be a postgresql:// URL')
    .default('postgresql://postgres@127.0.0.1:5432/backups'),
  REDIS_URL: z
    .string()
    .refine((v) => /^rediss?:\/\//.test(v), 'must be a redis:// URL')
    .default('redis://127.0.0.1:6379'),
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  HOST: z.string().min(1).default('127.0.0.1'),
  ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  DATA_ROOT: z.string().min(1).default('./data/sources'),
  STORAGE_URL: fileOrS3Url.optional(),
  STORAGE_SECONDARY_URL: fileOrS3Url.optional(),
  ENCRYPTION_KEY: z
    .string()
    .refine((v) => Buffer.from(v, 'base64').length === 32, 'must be 32 bytes, base64-encoded')
    .optional(),
  ROLES: z
    .string()
    .default('api,worker,scheduler')
    .transform((v, ctx) => {
      const roles = v.split(',').map((s) => s.trim()).filter(Boolean);
      for (const r of roles) {
        if (!(ROLE_NAMES as readonly string[]).includes(r)) {
          ctx.addIssue({ code: 'custom', message: `unknown role "${r}" (expected a subset of ${ROLE_NAMES.join(',')})` });
          return z.NEVER;
        }
      }
      if (roles.length === 0) {
        ctx.addIssue({ code: 'custom', message: 'at least one role is required' });
        return z.NEVER;
      }
      return [...new Set(roles)] as RoleName[];
    }),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  WORKER_CONCURRENCY: z.coerce.number().int().min(1).max(64).default(2),
  DB_POOL_SIZE: z.coerce.number().int().min(1).max(200).default(10),
  DB_CONNECT_TIMEOUT_MS: z.coerce.number().int().min(100).default(5000),
  BODY_LIMIT_BYTES: z.coerce.number().int().min(1024).default(1_048_576),
  QUEUE_PREFIX: z.string().min(1).default('bull'),
  WORKER_LEASE_MS: z.coerce.number().int().min(1000).default(60_000),
  RECONCILE_INTERVAL_MS: z.coerce.number().int().min(500).default(30_000),
  RETENTION_SWEEP_MS: z.coerce.number().int().min(1000).default(3_600_000),
  SHUTDOWN_GRACE_MS: z.coerce.number().int().min(0).default(20_000),
  TARGET_ALLOWED_HOSTS: allowedHosts.optional(),
  /** Deprecated spelling of TARGET_ALLOWED_HOSTS. */
  POSTGRES_ALLOWED_HOSTS: allowedHosts.optional(),
  TARGET_ALLOW_SERVICE_SERVER: z.enum(['true', 'false'], { message: 'must be true or false' }).default('false').transform((v) => v === 'true'),
  RATE_LIMIT_MAX: z.coerce.number().int().min(1).default(1200),
  RATE_LIMIT_WINDOW_MS: z.coerce.number().int().min(1000).default(60_000),
  METRICS_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  PACK_TARGET_BYTES: z.coerce.number().int().min(1024 * 1024).max(256 * 1024 * 1024).default(16 * 1024 * 1024),
  GC_GRACE_MS: z.coerce.number().int().min(0).default(600_000),
  GC_REPACK_THRESHOLD: z.coerce.number().min(0).max(1).default(0.5),
  GC_SWEEP_MS: z.coerce.number().int().min(1000).default(3_600_000),
  VERIFY_SAMPLE_PERCENT: z.coerce.number().min(0).max(100).default(5),
  VERIFY_SWEEP_MS: z.coerce.number().int().min(1000).default(86_400_000),
  OAUTH_TOKEN_TTL_S: z.coerce.number().int().min(1).max(86_400).default(300),
});

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
  /** A running job's lease; a worker that stops renewing it is declared lost after this. */
  leaseMs: number;
  /** How often schedulers reconcile PostgreSQL with Redis and reap expired leases. */
  reconcileIntervalMs: number;
  /** How often every cluster's retention is re-evaluated (besides after each backup and policy change). */
  retentionSweepMs: number;
  /** How long a stopping worker lets running jobs finish before aborting them. */
  shutdownGraceMs: number;
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
    throw new ConfigError(`invalid configuration: ENCRYPTION_KEY: required when ROLES is not all of ${ROLE_NAMES.join(',')} (every process must share one key)`);
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
    gcGraceMs: e.GC_GRACE_MS,
    gcRepackThreshold: e.GC_REPACK_THRESHOLD,
    gcSweepMs: e.GC_SWEEP_MS,
    verifySamplePercent: e.VERIFY_SAMPLE_PERCENT,
    verifySweepMs: e.VERIFY_SWEEP_MS,
    oauthTokenTtlS: e.OAUTH_TOKEN_TTL_S,
    leaseMs: e.WORKER_LEASE_MS,
    reconcileIntervalMs: e.RECONCILE_INTERVAL_MS,
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    retentionSweepMs: e.RETENTION_SWEEP_MS,
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
