import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES, ConfigError, loadConfig } from './config.js';

const KEY = randomBytes(32).toString('base64');
const errorOf = (env: Record<string, string>): string => {
  try {
    loadConfig({ ENCRYPTION_KEY: KEY, ...env }, tmpdir(), () => {});
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error(`no configuration error for ${JSON.stringify(env)}`);
};

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// For every variable: a bad value, and the expected form its error must state. Secrets are
// not echoed (only their length); every other value is, quoted (a host list quotes its bad entry).
const cases: Record<(typeof CONFIG_VARIABLES)[number], { bad: string; form: string; secret?: boolean; shows?: string }> = {
  DATABASE_URL: { bad: 'mysql://h/db', form: 'must be a postgresql:// URL' },
  REDIS_URL: { bad: 'localhost:6379', form: 'must be a redis:// (or rediss://) URL' },
  PORT: { bad: 'abc', form: 'must be an integer port number 0-65535' },
  HOST: { bad: ' ', form: 'must be a host name or IP address to listen on' },
  ADMIN_TOKEN: { bad: 'short', form: 'must be a platform operator token of at least 16 characters', secret: true },
  DATA_ROOT: { bad: '', form: 'must be a directory path' },
  STORAGE_URL: { bad: '/var/backups', form: 'must be a file:///absolute/path or s3://bucket/prefix URL' },
  STORAGE_SECONDARY_URL: { bad: 'file://relative', form: 'must be a file:///absolute/path or s3://bucket/prefix URL' },
  ENCRYPTION_KEY: { bad: 'c2hvcnQ=', form: 'must be 32 bytes, base64-encoded', secret: true },
  ROLES: { bad: 'api,janitor', form: 'must be a comma-separated subset of api,worker,scheduler,archiver' },
  LOG_LEVEL: { bad: 'verbose', form: 'must be one of fatal, error, warn, info, debug, trace, silent' },
  WORKER_CONCURRENCY: { bad: '0', form: 'must be an integer number of jobs 1-64' },
  DB_POOL_SIZE: { bad: '2.5', form: 'must be an integer number of connections 1-200' },
  DB_CONNECT_TIMEOUT_MS: { bad: '50', form: 'must be an integer number of milliseconds, at least 100' },
  BODY_LIMIT_BYTES: { bad: '1k', form: 'must be an integer number of bytes, at least 1024' },
  QUEUE_PREFIX: { bad: '', form: 'must be a non-empty Redis key prefix' },
  WORKER_LEASE_MS: { bad: 'soon', form: 'must be an integer number of milliseconds, at least 1000' },
  RECONCILE_INTERVAL_MS: { bad: '10', form: 'must be an integer number of milliseconds, at least 500' },
  RETENTION_SWEEP_MS: { bad: '1h', form: 'must be an integer number of milliseconds, at least 1000' },
  SHUTDOWN_GRACE_MS: { bad: '-1', form: 'must be an integer number of milliseconds, at least 0' },
  TARGET_ALLOWED_HOSTS: { bad: 'db.internal, not a host', form: 'expected a comma-separated list of public, host names', shows: '"not a host" is neither' },
  POSTGRES_ALLOWED_HOSTS: { bad: '10.0.0.0/33', form: 'expected a comma-separated list of public, host names', shows: '"10.0.0.0/33" is not a valid address range' },
  TARGET_ALLOW_SERVICE_SERVER: { bad: 'yes', form: 'must be true or false' },
  RATE_LIMIT_MAX: { bad: 'lots', form: 'must be an integer number of requests, at least 1' },
  RATE_LIMIT_WINDOW_MS: { bad: '1m', form: 'must be an integer number of milliseconds, at least 1000' },
  METRICS_TOKEN: { bad: 'abc', form: 'must be a bearer token of at least 16 characters', secret: true },
  PACK_TARGET_BYTES: { bad: '16MiB', form: 'must be an integer number of bytes 1048576-268435456' },
  SEAL_NICE: { bad: '-5', form: 'must be an integer nice value 0-19' },
  GC_GRACE_MS: { bad: '10m', form: 'must be an integer number of milliseconds, at least 0' },
  GC_REPACK_THRESHOLD: { bad: '50%', form: 'must be a fraction 0-1' },
  GC_SWEEP_MS: { bad: '0', form: 'must be an integer number of milliseconds, at least 1000' },
  VERIFY_SAMPLE_PERCENT: { bad: '101', form: 'must be a percentage 0-100' },
  VERIFY_SWEEP_MS: { bad: '1d', form: 'must be an integer number of milliseconds, at least 1000' },
  OAUTH_TOKEN_TTL_S: { bad: '0', form: 'must be an integer number of seconds 1-86400' },
  WEBHOOK_ALLOWED_HOSTS: { bad: 'hooks.example.com,http://x', form: 'expected a comma-separated list of public, host names', shows: '"http://x" is neither' },
  WEBHOOK_ALLOW_HTTP: { bad: '1', form: 'must be true or false' },
  WEBHOOK_TIMEOUT_MS: { bad: '10s', form: 'must be an integer number of milliseconds 100-60000' },
  WEBHOOK_RETRY_BASE_MS: { bad: '5', form: 'must be an integer number of milliseconds, at least 10' },
  WEBHOOK_RETRY_MAX_MS: { bad: '1h', form: 'must be an integer number of milliseconds, at least 10' },
  WEBHOOK_RETRY_WINDOW_MS: { bad: '24h', form: 'must be an integer number of milliseconds, at least 0' },
  WEBHOOK_DISABLE_AFTER_MS: { bad: '5d', form: 'must be an integer number of milliseconds, at least 0' },
  ARCHIVER_LEASE_MS: { bad: '1000', form: 'must be an integer number of milliseconds, at least 3000' },
  PITR_WORK_DIR: { bad: '', form: 'must be a directory path' },
  PITR_SCRATCH_USER: { bad: '', form: 'must be an OS user name, e.g. postgres' },
};

describe('configuration errors', () => {
  it('have a case here for every variable the service reads', () => {
    expect(Object.keys(cases).sort()).toEqual([...CONFIG_VARIABLES].sort());
  });

  it.each(Object.entries(cases))('%s: a bad value names the variable, the form expected and what it got', (name, { bad, form, secret, shows }) => {
    const message = errorOf({ [name]: bad });
    expect(message).toMatch(new RegExp(`^invalid configuration: ${name}: .*${esc(form)}`));
    if (secret) {
      expect(message).not.toContain(bad);
    } else {
      expect(message).toContain(shows ?? `got ${JSON.stringify(bad)}`);
    }
    expect(message).not.toMatch(/expected (number|string), received|Invalid input/);
  });

  it('PORT=abc reads as a sentence, not as zod', () => {
    expect(errorOf({ PORT: 'abc' })).toBe('invalid configuration: PORT: must be an integer port number 0-65535 (0: any free port) (got "abc")');
  });

  it('lists every bad variable, one problem each', () => {
    const message = errorOf({ PORT: '70000', LOG_LEVEL: 'loud', REDIS_URL: 'http://r' });
    expect(message.split('; ').map((l) => l.replace(/^invalid configuration: /, '').split(':')[0])).toEqual(['REDIS_URL', 'PORT', 'LOG_LEVEL']);
  });

  it('does not repeat the password of a bad URL', () => {
    const message = errorOf({ DATABASE_URL: 'mysql://root:hunter2@db/x' });
    expect(message).toContain('got "mysql://***@db/x"');
    expect(message).not.toContain('hunter2');
  });

  it('ENCRYPTION_KEY, when split roles require it, says so and names its form', () => {
    expect(() => loadConfig({ ROLES: 'api' }, tmpdir(), () => {})).toThrow(
      /^invalid configuration: ENCRYPTION_KEY: required when ROLES is not all of api,worker,scheduler,archiver .*32 bytes, base64-encoded/,
    );
  });

  it('good values still parse as before', () => {
    const config = loadConfig(
      { ENCRYPTION_KEY: KEY, PORT: '0', ROLES: ' api , worker,api', GC_REPACK_THRESHOLD: '0.25', TARGET_ALLOW_SERVICE_SERVER: 'false', PACK_TARGET_BYTES: '1048576' },
      tmpdir(),
      () => {},
    );
    expect(config).toMatchObject({ port: 0, roles: ['api', 'worker'], gcRepackThreshold: 0.25, targetAllowServiceServer: false, packTargetBytes: 1048576 });
    const defaults = loadConfig({ ENCRYPTION_KEY: KEY }, tmpdir(), () => {});
    expect(defaults).toMatchObject({ port: 3000, host: '127.0.0.1', roles: ['api', 'worker', 'scheduler', 'archiver'], logLevel: 'info', oauthTokenTtlS: 300, targetAllowServiceServer: false });
  });
});
