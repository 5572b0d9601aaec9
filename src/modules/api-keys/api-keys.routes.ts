import type { App } from '../../http/types.js';
import type { Guard } from '../../http/auth.js';
import { tenantOf } from '../../http/auth.js';
import { idParams, json, listOf, listQuery, problemResponse, securityFor } from '../../http/schemas.js';
import { apiKeySchema, createApiKeyBody, createdApiKeySchema } from './api-keys.schemas.js';
import type { ApiKeyService } from './api-keys.service.js';
import { z } from 'zod';

export function apiKeyRoutes(app: App, deps: { guard: Guard; service: ApiKeyService }) {
  const { guard, service } = deps;
  const tags = ['api-keys'];

  app.post('/v1/api-keys', {
    onRequest: guard('admin'),
    schema: {
      operationId: 'createApiKey',
      tags,
      security: securityFor('admin'),
      summary: 'Create an API key (the token is shown once)',
      body: createApiKeyBody,
      response: { 201: json(createdApiKeySchema, 'the key with its token (shown once)', ['Location']) },
    },
    handler: async (req, reply) => {
      const key = await service.create(tenantOf(req).tenantId, req.body);
      return reply.code(201).header('location', `/v1/api-keys/${key.id}`).send(key);
    },
  });

  app.get('/v1/api-keys', {
    onRequest: guard('admin'),
    schema: { operationId: 'listApiKeys', tags, security: securityFor('admin'), summary: 'List active API keys', querystring: listQuery, response: { 200: json(listOf(apiKeySchema), 'a page of active keys (never their tokens)') } },
    handler: async (req) => service.list(tenantOf(req).tenantId, req.query),
  });

  app.delete('/v1/api-keys/:id', {
    onRequest: guard('admin'),
    schema: {
      operationId: 'revokeApiKey',
      tags,
      security: securityFor('admin'),
      summary: 'Revoke an API key',
      params: idParams,
      response: { 204: z.null().describe('revoked'), 409: problemResponse('the last admin key of the tenant cannot be revoked; create another admin key first') },
    },
    handler: async (req, reply) => {
      await service.revoke(tenantOf(req).tenantId, req.params.id);
      return reply.code(204).send(null);
    },
  });
}
