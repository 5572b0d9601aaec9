import { z } from 'zod';
import { listQuery, timestamp, uuid } from '../../http/schemas.js';
import { EVENT_TYPES } from '../events/outbox.js';

/** Longer URLs are refused outright: no receiver needs one, and each is stored and checked again at every delivery. */
export const MAX_URL_LENGTH = 2048;

// The type of each entry is checked here (so the document lists the types), with a message that
// names the unknown one; duplicates are the service's (eventProblems), so that one 422 lists each.
const eventType = z.enum(EVENT_TYPES, { error: (iss) => `unknown event type ${JSON.stringify(iss.input)?.slice(0, 100)} (known: ${EVENT_TYPES.join(', ')})` });
const events = z.array(eventType).min(1, { error: 'must list at least one event type' }).max(EVENT_TYPES.length * 2).describe('the event types to deliver: at least one, each once');
const url = z
  .string()
  .max(MAX_URL_LENGTH)
  .describe('where to POST the events: https (http only where WEBHOOK_ALLOW_HTTP=true), a host that resolves to public addresses only (or one WEBHOOK_ALLOWED_HOSTS lists), no credentials');
const description = z.string().trim().max(500);

export const createWebhookBody = z
  .object({ url, events, description: description.nullable().optional() })
  .strict();

export const patchWebhookBody = z
  .object({
    url: url.optional().describe('checked again like at creation'),
    events: events.optional(),
    description: description.nullable().optional(),
    enabled: z
      .boolean()
      .optional()
      .describe('false stops deliveries; true re-enables a webhook (one disabled after failing for too long, too), clearing disabled_at and disabled_reason'),
  })
  .strict();

export const webhookSchema = z
  .object({
    id: z.uuid(),
    url: z.string(),
    events: z.array(eventType),
    description: z.string().nullable(),
    enabled: z.boolean(),
    disabled_at: timestamp.nullable().describe('when it was disabled (by an admin, or after failing for too long); null while enabled'),
    disabled_reason: z.string().nullable(),
    created_at: timestamp,
    updated_at: timestamp,
  })
  .meta({ id: 'Webhook' });

export const createdWebhookSchema = webhookSchema
  .extend({
    secret: z
      .string()
      .describe('the signing secret, shown once: `whsec_` and base64 of 32 random bytes (Standard Webhooks); the key of the HMAC is the base64-decoded part after `whsec_`'),
  })
  .meta({ id: 'CreatedWebhook' });

export const deliveryAttemptSchema = z
  .object({
    id: z.uuid(),
    delivery_id: z.uuid().describe('the delivery (one per webhook and event) this attempt belongs to'),
    event_id: z.uuid().describe('the event delivered: the webhook-id header'),
    event_type: z.string(),
    attempt: z.number().int().describe('1 for the first attempt of the delivery, 2 for its first retry, ...'),
    started_at: timestamp,
    duration_ms: z.number().int(),
    status_code: z.number().int().nullable().describe("the receiver's HTTP status; null when none came (refused by the SSRF guard, connection error, timeout)"),
    outcome: z.enum(['delivered', 'failed']),
    error: z.string().nullable().describe('why it failed; null when delivered'),
    delivery_status: z.enum(['pending', 'delivered', 'failed']).describe('where the delivery stands now: pending (a retry is due), delivered, failed (given up)'),
  })
  .meta({ id: 'WebhookDeliveryAttempt' });

export const deliveriesQuery = listQuery;

export const testResultSchema = z
  .object({
    event_id: uuid.describe('the id of the synthetic `webhook.test` event sent (its webhook-id header)'),
    outcome: z.enum(['delivered', 'failed']),
    status_code: z.number().int().nullable(),
    duration_ms: z.number().int(),
    error: z.string().nullable(),
  })
  .meta({ id: 'WebhookTestResult' });

export type CreateWebhookInput = z.output<typeof createWebhookBody>;
export type PatchWebhookInput = z.output<typeof patchWebhookBody>;
