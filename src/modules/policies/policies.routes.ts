import { z } from 'zod';
import type { App } from '../../http/types.js';
import { tenantOf, type Guard } from '../../http/auth.js';
import { bearer, commonErrors, idParams, listOf, listQuery, problemSchema } from '../../http/schemas.js';
import { createPolicyBody, patchPolicyBody, policySchema } from './policies.schemas.js';
import type { PolicyService } from './policies.service.js';

export function policyRoutes(app: App, deps: { guard: Guard; service: PolicyService }) {
  const { guard, service } = deps;
  const tags = ['policies'];

  app.post('/v1/policies', {
    onRequest: guard('admin'),
    schema: { tags, security: bearer, summary: 'Create a backup policy', body: createPolicyBody, response: { 201: policySchema, 409: problemSchema, ...commonErrors } },
    handler: async (req, reply) => {
      const p = await service.create(tenantOf(req).tenantId, req.body);
      return reply.code(201).header('location', `/v1/policies/${p.id}`).send(p);
    },
  });
  app.get('/v1/policies', {
    onRequest: guard('viewer'),
    schema: { tags, security: bearer, summary: 'List policies', querystring: listQuery, response: { 200: listOf(policySchema), ...commonErrors } },
    handler: async (req) => service.list(tenantOf(req).tenantId, req.query),
  });
  app.get('/v1/policies/:id', {
    onRequest: guard('viewer'),
    schema: { tags, security: bearer, summary: 'Get a policy', params: idParams, response: { 200: policySchema, ...commonErrors } },
    handler: async (req) => service.get(tenantOf(req).tenantId, req.params.id),
  });
  app.patch('/v1/policies/:id', {
    onRequest: guard('admin'),
    schema: { tags, security: bearer, summary: 'Change a policy (recomputes schedules and retention of its clusters)', params: idParams, body: patchPolicyBody, response: { 200: policySchema, 409: problemSchema, ...commonErrors } },
    handler: async (req) => service.update(tenantOf(req).tenantId, req.params.id, req.body),
  });
  app.delete('/v1/policies/:id', {
    onRequest: guard('admin'),
    schema: { tags, security: bearer, summary: 'Delete a policy no cluster uses', params: idParams, response: { 204: z.null().describe('deleted'), 409: problemSchema, ...commonErrors } },
    handler: async (req, reply) => {
      await service.delete(tenantOf(req).tenantId, req.params.id);
      return reply.code(204).send(null);
    },
  });
}
