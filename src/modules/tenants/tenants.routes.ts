import type { App } from '../../http/types.js';
import type { Guard } from '../../http/auth.js';
import { bearer, commonErrors, listOf, listQuery, problemSchema } from '../../http/schemas.js';
import { createdTenantSchema, createTenantBody, tenantSchema } from './tenants.schemas.js';
import type { TenantService } from './tenants.service.js';

export function tenantRoutes(app: App, deps: { guard: Guard; service: TenantService }) {
  const { guard, service } = deps;
  const tags = ['tenants'];
  app.post('/v1/tenants', {
    onRequest: guard('platform'),
    schema: { tags, security: bearer, summary: 'Create a tenant (platform token); returns its first admin key', body: createTenantBody, response: { 201: createdTenantSchema, 409: problemSchema, ...commonErrors } },
    handler: async (req, reply) => {
      const created = await service.create(req.body);
      return reply.code(201).header('location', `/v1/tenants/${created.tenant.id}`).send(created);
    },
  });
  app.get('/v1/tenants', {
    onRequest: guard('platform'),
    schema: { tags, security: bearer, summary: 'List tenants (platform token)', querystring: listQuery, response: { 200: listOf(tenantSchema), ...commonErrors } },
    handler: async (req) => service.list(req.query),
  });
}
