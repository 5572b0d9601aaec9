import { z } from 'zod';
import { timestamp } from '../../http/schemas.js';
import { AUDIT_ACTIONS } from './audit.actions.js';

export const auditQuery = z.object({
  action: z.enum(AUDIT_ACTIONS as [string, ...string[]]).optional(),
  target_id: z.string().max(64).optional().describe('id of the resource acted on'),
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().max(512).optional(),
});

export const auditEventSchema = z
  .object({
    id: z.uuid(),
    action: z.string(),
    actor: z.object({ type: z.enum(['platform', 'api_key', 'api_client']), key_id: z.uuid().nullable().describe('the API key, or the API client of the access token') }),
    target: z.object({ type: z.string().nullable(), id: z.string().nullable() }),
    outcome: z.enum(['success', 'failure']),
    status_code: z.number().int(),
    request_id: z.string(),
    method: z.string(),
    path: z.string(),
    created_at: timestamp,
  })
  .meta({ id: 'AuditEvent' });
