import type { App } from '../../http/types.js';
import { tenantOf, type Guard } from '../../http/auth.js';
import { idParams, json, problemResponse, securityFor } from '../../http/schemas.js';
import { retentionPreviewBody, retentionSchema } from './retention.schemas.js';
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
  app.post('/v1/clusters/:id/retention/preview', {
    onRequest: deps.guard('viewer'),
    schema: {
      operationId: 'previewRetention',
      tags: ['backups'],
      security: securityFor('viewer'),
      summary: 'What retention would keep and delete under a changed policy (nothing is saved)',
      description:
        "The answer of GET /v1/clusters/{id}/retention computed for the draft policy instead of the saved one. The draft is checked by the rules of POST /v1/policies, with the same messages (paths under `body.policy`). Nothing is saved and nothing is deleted.",
      params: idParams,
      body: retentionPreviewBody,
      response: {
        200: json(retentionSchema, 'every backup of the cluster, whether retention would keep it under the draft and the rules that would'),
        422: problemResponse('the draft breaks a policy rule (the messages of POST /v1/policies)'),
      },
    },
    handler: async (req) => deps.service.preview(tenantOf(req).tenantId, req.params.id, req.body.policy),
  });
}
