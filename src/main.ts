import { mkdir } from 'node:fs/promises';
import closeWithGrace from 'close-with-grace';
import { createLogger } from './lib/logger.js';
import { Redis } from 'ioredis';
import { ConfigError, loadConfig } from './config.js';
import { ensureDatabase, migrate } from './db/migrate.js';
import { createRuntime } from './runtime.js';
import { startApiRole } from './roles/api.js';
import { startWorkerRole } from './roles/worker.js';
import { startSchedulerRole } from './roles/scheduler.js';
import { startArchiverRole } from './roles/archiver.js';
import { createMetrics } from './modules/ops/metrics.js';
import { checkKeyFingerprint, KeyMismatch } from './crypto/fingerprint.js';
import { assertUnwrapsStoredKeys } from './repo/repository.js';
import { WrongKeyError } from './repo/types.js';

function fail(msg: string): never {
  console.error(`error: ${msg}`);
  process.exit(1);
}

function where(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || (u.protocol.startsWith('redis') ? 6379 : 5432)}`;
  } catch {
    return 'the configured address';
  }
}

async function checkRedis(url: string): Promise<string | null> {
  const r = new Redis(url, { lazyConnect: true, connectTimeout: 3000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  r.on('error', () => {});
  try {
    await r.connect();
    const policy = (await r.config('GET', 'maxmemory-policy').catch(() => [])) as string[];
    return policy[1] && policy[1] !== 'noeviction' ? policy[1] : null;
  } finally {
    r.disconnect();
  }
}

async function main() {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
    throw err;
  }
  const log = createLogger(config.logLevel);

  try {
    if (await ensureDatabase(config.databaseUrl)) log.info('created the database');
    const applied = await migrate(config.databaseUrl);
    if (applied.length) log.info({ applied }, 'applied migrations');
  } catch (err) {
    fail(`cannot prepare PostgreSQL at ${where(config.databaseUrl)}: ${(err as Error).message}`);
  }
  try {
    const policy = await checkRedis(config.redisUrl);
    if (policy) log.warn(`Redis maxmemory-policy is ${policy}; BullMQ needs noeviction or jobs can be lost`);
  } catch (err) {
    fail(`cannot reach Redis at ${where(config.redisUrl)}: ${(err as Error).message}`);
  }

  await mkdir(config.dataRoot, { recursive: true });
  const rt = createRuntime(config, log);
  try {
    // Before anything is written: a key that does not unwrap the tenants' repository keys stops here.
    await assertUnwrapsStoredKeys(rt.db, config.encryptionKey);
    if ((await checkKeyFingerprint(rt.db, config.encryptionKey)) === 'recorded') log.info('recorded the encryption key fingerprint');
  } catch (err) {
    if (err instanceof KeyMismatch || err instanceof WrongKeyError) fail(err.message);
    fail(`cannot check the encryption key against PostgreSQL at ${where(config.databaseUrl)}: ${(err as Error).message.split('\n')[0]}`);
  }
  const stops: (() => Promise<void>)[] = [];
  if (config.roles.includes('worker')) stops.push(startWorkerRole(rt).close);
  if (config.roles.includes('archiver')) stops.push(startArchiverRole(rt).close);
  // One registry per process: /metrics shows what every role of this process counted.
  const metrics = createMetrics({ db: rt.db, queues: rt.queues, token: config.metricsToken });
  if (config.roles.includes('scheduler')) stops.push(startSchedulerRole(rt, { onSkip: () => metrics.schedulerSkipped.inc() }).close);
  if (config.roles.includes('api')) {
    const api = await startApiRole(rt, metrics);
    stops.unshift(api.close); // stop accepting requests first
  }
  log.info({ roles: config.roles, port: config.roles.includes('api') ? config.port : undefined }, 'started');

  closeWithGrace({ delay: 25_000 }, async ({ signal, err }) => {
    if (err) log.error({ err }, 'shutting down after an error');
    else log.info({ signal }, 'shutting down');
    for (const stop of stops) await stop().catch((e: unknown) => log.error({ err: e }, 'error while stopping'));
    await rt.close();
  });
}

main().catch((err: unknown) => fail((err as Error).message));
