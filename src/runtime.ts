import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { createDb, type Db } from './db/client.js';
import { createLedger, type Ledger } from './jobs/ledger.js';
import { createTargetPolicy, type TargetPolicy } from './components/index.js';
import { createSecretBox, type SecretBox } from './crypto/secrets.js';
import { createRedis } from './queue/connection.js';
import { createQueues, type Queues } from './queue/queues.js';
import { createStore } from './storage/index.js';
import type { ArtifactStore } from './storage/types.js';
import { createRepoService, type RepoService } from './repo/service.js';
import { createUrlGuard, ownServers, type UrlGuard } from './net/url-guard.js';

/** The infrastructure every role shares: one database pool, one producer connection, the stores. */
export interface Runtime {
  config: Readonly<Config>;
  log: Logger;
  db: Db;
  /** The one writer of job status and cluster job slots. */
  ledger: Ledger;
  redis: Redis;
  queues: Queues;
  store: ArtifactStore;
  secondaryStore: ArtifactStore | null;
  /** Tenants' repositories in the stores: keys, writers, verified readers. */
  repo: RepoService;
  box: SecretBox;
  /** Which PostgreSQL servers tenants' components may reach (not the service's own server unless TARGET_ALLOW_SERVICE_SERVER; never its own database). */
  targets: TargetPolicy;
  /** The SSRF guard for webhook (and hook) URLs: checked at creation and before every call. */
  webhookUrls: UrlGuard;
  now: () => Date;
  close(): Promise<void>;
}

export function createRuntime(config: Readonly<Config>, log: Logger, opts: { now?: () => Date } = {}): Runtime {
  const db = createDb(config.databaseUrl, { poolSize: config.dbPoolSize, connectTimeoutMs: config.dbConnectTimeoutMs });
  const redis = createRedis(config.redisUrl, 'producer');
  redis.on('error', (err) => log.debug({ err: err.message }, 'redis producer connection error'));
  const queues = createQueues(redis, config.queuePrefix);
  const store = createStore(config.storageUrl);
  const secondaryStore = config.storageSecondaryUrl ? createStore(config.storageSecondaryUrl) : null;
  return {
    config,
    log,
    db,
    ledger: createLedger(db),
    redis,
    queues,
    store,
    secondaryStore,
    repo: createRepoService({ db, masterKey: config.encryptionKey, primary: store, secondary: secondaryStore, settings: { packTargetBytes: config.packTargetBytes, sealNice: config.sealNice } }),
    box: createSecretBox(config.encryptionKey),
    targets: createTargetPolicy({
      allowedHosts: config.targetAllowedHosts,
      ownDatabaseUrl: config.databaseUrl,
      ownRedisUrl: config.redisUrl,
      allowServiceServer: config.targetAllowServiceServer,
    }),
    webhookUrls: createUrlGuard({
      allowedHosts: config.webhooks.allowedHosts,
      allowHttp: config.webhooks.allowHttp,
      protectedServers: ownServers(config.databaseUrl, config.redisUrl),
    }),
    now: opts.now ?? (() => new Date()),
    async close() {
      await queues.close().catch(() => {});
      redis.disconnect();
      await db.$disconnect();
    },
  };
}
