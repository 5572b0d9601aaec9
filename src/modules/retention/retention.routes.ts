import type { App } from '../../http/types.js';
import { tenantOf, type Guard } from '../../http/auth.js';
import { idParams, json, securityFor } from '../../http/schemas.js';
import { retentionSchema } from './retention.schemas.js';
import type { RetentionService } from './retention.service.js';

export function retentionRoutes(app: App, deps: { guard: Guard; service: RetentionService }) {
  app.get('/v1/clusters/:id/retention', {
    onRequest: deps.guard('viewer'),
    schema: {
      operationId: 'getRetention',
      tags: ['backups'],
      security: securityFor('viewer'),
      summary: 'Which backups retention keeps, and which rule keeps each',
      params: idParams,
      response: { 200: json(retentionSchema, "every backup of the cluster, whether retention keeps it and the rules that do") },
    },
    handler: async (req) => deps.service.explain(tenantOf(req).tenantId, req.params.id),
  });
}
