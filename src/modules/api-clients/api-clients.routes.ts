import { z } from 'zod';
import type { App } from '../../http/types.js';
import { tenantOf, type Guard } from '../../http/auth.js';
import { idParams, json, listOf, listQuery, securityFor } from '../../http/schemas.js';
import { noStore } from '../oauth/oauth.schemas.js';
import { apiClientSchema, createApiClientBody, createdApiClientSchema } from './api-clients.schemas.js';
import type { ApiClientService } from './api-clients.service.js';

export function apiClientRoutes(app: App, deps: { guard: Guard; service: ApiClientService }) {
  const { guard, service } = deps;
  const tags = ['api-clients'];

  app.post('/v1/api-clients', {
    onRequest: guard('admin'),
    schema: {
      operationId: 'createApiClient',
      tags,
      security: securityFor('admin'),
      summary: 'Create an OAuth2 client (the client_secret is shown once)',
      description: 'The client exchanges its client_id and client_secret for access tokens at POST /oauth/token (client credentials grant).',
      body: createApiClientBody,
      response: { 201: noStore(json(createdApiClientSchema, 'the client with its client_secret (shown once)', ['Location'])) },
    },
    handler: async (req, reply) => {
      const client = await service.create(tenantOf(req).tenantId, req.body);
      // The body holds a secret: no cache along the way may keep it.
      return reply.code(201).header('location', `/v1/api-clients/${client.id}`).header('cache-control', 'no-store').send(client);
    },
  });

  app.get('/v1/api-clients', {
    onRequest: guard('admin'),
    schema: { operationId: 'listApiClients', tags, security: securityFor('admin'), summary: 'List OAuth2 clients (never their secrets)', querystring: listQuery, response: { 200: json(listOf(apiClientSchema), 'a page of clients (never their secrets)') } },
    handler: async (req) => service.list(tenantOf(req).tenantId, req.query),
  });

  app.get('/v1/api-clients/:id', {
    onRequest: guard('admin'),
    schema: { operationId: 'getApiClient', tags, security: securityFor('admin'), summary: 'Get an OAuth2 client', params: idParams, response: { 200: json(apiClientSchema, 'the client (never its secret)') } },
    handler: async (req) => service.get(tenantOf(req).tenantId, req.params.id),
  });

  app.delete('/v1/api-clients/:id', {
    onRequest: guard('admin'),
    schema: {
      operationId: 'deleteApiClient',
      tags,
      security: securityFor('admin'),
      summary: 'Delete an OAuth2 client; its access tokens are refused at once',
      params: idParams,
      response: { 204: z.null().describe('deleted; its access tokens are refused from now on') },
    },
    handler: async (req, reply) => {
      await service.delete(tenantOf(req).tenantId, req.params.id);
      return reply.code(204).send(null);
    },
  });
}
