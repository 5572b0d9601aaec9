import type { App } from '../../http/types.js';
import { tenantOf, type Guard } from '../../http/auth.js';
import { json, listOf, securityFor } from '../../http/schemas.js';
import { eventSchema, listEventsQuery } from './events.schemas.js';
import type { EventService } from './events.service.js';

export function eventRoutes(app: App, deps: { guard: Guard; service: EventService }) {
  app.get('/v1/events', {
    onRequest: deps.guard('viewer'),
    schema: {
      operationId: 'listEvents',
      tags: ['events'],
      security: securityFor('viewer'),
      summary: "The tenant's events (changes of state of its backups, restores and clusters), newest first",
      querystring: listEventsQuery,
      response: { 200: json(listOf(eventSchema), 'a page of events') },
    },
    handler: async (req) => deps.service.list(tenantOf(req).tenantId, req.query),
  });
}
