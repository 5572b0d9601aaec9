import { buildApp } from '../app.js';
import type { Runtime } from '../runtime.js';
import { createServices } from '../services.js';
import { createMetrics, type Metrics } from '../modules/ops/metrics.js';
import type { App } from '../http/types.js';

/** `metrics`: the process's registry, shared with the other roles it runs (one is made if omitted). */
export async function createApiApp(rt: Runtime, opts: { logger?: boolean; metrics?: Metrics } = {}): Promise<App> {
  const services = createServices(rt);
  const app = await buildApp({
    services,
    adminToken: rt.config.adminToken,
    bodyLimitBytes: rt.config.bodyLimitBytes,
    metrics: opts.metrics ?? createMetrics({ db: rt.db, queues: rt.queues, token: rt.config.metricsToken }),
    checks: [
      { name: 'postgres', check: async () => void (await rt.db.$queryRaw`SELECT 1`) },
      { name: 'redis', check: async () => void (await rt.redis.ping()) },
    ],
    now: rt.now,
    rateLimit: { ...rt.config.rateLimit, redis: rt.redis, prefix: rt.config.queuePrefix },
    logger: opts.logger === false ? false : rt.log,
  });
  return app;
}

export async function startApiRole(rt: Runtime, metrics?: Metrics): Promise<{ app: App; close(): Promise<void> }> {
  const app = await createApiApp(rt, metrics ? { metrics } : {});
  await app.listen({ port: rt.config.port, host: rt.config.host });
  return { app, close: () => app.close() };
}
