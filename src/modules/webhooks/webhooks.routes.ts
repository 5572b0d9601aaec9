import { z } from 'zod';
import type { App } from '../../http/types.js';
import { tenantOf, type Guard } from '../../http/auth.js';
import { idParams, json, listOf, listQuery, problemResponse, securityFor } from '../../http/schemas.js';
import { noStore } from '../oauth/oauth.schemas.js';
import { createdWebhookSchema, createWebhookBody, deliveryAttemptSchema, deliveriesQuery, patchWebhookBody, testResultSchema, webhookSchema } from './webhooks.schemas.js';
import type { WebhookService } from './webhooks.service.js';

/**
 * Every route is admin-only, reads too: a webhook URL is often a capability (chat services put
 * their token in the path), and the deliveries show what the receiver answered.
 */
export function webhookRoutes(app: App, deps: { guard: Guard; service: WebhookService }) {
  const { guard, service } = deps;
  const tags = ['webhooks'];
  const admin = { onRequest: guard('admin') };
  const security = securityFor('admin');

  app.post('/v1/webhooks', {
    ...admin,
    schema: {
      operationId: 'createWebhook',
      tags,
      security,
      summary: 'Create a webhook (its signing secret is shown once)',
      description:
        'The URL is checked by the SSRF guard (422 naming the problem): https only (http where WEBHOOK_ALLOW_HTTP=true), no credentials, and a host that is and resolves to public addresses only, unless WEBHOOK_ALLOWED_HOSTS lists it. Deliveries follow Standard Webhooks (see docs/webhooks.md).',
      body: createWebhookBody,
      response: {
        201: noStore(json(createdWebhookSchema, 'the webhook with its signing secret (shown once)', ['Location'])),
        409: problemResponse('the tenant has the most webhooks it may have (50)'),
      },
    },
    handler: async (req, reply) => {
      const created = await service.create(tenantOf(req).tenantId, req.body);
      // The body holds the secret: no cache along the way may keep it.
      return reply.code(201).header('location', `/v1/webhooks/${created.id}`).header('cache-control', 'no-store').send(created);
    },
  });

  app.get('/v1/webhooks', {
    ...admin,
    schema: { operationId: 'listWebhooks', tags, security, summary: 'List webhooks, newest first (never their secrets)', querystring: listQuery, response: { 200: json(listOf(webhookSchema), 'a page of webhooks') } },
    handler: async (req) => service.list(tenantOf(req).tenantId, req.query),
  });

  app.get('/v1/webhooks/:id', {
    ...admin,
    schema: { operationId: 'getWebhook', tags, security, summary: 'Get a webhook (never its secret)', params: idParams, response: { 200: json(webhookSchema, 'the webhook') } },
    handler: async (req) => service.get(tenantOf(req).tenantId, req.params.id),
  });

  app.patch('/v1/webhooks/:id', {
    ...admin,
    schema: {
      operationId: 'updateWebhook',
      tags,
      security,
      summary: 'Change a webhook: url (checked again), events, description, enabled',
      params: idParams,
      body: patchWebhookBody,
      response: { 200: json(webhookSchema, 'the webhook as changed') },
    },
    handler: async (req) => service.update(tenantOf(req).tenantId, req.params.id, req.body),
  });

  app.delete('/v1/webhooks/:id', {
    ...admin,
    schema: {
      operationId: 'deleteWebhook',
      tags,
      security,
      summary: 'Delete a webhook, its pending deliveries and its delivery history',
      params: idParams,
      response: { 204: z.null().describe('deleted') },
    },
    handler: async (req, reply) => {
      await service.delete(tenantOf(req).tenantId, req.params.id);
      return reply.code(204).send(null);
    },
  });

  app.post('/v1/webhooks/:id/test', {
    ...admin,
    schema: {
      operationId: 'testWebhook',
      tags,
      security,
      summary: 'Send a signed `webhook.test` event once and answer what came of it',
      description:
        'One attempt, not retried and not recorded in the deliveries: the body is `{id, type: "webhook.test", occurred_at, cluster_id: null, data: {webhook}}`, signed like every delivery. A disabled webhook can be tested too.',
      params: idParams,
      response: { 200: json(testResultSchema, 'the outcome of the attempt (a receiver that failed is still a 200 here: see outcome)') },
    },
    handler: async (req) => service.test(tenantOf(req).tenantId, req.params.id),
  });

  app.get('/v1/webhooks/:id/deliveries', {
    ...admin,
    schema: {
      operationId: 'listWebhookDeliveries',
      tags,
      security,
      summary: 'Every delivery attempt of a webhook, newest first',
      params: idParams,
      querystring: deliveriesQuery,
      response: { 200: json(listOf(deliveryAttemptSchema), 'a page of attempts') },
    },
    handler: async (req) => service.deliveries(tenantOf(req).tenantId, req.params.id, req.query),
  });
}
