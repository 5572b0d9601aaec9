import { randomUUID } from 'node:crypto';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyServerOptions } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Logger } from 'pino';
import type { Redis } from 'ioredis';
import { createGuard } from './http/auth.js';
import { createRecentCredentials, registerRateLimit } from './http/rate-limit.js';
import { frameworkErrorHandler, registerProblemHandlers } from './http/problem.js';
import { swaggerOptions } from './http/openapi.js';
import { consolePlugin } from './http/console.js';
import type { App } from './http/types.js';
import { apiKeyRoutes } from './modules/api-keys/api-keys.routes.js';
import { apiClientRoutes } from './modules/api-clients/api-clients.routes.js';
import { oauthRoutes } from './modules/oauth/oauth.routes.js';
import { backupFileRoutes, backupRoutes } from './modules/backups/backups.routes.js';
import { usageRoutes } from './modules/usage/usage.routes.js';
import { clusterRoutes } from './modules/clusters/clusters.routes.js';
import type { Metrics } from './modules/ops/metrics.js';
import { opsRoutes, type ReadinessCheck } from './modules/ops/ops.routes.js';
import { dataRetentionRoutes, policyRoutes } from './modules/policies/policies.routes.js';
import { retentionRoutes } from './modules/retention/retention.routes.js';
import { restoreRoutes } from './modules/restores/restores.routes.js';
import { pitrRoutes } from './modules/pitr/pitr.routes.js';
import { auditRoutes } from './modules/audit/audit.routes.js';
import { tenantRoutes } from './modules/tenants/tenants.routes.js';
import { eventRoutes } from './modules/events/events.routes.js';
import { webhookRoutes } from './modules/webhooks/webhooks.routes.js';
import type { Services } from './services.js';

export interface AppDeps {
  /** Shared counter store for the per-credential rate limit; null: in-process counters. */
  rateLimit: { max: number; windowMs: number; redis: Redis | null; prefix: string };
  services: Services;
  adminToken: string | undefined;
  bodyLimitBytes: number;
  metrics: Metrics;
  checks: ReadinessCheck[];
  now: () => Date;
  logger: Logger | false;
}

export { API_VERSION } from './http/openapi.js';

const REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;

/** Builds the HTTP API. Constructing it touches no network: it only registers routes. */
export async function buildApp(deps: AppDeps): Promise<App> {
  const opts: FastifyServerOptions = {
    bodyLimit: deps.bodyLimitBytes,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
    logController: new LogController({ requestIdLogLabel: 'request_id' }),
    frameworkErrors: frameworkErrorHandler,
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 200 },
  };
  const app = (deps.logger ? Fastify({ ...opts, loggerInstance: deps.logger as unknown as FastifyBaseLogger }) : Fastify(opts)).withTypeProvider<ZodTypeProvider>() as unknown as App;

  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.decorateRequest('principal', null);
  registerProblemHandlers(app);

  app.addHook('onRequest', async (req, reply) => {
    void reply.header('x-request-id', req.id);
  });
  app.addHook('onResponse', async (req, reply) => {
    deps.metrics.httpDuration.observe(
      { method: req.method, route: req.routeOptions.url ?? 'unmatched', status_code: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
  });

  await app.register(swagger, swaggerOptions);
  await app.register(swaggerUi, { routePrefix: '/docs' });
  // Before any guard: per credential once this process has seen it authenticate, else per
  // client address (see src/http/rate-limit.ts).
  const recent = createRecentCredentials();
  await registerRateLimit(app, { ...deps.rateLimit, recent });

  const guard = createGuard({ adminToken: deps.adminToken, apiKeys: deps.services.repos.apiKeys, accessTokens: deps.services.oauth, now: deps.now, recent });
  const s = deps.services;
  auditRoutes(app, { guard, service: s.audit, now: deps.now });
  tenantRoutes(app, { guard, service: s.tenants });
  apiKeyRoutes(app, { guard, service: s.apiKeys });
  apiClientRoutes(app, { guard, service: s.apiClients });
  oauthRoutes(app, { service: s.oauth });
  policyRoutes(app, { guard, service: s.policies });
  dataRetentionRoutes(app, { guard, service: s.policies });
  clusterRoutes(app, { guard, service: s.clusters });
  backupRoutes(app, { guard, service: s.backups });
  backupFileRoutes(app, { guard, service: s.files });
  usageRoutes(app, { guard, service: s.usage });
  retentionRoutes(app, { guard, service: s.retention });
  restoreRoutes(app, { guard, service: s.restores });
  pitrRoutes(app, { guard, service: s.pitr });
  eventRoutes(app, { guard, service: s.events });
  webhookRoutes(app, { guard, service: s.webhooks });
  opsRoutes(app, { checks: deps.checks, metrics: deps.metrics });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  // The web console (SPEC section 14), outside the API's document; its own CSP and headers.
  await app.register(consolePlugin);

  return app;
}
