import { randomUUID } from 'node:crypto';
import type { Db, Tx } from '../../db/client.js';
import { iso } from '../../http/schemas.js';
import { recordEvent } from '../events/outbox.js';
import { presentWebhook } from './webhooks.service.js';
import type { SendResult } from './sender.js';

/**
 * The delivery rows (webhook_deliveries, webhook_attempts) and the webhook's failure state, in SQL.
 * The delivery row is the record: it says whether and when the next attempt is due; BullMQ only
 * carries one job per attempt (`deliver-<delivery id>-<attempt>`).
 */

export interface CreatedDelivery {
  id: string;
  tenantId: string;
}

/**
 * Fan-out: for up to `limit` events not yet dispatched (oldest first), one pending delivery per
 * enabled webhook of the event's tenant subscribed to its type, and the events marked
 * dispatched, in one statement. Safe on any number of processes at once: the events are locked
 * with SKIP LOCKED (another process takes the next ones), a row that another process dispatched
 * meanwhile is re-checked under its lock and skipped, and the unique (webhook, event) key stops a
 * second delivery whatever happens. Returns the deliveries created and how many events it took.
 */
export async function fanOut(db: Db, limit: number, now: Date): Promise<{ deliveries: CreatedDelivery[]; events: number }> {
  const rows = await db.$queryRaw<{ kind: 'd' | 'e'; id: string; tenant_id: string | null }[]>`
    WITH ev AS (
      SELECT id, tenant_id, type FROM events
      WHERE dispatched_at IS NULL
      ORDER BY seq
      LIMIT ${limit}
      FOR UPDATE SKIP LOCKED
    ), ins AS (
      INSERT INTO webhook_deliveries (id, tenant_id, webhook_id, event_id, next_attempt_at, created_at)
      SELECT gen_random_uuid(), ev.tenant_id, w.id, ev.id, ${now}, ${now}
      FROM ev JOIN webhooks w ON w.tenant_id = ev.tenant_id AND w.enabled AND (ev.type = ANY (w.events) OR '*' = ANY (w.events))
      ON CONFLICT (webhook_id, event_id) DO NOTHING
      RETURNING id, tenant_id
    ), upd AS (
      UPDATE events e SET dispatched_at = ${now} FROM ev WHERE e.id = ev.id RETURNING e.id
    )
    SELECT 'd' AS kind, id::text, tenant_id::text FROM ins
    UNION ALL
    SELECT 'e', id::text, NULL FROM upd`;
  const deliveries = rows.filter((r) => r.kind === 'd').map((r) => ({ id: r.id, tenantId: r.tenant_id! }));
  return { deliveries, events: rows.length - deliveries.length };
}

export interface DeliveryRow {
  id: string;
  tenantId: string;
  status: 'pending' | 'delivered' | 'failed';
  attempts: number;
  nextAttemptAt: Date;
  firstAttemptAt: Date | null;
  webhookId: string;
  url: string;
  secretEnc: string;
  enabled: boolean;
  event: { id: string; type: string; occurred_at: Date; cluster_id: string | null; data: unknown };
}

type Joined = {
  id: string;
  status: DeliveryRow['status'];
  attempts: number;
  next_attempt_at: Date;
  first_attempt_at: Date | null;
  webhook_id: string;
  url: string;
  secret_enc: string;
  enabled: boolean;
  event_id: string;
  type: string;
  occurred_at: Date;
  cluster_id: string | null;
  data: unknown;
};

const toRow = (tenantId: string, r: Joined): DeliveryRow => ({
  id: r.id,
  tenantId,
  status: r.status,
  attempts: r.attempts,
  nextAttemptAt: r.next_attempt_at,
  firstAttemptAt: r.first_attempt_at,
  webhookId: r.webhook_id,
  url: r.url,
  secretEnc: r.secret_enc,
  enabled: r.enabled,
  event: { id: r.event_id, type: r.type, occurred_at: r.occurred_at, cluster_id: r.cluster_id, data: r.data },
});

/** One delivery with its webhook and event, in its tenant (null: gone, e.g. its webhook was deleted). */
export async function loadDelivery(db: Db, tenantId: string, id: string): Promise<DeliveryRow | null> {
  const [r] = await db.$queryRaw<Joined[]>`
    SELECT d.id::text, d.status, d.attempts, d.next_attempt_at,
           (SELECT min(a.started_at) FROM webhook_attempts a WHERE a.delivery_id = d.id) AS first_attempt_at,
           w.id::text AS webhook_id, w.url, w.secret_enc, w.enabled,
           e.id::text AS event_id, e.type, e.occurred_at, e.cluster_id::text AS cluster_id, e.data
    FROM webhook_deliveries d
    JOIN webhooks w ON w.id = d.webhook_id
    JOIN events e ON e.id = d.event_id
    WHERE d.id = ${id}::uuid AND d.tenant_id = ${tenantId}::uuid`;
  return r ? toRow(tenantId, r) : null;
}

/**
 * The common case in one statement: takes attempt `attempt` of a pending, due delivery of an
 * enabled webhook whose previous attempt was `attempt - 1` (as claimAttempt) and answers the
 * delivery with its webhook and event as they stand after the claim; null when any of that does
 * not hold (the caller then loads the row to see why).
 */
export async function claimDue(db: Db, d: { tenantId: string; id: string; attempt: number }, now: Date, leaseUntil: Date): Promise<DeliveryRow | null> {
  const [r] = await db.$queryRaw<Joined[]>`
    UPDATE webhook_deliveries d SET attempts = d.attempts + 1, last_attempt_at = ${now}, next_attempt_at = ${leaseUntil}
    FROM webhooks w, events e
    WHERE d.id = ${d.id}::uuid AND d.tenant_id = ${d.tenantId}::uuid AND d.status = 'pending' AND d.attempts = ${d.attempt - 1} AND d.next_attempt_at <= ${now}
      AND w.id = d.webhook_id AND w.enabled AND e.id = d.event_id
    RETURNING d.id::text, d.status, d.attempts, d.next_attempt_at,
           (SELECT min(a.started_at) FROM webhook_attempts a WHERE a.delivery_id = d.id) AS first_attempt_at,
           w.id::text AS webhook_id, w.url, w.secret_enc, w.enabled,
           e.id::text AS event_id, e.type, e.occurred_at, e.cluster_id::text AS cluster_id, e.data`;
  return r ? toRow(d.tenantId, r) : null;
}

/** The delivery's body: the event as GET /v1/events shows it. */
export function eventBody(e: DeliveryRow['event']): string {
  return JSON.stringify({ id: e.id, type: e.type, occurred_at: iso(e.occurred_at), cluster_id: e.cluster_id, data: e.data });
}

/**
 * Takes attempt `attempt` of a pending, due delivery whose previous attempt was `attempt - 1`:
 * true for exactly one caller. `next_attempt_at` becomes `leaseUntil`, so a worker that dies
 * mid-attempt leaves a delivery the reconciler finds due again once the lease has passed.
 */
export async function claimAttempt(db: Db, d: { tenantId: string; id: string; attempt: number }, now: Date, leaseUntil: Date): Promise<boolean> {
  const n = await db.$executeRaw`
    UPDATE webhook_deliveries SET attempts = attempts + 1, last_attempt_at = ${now}, next_attempt_at = ${leaseUntil}
    WHERE id = ${d.id}::uuid AND tenant_id = ${d.tenantId}::uuid AND status = 'pending' AND attempts = ${d.attempt - 1} AND next_attempt_at <= ${now}`;
  return n === 1;
}

/** Ends a pending delivery as failed without an attempt (its webhook was disabled). */
export async function failPending(db: Db, tenantId: string, id: string): Promise<void> {
  await db.$executeRaw`UPDATE webhook_deliveries SET status = 'failed' WHERE id = ${id}::uuid AND tenant_id = ${tenantId}::uuid AND status = 'pending'`;
}

export interface AttemptRecord {
  tenantId: string;
  deliveryId: string;
  webhookId: string;
  eventId: string;
  attempt: number;
  startedAt: Date;
  result: SendResult;
  /** After a failed attempt: when to try again, or null to give up (the window has passed). */
  retryAt: Date | null;
  now: Date;
  disableAfterMs: number;
}

export interface AttemptOutcome {
  /** The delivery's state after this attempt ('pending': another attempt at retryAt). */
  status: 'pending' | 'delivered' | 'failed';
  /** This attempt disabled its webhook (it had failed for WEBHOOK_DISABLE_AFTER_MS). */
  disabled: boolean;
}

const DISABLED_REASON = (ms: number) =>
  `every delivery attempt failed for ${ms >= 3_600_000 ? `${Math.round(ms / 3_600_000)} h` : `${Math.round(ms / 1000)} s`} (WEBHOOK_DISABLE_AFTER_MS)`;

/**
 * Records an attempt and its consequences in one transaction: the attempt row; the delivery
 * delivered, rescheduled or failed (only if this attempt is still its latest: a late finisher
 * after its lease expired leaves the newer attempt's state alone); the webhook's run of failures
 * (failing_since) reset by a success, or started or extended by a failure, and, when that run has
 * lasted WEBHOOK_DISABLE_AFTER_MS, the webhook disabled with its webhook.disabled event, its audit
 * entry and its pending deliveries failed.
 */
export async function recordAttempt(db: Db, a: AttemptRecord): Promise<AttemptOutcome> {
  const r = a.result;
  const attemptId = randomUUID();
  const error = r.error === null ? null : r.error.slice(0, 1000);
  if (r.outcome === 'delivered') {
    // The common case, one statement (atomic on its own): the attempt, the delivery, the webhook's run of failures ended.
    await db.$executeRaw`
      WITH attempt AS (
        INSERT INTO webhook_attempts (id, tenant_id, webhook_id, delivery_id, event_id, attempt, started_at, duration_ms, status_code, outcome, error)
        VALUES (${attemptId}::uuid, ${a.tenantId}::uuid, ${a.webhookId}::uuid, ${a.deliveryId}::uuid, ${a.eventId}::uuid, ${a.attempt}, ${a.startedAt},
                ${r.durationMs}, ${r.statusCode}, 'delivered', NULL)
      ), delivery AS (
        UPDATE webhook_deliveries SET status = 'delivered', delivered_at = ${a.now}
        WHERE id = ${a.deliveryId}::uuid AND status = 'pending' AND attempts = ${a.attempt}
      )
      UPDATE webhooks SET failing_since = NULL WHERE id = ${a.webhookId}::uuid AND failing_since IS NOT NULL`;
    return { status: 'delivered', disabled: false };
  }
  return db.$transaction(async (tx) => {
    await tx.$executeRaw`
      INSERT INTO webhook_attempts (id, tenant_id, webhook_id, delivery_id, event_id, attempt, started_at, duration_ms, status_code, outcome, error)
      VALUES (${attemptId}::uuid, ${a.tenantId}::uuid, ${a.webhookId}::uuid, ${a.deliveryId}::uuid, ${a.eventId}::uuid, ${a.attempt}, ${a.startedAt},
              ${r.durationMs}, ${r.statusCode}, 'failed', ${error})`;
    const latest = { id: a.deliveryId, attempt: a.attempt };
    const status = a.retryAt ? 'pending' : 'failed';
    const moved = a.retryAt
      ? await tx.$executeRaw`
        UPDATE webhook_deliveries SET next_attempt_at = ${a.retryAt}
        WHERE id = ${latest.id}::uuid AND status = 'pending' AND attempts = ${latest.attempt}`
      : await tx.$executeRaw`
        UPDATE webhook_deliveries SET status = 'failed'
        WHERE id = ${latest.id}::uuid AND status = 'pending' AND attempts = ${latest.attempt}`;
    // A stale attempt (a newer one exists, or the delivery is already settled) is history only:
    // it must not start a run of failures after a newer success, which would move a healthy
    // webhook towards being disabled.
    if (moved === 0) return { status, disabled: false };
    const [hook] = await tx.$queryRaw<{ failing_since: Date; enabled: boolean }[]>`
      UPDATE webhooks SET failing_since = COALESCE(failing_since, ${a.startedAt})
      WHERE id = ${a.webhookId}::uuid RETURNING failing_since, enabled`;
    if (!hook?.enabled || a.now.getTime() - hook.failing_since.getTime() < a.disableAfterMs) return { status, disabled: false };
    const disabled = await disableWebhook(tx, { tenantId: a.tenantId, webhookId: a.webhookId, deliveryId: a.deliveryId, now: a.now, reason: DISABLED_REASON(a.disableAfterMs) });
    return { status: disabled ? 'failed' : status, disabled };
  });
}

/**
 * Turns a failing webhook off (if still on): its pending deliveries end failed, a
 * webhook.disabled event is recorded and an audit entry written, all in `tx`. The audit entry's
 * actor is `platform` (the service itself decided; no key acted) and it reads like the request
 * an admin would have made to the same effect (PATCH /v1/webhooks/{id}); its request id names the
 * delivery whose failure tipped it over.
 */
async function disableWebhook(tx: Tx, d: { tenantId: string; webhookId: string; deliveryId: string; now: Date; reason: string }): Promise<boolean> {
  const turnedOff = await tx.$executeRaw`
    UPDATE webhooks SET enabled = false, disabled_at = ${d.now}, disabled_reason = ${d.reason}, updated_at = ${d.now}
    WHERE id = ${d.webhookId}::uuid AND tenant_id = ${d.tenantId}::uuid AND enabled`;
  if (turnedOff === 0) return false;
  const w = await tx.webhook.findUniqueOrThrow({ where: { id: d.webhookId } });
  await tx.$executeRaw`UPDATE webhook_deliveries SET status = 'failed' WHERE webhook_id = ${d.webhookId}::uuid AND status = 'pending'`;
  await recordEvent(tx, { tenantId: d.tenantId, type: 'webhook.disabled', clusterId: null, data: { webhook: presentWebhook(w) }, occurredAt: d.now });
  await tx.$executeRaw`
    INSERT INTO audit_events (id, tenant_id, key_id, actor, action, target_type, target_id, outcome, status_code, method, path, request_id, created_at)
    VALUES (${randomUUID()}::uuid, ${d.tenantId}::uuid, NULL, 'platform', 'webhook.disable', 'webhook', ${d.webhookId}, 'success', 200,
            'PATCH', ${`/v1/webhooks/${d.webhookId}`}, ${`webhook-delivery-${d.deliveryId}`}, ${d.now})`;
  return true;
}

/** Pending deliveries due before `before` (their job may be lost), oldest first. */
export async function duePending(db: Db, before: Date, limit: number): Promise<{ id: string; tenantId: string; attempts: number }[]> {
  return db.$queryRaw`
    SELECT id::text, tenant_id::text AS "tenantId", attempts FROM webhook_deliveries
    WHERE status = 'pending' AND next_attempt_at < ${before}
    ORDER BY next_attempt_at LIMIT ${limit}`;
}

/** Pending deliveries of webhooks that are disabled end failed (a PATCH enabled=false, say). */
export async function failDisabledPending(db: Db): Promise<number> {
  return db.$executeRaw`
    UPDATE webhook_deliveries d SET status = 'failed'
    FROM webhooks w WHERE w.id = d.webhook_id AND d.status = 'pending' AND NOT w.enabled`;
}
