import { z } from 'zod';
import { timestamp, uuid } from '../../http/schemas.js';
import { EVENT_TYPES } from './outbox.js';

const eventType = z.enum(EVENT_TYPES, { error: (iss) => `unknown event type ${JSON.stringify(iss.input)?.slice(0, 100)} (known: ${EVENT_TYPES.join(', ')})` });

export const listEventsQuery = z.object({
  type: eventType.optional().describe('only events of this type'),
  cluster_id: uuid.optional().describe("only events of this cluster (a deleted cluster's too); another tenant's id gives an empty page"),
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().max(512).optional(),
});

// Loose on purpose: `data` is the resource as the API showed it when the event occurred, kept
// as it was; an old event must still list after the resource's schema grows a field.
const resource = (what: string) => z.record(z.string(), z.unknown()).optional().describe(what);

export const eventSchema = z
  .object({
    id: z.uuid().describe('unique; the `webhook-id` header of its deliveries (receivers deduplicate on it)'),
    type: eventType,
    occurred_at: timestamp.describe("when the change happened (for a start or an end, the resource's started_at or completed_at)"),
    cluster_id: z.uuid().nullable().describe('the cluster concerned (the target cluster of a restore); null for events of no cluster (webhook.disabled)'),
    data: z
      .looseObject({
        backup: resource('backup.*, verification.failed: the backup as `GET /v1/clusters/{id}/backups/{backup_id}` showed it right after the change (schema Backup); for backup.deleted, as last shown (`deleting`)'),
        restore: resource('restore.*: the restore as `GET /v1/clusters/{id}/restores/{restore_id}` showed it right after the change (schema Restore)'),
        cluster: resource('cluster.deleted: the cluster as `GET /v1/clusters/{id}` last showed it (`deleting`) (schema Cluster)'),
        webhook: resource('webhook.disabled: the webhook as `GET /v1/webhooks/{id}` showed it (schema Webhook)'),
        hook: resource('hook.failed: which hook failed and how: `{name, status_code, duration_ms, error}` (with the backup or restore it was called for)'),
        stream: resource("archiver.behind, archiver.stopped: a continuous component's WAL stream `{id, cluster_id, component, state, error, lag_bytes, latest_restorable_time, stored_lsn}` (docs/pitr.md)"),
      })
      .describe('the resource concerned, under its kind: one of backup, restore, cluster, webhook, hook, stream'),
  })
  .meta({ id: 'Event', description: 'a change of state of a backup, restore or cluster, recorded in the transaction of the change (SPEC section 10)' });
export type EventView = z.infer<typeof eventSchema>;
