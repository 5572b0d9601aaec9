import { randomUUID } from 'node:crypto';
import type { Db } from '../../db/client.js';
import { iso } from '../../http/schemas.js';
import { afterCursor, newestFirst, page } from '../../lib/cursor.js';

export interface AuditRecord {
  tenantId: string | null;
  keyId: string | null;
  actor: 'platform' | 'api_key';
  action: string;
  targetType: string | null;
  targetId: string | null;
  statusCode: number;
  method: string;
  path: string;
  requestId: string;
  at: Date;
}

type Row = NonNullable<Awaited<ReturnType<Db['auditEvent']['findFirst']>>>;

const present = (e: Row) => ({
  id: e.id,
  action: e.action,
  actor: { type: e.actor as 'platform' | 'api_key', key_id: e.keyId },
  target: { type: e.targetType, id: e.targetId },
  outcome: e.outcome as 'success' | 'failure',
  status_code: e.statusCode,
  request_id: e.requestId,
  method: e.method,
  path: e.path,
  created_at: iso(e.createdAt),
});

export function createAuditService(deps: { db: Db }) {
  const { db } = deps;
  return {
    async record(r: AuditRecord) {
      await db.auditEvent.create({
        data: {
          id: randomUUID(),
          tenantId: r.tenantId,
          keyId: r.keyId,
          actor: r.actor,
          action: r.action,
          targetType: r.targetType,
          targetId: r.targetId,
          outcome: r.statusCode < 400 ? 'success' : 'failure',
          statusCode: r.statusCode,
          method: r.method,
          path: r.path,
          requestId: r.requestId,
          createdAt: r.at,
        },
      });
    },
    async list(tenantId: string, q: { action?: string | undefined; target_id?: string | undefined; limit: number; cursor?: string | undefined }) {
      const rows = await db.auditEvent.findMany({
        where: { tenantId, ...(q.action && { action: q.action }), ...(q.target_id && { targetId: q.target_id }), ...afterCursor(q.cursor) },
        orderBy: newestFirst,
        take: q.limit + 1,
      });
      const { items, nextCursor } = page(rows, q.limit);
      return { items: items.map(present), next_cursor: nextCursor };
    },
  };
}
export type AuditService = ReturnType<typeof createAuditService>;
