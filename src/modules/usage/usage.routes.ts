import type { App } from '../../http/types.js';
import { tenantOf, type Guard } from '../../http/auth.js';
import { json, securityFor } from '../../http/schemas.js';
import { usageSchema } from './usage.schemas.js';
import type { UsageService } from './usage.service.js';

export function usageRoutes(app: App, deps: { guard: Guard; service: UsageService }) {
  app.get('/v1/usage', {
    onRequest: deps.guard('viewer'),
    schema: {
      operationId: 'getUsage',
      tags: ['usage'],
      security: securityFor('viewer'),
      summary: "The tenant's storage: logical bytes of its completed backups and bytes stored after deduplication, per cluster",
      description:
        'A chunk several clusters share is stored once and counted for the cluster that stored it first; chunks of deleted clusters that other backups still use count in the tenant total only, so the clusters may sum to less than `stored_bytes`.',
      response: { 200: json(usageSchema, "the tenant's storage, per cluster") },
    },
    handler: async (req) => deps.service.get(tenantOf(req).tenantId),
  });
}
