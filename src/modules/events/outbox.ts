import { randomUUID } from 'node:crypto';
import type { Tx } from '../../db/client.js';

export { EVENT_TYPES, type EventType } from './event-types.js';
import type { EventType } from './event-types.js';

/** The PostgreSQL channel an event's commit notifies: the dispatcher wakes at once instead of polling. */
export const EVENTS_CHANNEL = 'backup_service_events';

export interface NewEvent {
  tenantId: string;
  type: EventType;
  clusterId: string | null;
  /** The resource as the API shows it at the change: `{backup}`, `{restore}`, `{cluster}` (or `{webhook}`). */
  data: Record<string, unknown>;
  occurredAt: Date;
}

/**
 * Writes an event into the outbox inside `tx`, the transaction of the change it records: both
 * commit or neither does. The NOTIFY is transactional too: it is sent at commit, never for a
 * change that rolled back. Returns the event's id.
 */
export async function recordEvent(tx: Pick<Tx, '$executeRaw'>, e: NewEvent): Promise<string> {
  const id = randomUUID();
  await tx.$executeRaw`
    WITH ins AS (
      INSERT INTO events (id, tenant_id, type, occurred_at, cluster_id, data)
      VALUES (${id}::uuid, ${e.tenantId}::uuid, ${e.type}, ${e.occurredAt}, ${e.clusterId}::uuid, ${JSON.stringify(e.data)}::jsonb)
      RETURNING id
    )
    SELECT pg_notify(${EVENTS_CHANNEL}, ${e.tenantId}) FROM ins`;
  return id;
}
