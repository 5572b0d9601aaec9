import type { FastifyReply, FastifyRequest } from 'fastify';
import type { App } from '../../http/types.js';
import { tenantOf, type Guard } from '../../http/auth.js';
import { json, listOf, securityFor } from '../../http/schemas.js';
import { AUDITED } from './audit.actions.js';
import { auditEventSchema, auditQuery } from './audit.schemas.js';
import type { AuditService } from './audit.service.js';

/** Which resource a request acted on: the id in the path, or for a create the one in Location. */
function targetOf(req: FastifyRequest, reply: FastifyReply): string | null {
  const params = (req.params ?? {}) as Record<string, string>;
  const created = reply.getHeader('location');
  if (req.method === 'POST' && typeof created === 'string' && reply.statusCode < 300) return created.split('/').pop() ?? null;
  return params.backup_id ?? params.id ?? null;
}

export function auditRoutes(app: App, deps: { guard: Guard; service: AuditService; now: () => Date }) {
  // Pending events are written before the API stops.
  app.addHook('onClose', async () => deps.service.flush());
  // Every mutating request made with a valid credential is recorded, whatever its outcome.
  app.addHook('onResponse', async (req, reply) => {
    const spec = AUDITED[`${req.method} ${req.routeOptions.url}`];
    const p = req.principal;
    if (!spec || !p) return;
    let tenantId = p.kind === 'key' ? p.tenantId : null;
    const targetId = targetOf(req, reply);
    if (spec.action === 'tenant.create') tenantId = reply.statusCode < 300 ? targetId : null;
    await deps.service
      .record({
        tenantId,
        keyId: p.kind === 'key' ? p.keyId : null,
        actor: p.kind === 'key' ? p.credential : 'platform',
        action: spec.action,
        targetType: spec.target,
        targetId,
        statusCode: reply.statusCode,
        method: req.method,
        path: req.url.split('?')[0]!.slice(0, 500),
        requestId: req.id,
        at: deps.now(),
      })
      .catch((err: unknown) => req.log.error({ err }, 'could not record the audit event'));
  });

  app.get('/v1/audit-events', {
    onRequest: deps.guard('admin'),
    schema: {
      operationId: 'listAuditEvents',
      tags: ['audit'],
      security: securityFor('admin'),
      summary: 'Mutating requests made in this tenant, newest first',
      querystring: auditQuery,
      response: { 200: json(listOf(auditEventSchema), 'a page of audit events') },
    },
    handler: async (req) => deps.service.list(tenantOf(req).tenantId, req.query),
  });
}
