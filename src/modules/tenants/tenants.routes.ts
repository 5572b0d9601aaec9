import type { App } from '../../http/types.js';
import type { Guard } from '../../http/auth.js';
import { json, listOf, listQuery, problemResponse, securityFor } from '../../http/schemas.js';
import { createdTenantSchema, createTenantBody, tenantSchema } from './tenants.schemas.js';
import type { TenantService } from './tenants.service.js';

export function tenantRoutes(app: App, deps: { guard: Guard; service: TenantService }) {
  const { guard, service } = deps;
  const tags = ['tenants'];
  app.post('/v1/tenants', {
    onRequest: guard('platform'),
    schema: {
      operationId: 'createTenant',
      tags,
      security: securityFor('platform'),
      summary: 'Create a tenant (platform token); returns its first admin key',
      body: createTenantBody,
      response: { 201: json(createdTenantSchema, 'the tenant and its first admin key (the token is shown once)', ['Location']), 409: problemResponse('another tenant has this name or this data_dir') },
    },
    handler: async (req, reply) => {
      const created = await service.create(req.body);
      return reply.code(201).header('location', `/v1/tenants/${created.tenant.id}`).send(created);
    },
  });
  app.get('/v1/tenants', {
    onRequest: guard('platform'),
    schema: { operationId: 'listTenants', tags, security: securityFor('platform'), summary: 'List tenants (platform token)', querystring: listQuery, response: { 200: json(listOf(tenantSchema), 'a page of tenants') } },
    handler: async (req) => service.list(req.query),
  });
}
