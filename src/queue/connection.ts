import { Redis, type RedisOptions } from 'ioredis';

/**
 * Producers fail fast while Redis is down (the database row is the record; the reconciler
 * enqueues later). Workers block on Redis and so need maxRetriesPerRequest: null (BullMQ).
 */
export function createRedis(url: string, role: 'producer' | 'worker'): Redis {
  const opts: RedisOptions =
    role === 'worker'
      ? { maxRetriesPerRequest: null, enableReadyCheck: true }
      : { maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: 3000 };
  return new Redis(url, { ...opts, lazyConnect: false, retryStrategy: (n) => Math.min(200 * n, 2000) });
}
