import type { App } from '../../http/types.js';
import type { Guard } from '../../http/auth.js';
import { resourceRoutes } from '../../http/resource-routes.js';
import { tenantOf } from '../../http/auth.js';
import { json, problemResponse, securityFor } from '../../http/schemas.js';
import { createPolicyBody, dataRetentionSchema, patchDataRetentionBody, patchPolicyBody, policySchema } from './policies.schemas.js';
import type { PolicyService } from './policies.service.js';

export function policyRoutes(app: App, deps: { guard: Guard; service: PolicyService }) {
  resourceRoutes(app, {
    path: '/v1/policies',
    tag: 'policies',
    noun: 'policy',
    item: policySchema,
    createBody: createPolicyBody,
    patchBody: patchPolicyBody,
    guard: deps.guard,
    service: deps.service,
    summaries: { update: 'Change a policy (recomputes schedules and retention of its clusters)', delete: 'Delete a policy no cluster uses' },
    conflicts: {
      create: 'a policy with this name already exists in the tenant',
      update: 'another policy has this name',
      delete: "this is an environment's default policy, or clusters still use it",
    },
    asyncDelete: false,
  });
}

/** The three environment defaults in Upsun's data_retention shape (SPEC section 11). */
export function dataRetentionRoutes(app: App, deps: { guard: Guard; service: PolicyService }) {
  app.get('/v1/data-retention', {
    onRequest: deps.guard('viewer'),
    schema: {
      operationId: 'getDataRetention',
      tags: ['policies'],
      security: securityFor('viewer'),
      summary: "Each environment type's default policy (Upsun's data_retention)",
      response: { 200: json(dataRetentionSchema, 'the three defaults') },
    },
    handler: async (req) => deps.service.dataRetention(tenantOf(req).tenantId),
  });
  app.patch('/v1/data-retention', {
    onRequest: deps.guard('admin'),
    schema: {
      operationId: 'updateDataRetention',
      tags: ['policies'],
      security: securityFor('admin'),
      summary: 'Change environment defaults (moves the schedules of the clusters that use them)',
      body: patchDataRetentionBody,
      response: { 200: json(dataRetentionSchema, 'the three defaults as they are now'), 422: problemResponse('the changed values break a policy rule') },
    },
    handler: async (req) => deps.service.patchDataRetention(tenantOf(req).tenantId, req.body),
  });
}
