import { z } from 'zod';
import type { App } from '../../http/types.js';
import { problem } from '../../http/problem.js';
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

export function opsRoutes(app: App, deps: { checks: ReadinessCheck[]; metrics: Metrics }) {
  const tags = ['ops'];
  app.get('/healthz', {
    schema: { tags, summary: 'Liveness: the process answers', response: { 200: z.object({ status: z.literal('ok') }) } },
    handler: async () => ({ status: 'ok' as const }),
  });
  app.get('/readyz', {
    schema: {
      tags,
      summary: 'Readiness: PostgreSQL and Redis answer (503 otherwise)',
      response: {
        200: z.object({ status: z.literal('ready'), checks: z.record(z.string(), z.string()) }),
        503: z.object({ type: z.string(), title: z.string(), status: z.number(), detail: z.string(), checks: z.record(z.string(), z.string()) }),
      },
    },
    handler: async (_req, reply) => {
      const results = await Promise.all(
        deps.checks.map(async (c) => {
          try {
            await withTimeout(c.check(), 2000);
            return [c.name, 'ok'] as const;
          } catch (err) {
            return [c.name, `unavailable: ${(err as Error).message}`] as const;
          }
        }),
      );
      const checks = Object.fromEntries(results);
      const down = results.filter(([, s]) => s !== 'ok').map(([n]) => n);
      if (down.length === 0) return { status: 'ready' as const, checks };
      return reply
        .code(503)
        .type('application/problem+json')
        .send({ ...problem(503, `not ready: ${down.join(', ')} unavailable`), checks });
    },
  });
  app.get('/metrics', {
    schema: { tags, summary: 'Prometheus metrics (text exposition format)' },
    handler: async (_req, reply) => reply.type(deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics()),
  });
}
