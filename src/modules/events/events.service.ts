import type { Db } from '../../db/client.js';
import { iso } from '../../http/schemas.js';
import { decodeEventCursor, encodeEventCursor } from './events.cursor.js';
import type { EventView } from './events.schemas.js';
import type { EventType } from './outbox.js';

export interface EventServiceDeps {
  db: Db;
}

export interface EventQuery {
  type?: EventType | undefined;
  cluster_id?: string | undefined;
  limit: number;
  cursor?: string | undefined;
}

/** Reading a tenant's events (GET /v1/events). Writing them is outbox.ts's, inside the changes' transactions. */
export function createEventService(deps: EventServiceDeps) {
  const { db } = deps;
  return {
    /** A page of the tenant's events, newest first by seq (keyset: later events never shift the pages after a cursor). */
    async list(tenantId: string, q: EventQuery): Promise<{ items: EventView[]; next_cursor: string | null }> {
      const before = q.cursor === undefined ? null : decodeEventCursor(q.cursor);
      const rows = await db.event.findMany({
        where: { tenantId, ...(q.type && { type: q.type }), ...(q.cluster_id && { clusterId: q.cluster_id }), ...(before !== null && { seq: { lt: before } }) },
        orderBy: { seq: 'desc' },
        take: q.limit + 1,
        select: { id: true, seq: true, type: true, occurredAt: true, clusterId: true, data: true },
      });
      const items = rows.slice(0, q.limit);
      const last = items[items.length - 1];
      return {
        items: items.map((e) => ({ id: e.id, type: e.type as EventType, occurred_at: iso(e.occurredAt), cluster_id: e.clusterId, data: e.data as EventView['data'] })),
        next_cursor: rows.length > q.limit && last ? encodeEventCursor(last.seq) : null,
      };
    },
  };
}
export type EventService = ReturnType<typeof createEventService>;
