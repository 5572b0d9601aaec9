import { createHash, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type { App } from '../../http/types.js';
import { problem, sendProblem } from '../../http/problem.js';
import { json, PROBLEM_MEDIA_TYPE, problemResponse, problemSchema, publicAccess } from '../../http/schemas.js';
import type { Metrics } from './metrics.js';

export interface ReadinessCheck {
  name: string;
  check(): Promise<void>;
}

async function withTimeout(p: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('timed out')), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

const checkState = z.enum(['ok', 'down']);
const checksSchema = z.record(z.string(), checkState);
type Checks = Record<string, z.infer<typeof checkState>>;

/**
 * Runs the checks; concurrent probes share one run, so a flood of /readyz costs one query each
 * way at a time. Why a dependency is down goes to the log (once per change), never to the
 * unauthenticated answer.
 */
function createReadiness(checks: ReadinessCheck[], log: App['log']) {
  let running: Promise<Checks> | null = null;
  const last = new Map<string, string>();
  const run = async (): Promise<Checks> => {
    const results = await Promise.all(
      checks.map(async (c) => {
        try {
          await withTimeout(c.check(), 2000);
          if (last.get(c.name) !== 'ok') log.info({ check: c.name }, 'readiness check ok');
          last.set(c.name, 'ok');
          return [c.name, 'ok'] as const;
        } catch (err) {
          if (last.get(c.name) !== 'down') log.warn({ check: c.name, err: (err as Error).message }, 'readiness check failed');
          last.set(c.name, 'down');
          return [c.name, 'down'] as const;
        }
      }),
    );
    return Object.fromEntries(results);
  };
  return () => (running ??= run().finally(() => (running = null)));
}

function sha(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

const metricsResponses = {
  200: { description: 'the metrics', content: { 'text/plain': { schema: z.string().describe('Prometheus text exposition format, version 0.0.4') } } },
  401: problemResponse('missing or wrong METRICS_TOKEN', ['WWW-Authenticate']),
  404: problemResponse('METRICS_TOKEN is not configured: /metrics is not served'),
};
const notReady = problemSchema.extend({ checks: checksSchema }).meta({ id: 'NotReady', description: 'a problem naming the checks that failed' });

export function opsRoutes(app: App, deps: { checks: ReadinessCheck[]; metrics: Metrics }) {
  const tags = ['ops'];
  const readiness = createReadiness(deps.checks, app.log);
  app.get('/healthz', {
    schema: {
      operationId: 'getLiveness',
      tags,
      security: publicAccess,
      summary: 'Liveness: the process answers',
      response: { 200: json(z.object({ status: z.literal('ok') }), 'the process is alive') },
    },
    handler: async () => ({ status: 'ok' as const }),
  });
  app.get('/readyz', {
    schema: {
      operationId: 'getReadiness',
      tags,
      security: publicAccess,
      summary: 'Readiness: PostgreSQL and Redis answer (503 otherwise)',
      response: {
        200: json(z.object({ status: z.literal('ready'), checks: checksSchema }), 'every dependency answers'),
        503: { description: 'a dependency does not answer (named in `checks`)', content: { [PROBLEM_MEDIA_TYPE]: { schema: notReady } } },
      },
    },
    handler: async (_req, reply) => {
      const checks = await readiness();
      const down = Object.keys(checks).filter((n) => checks[n] !== 'ok');
      if (down.length === 0) return { status: 'ready' as const, checks };
      return reply
        .code(503)
        .type('application/problem+json')
        .send({ ...problem(503, `not ready: ${down.join(', ')} down`), checks });
    },
  });
  const token = deps.metrics.token;
  app.get('/metrics', {
    schema: {
      operationId: 'getMetrics',
      tags,
      summary: 'Prometheus metrics (text exposition format); needs Authorization: Bearer <METRICS_TOKEN>',
      security: [{ metricsToken: [] }],
      response: metricsResponses,
    },
    handler: async (req, reply) => {
      // Unset token: answer exactly like an unknown route.
      if (!token) return sendProblem(reply, problem(404, `no route ${req.method} ${req.url.split('?')[0]}`));
      const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
      if (!m?.[1] || !timingSafeEqual(sha(m[1]), sha(token)))
        return sendProblem(reply.header('www-authenticate', 'Bearer realm="metrics"'), problem(401, 'missing or wrong metrics token (Authorization: Bearer <METRICS_TOKEN>)'));
      return reply.type(deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics());
    },
  });
}
