import { randomBytes, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Db } from '../../db/client.js';
import type { SecretBox } from '../../crypto/secrets.js';
import type { Queues } from '../../queue/queues.js';
import type { Config } from '../../config.js';
import type { UrlGuard } from '../../net/url-guard.js';
import { Conflict, Invalid, NotFound, type FieldProblem } from '../../errors.js';
import { iso } from '../../http/schemas.js';
import { encodeCursor, page } from '../../lib/cursor.js';
import type { EventType } from '../events/outbox.js';
import type { WebhookSender } from './sender.js';
import { createWebhookRepo, type AttemptRow, type WebhookChanges, type WebhookRow } from './webhooks.repo.js';
import type { CreateWebhookInput, PatchWebhookInput } from './webhooks.schemas.js';

export interface WebhookServiceDeps {
  db: Db;
  box: SecretBox;
  urlGuard: UrlGuard;
  /** For POST /v1/webhooks/{id}/test: one attempt, answered with its result. */
  sender: WebhookSender;
  queues: Pick<Queues, 'add'>;
  settings: Config['webhooks'];
  now: () => Date;
  log: Logger;
}

/** Why a webhook an admin turned off is off (a failing one says why it failed instead). */
export const DISABLED_BY_ADMIN = 'disabled through the API';

/**
 * A Standard Webhooks signing secret: `whsec_` and base64 of 32 random bytes. It must be read
 * back to sign, so it is stored encrypted (ENCRYPTION_KEY), not hashed, and shown once.
 */
export function generateWebhookSecret(): string {
  return `whsec_${randomBytes(32).toString('base64')}`;
}

export function presentWebhook(w: WebhookRow) {
  return {
    id: w.id,
    url: w.url,
    events: w.events as EventType[],
    description: w.description,
    enabled: w.enabled,
    disabled_at: iso(w.disabledAt),
    disabled_reason: w.disabledReason,
    created_at: iso(w.createdAt),
    updated_at: iso(w.updatedAt),
  };
}

function presentAttempt(a: AttemptRow) {
  return {
    id: a.id,
    delivery_id: a.deliveryId,
    event_id: a.eventId,
    event_type: a.delivery.event.type,
    attempt: a.attempt,
    started_at: iso(a.startedAt),
    duration_ms: a.durationMs,
    status_code: a.statusCode,
    outcome: a.outcome as 'delivered' | 'failed',
    error: a.error,
    delivery_status: a.delivery.status as 'pending' | 'delivered' | 'failed',
  };
}

/** Non-empty, each type once (zod has already refused unknown types, naming them). */
function eventProblems(events: string[]): FieldProblem[] {
  if (events.length === 0) return [{ path: 'body.events', message: 'must list at least one event type' }];
  const seen = new Set<string>();
  const problems: FieldProblem[] = [];
  for (const [i, type] of events.entries()) {
    if (seen.has(type)) problems.push({ path: `body.events.${i}`, message: `duplicate event type "${type}"` });
    seen.add(type);
  }
  return problems;
}

/** Webhooks per tenant: each event is delivered to every one of them. */
export const MAX_WEBHOOKS = 50;

export function createWebhookService(deps: WebhookServiceDeps) {
  const { box, urlGuard, sender, now, log } = deps;
  const repo = createWebhookRepo(deps.db);

  /** The SSRF guard's verdict on a URL, as a field problem (a name that does not resolve is refused too). */
  async function urlProblems(url: string): Promise<FieldProblem[]> {
    const verdict = await urlGuard.check(url);
    return verdict.ok ? [] : [{ path: 'body.url', message: verdict.problem }];
  }

  async function found(tenantId: string, id: string) {
    const row = await repo.find(tenantId, id);
    if (!row) throw new NotFound('webhook');
    return row;
  }

  return {
    async create(tenantId: string, input: CreateWebhookInput) {
      const errors = [...(await urlProblems(input.url)), ...eventProblems(input.events)];
      if (errors.length) throw new Invalid('invalid webhook', errors);
      const secret = generateWebhookSecret();
      const row = await repo.create(tenantId, { url: input.url, events: input.events, description: input.description ?? null, secretEnc: box.encrypt(secret), now: now() }, MAX_WEBHOOKS);
      if (!row) throw new Conflict(`a tenant has at most ${MAX_WEBHOOKS} webhooks; delete one first (one webhook can subscribe to several event types)`);
      return { ...presentWebhook(row), secret };
    },
    async list(tenantId: string, q: { limit: number; cursor?: string | undefined }) {
      const { items, nextCursor } = page(await repo.list(tenantId, q), q.limit);
      return { items: items.map(presentWebhook), next_cursor: nextCursor };
    },
    async get(tenantId: string, id: string) {
      return presentWebhook(await found(tenantId, id));
    },
    async update(tenantId: string, id: string, patch: PatchWebhookInput) {
      const current = await found(tenantId, id);
      const errors = [...(patch.url !== undefined ? await urlProblems(patch.url) : []), ...(patch.events !== undefined ? eventProblems(patch.events) : [])];
      if (errors.length) throw new Invalid('invalid webhook', errors);
      const at = now();
      const changes: WebhookChanges = {
        ...(patch.url !== undefined && { url: patch.url }),
        ...(patch.events !== undefined && { events: patch.events }),
        ...(patch.description !== undefined && { description: patch.description }),
      };
      // Re-enabling starts afresh: a webhook disabled after failing for days gets its full window again.
      if (patch.enabled === true && !current.enabled) Object.assign(changes, { enabled: true, disabledAt: null, disabledReason: null, failingSince: null });
      if (patch.enabled === false && current.enabled) Object.assign(changes, { enabled: false, disabledAt: at, disabledReason: DISABLED_BY_ADMIN });
      const row = await repo.update(tenantId, id, changes, at);
      if (!row) throw new NotFound('webhook'); // deleted meanwhile
      return presentWebhook(row);
    },
    async delete(tenantId: string, id: string) {
      if (!(await repo.delete(tenantId, id))) throw new NotFound('webhook');
    },
    /**
     * One signed attempt of a synthetic `webhook.test` event, answered with its result; nothing is
     * recorded or retried (it is no event of the tenant's). A disabled webhook can be tested too,
     * to check a receiver before enabling it again.
     */
    async test(tenantId: string, id: string) {
      const row = await found(tenantId, id);
      const at = now();
      const event = { id: randomUUID(), type: 'webhook.test', occurred_at: iso(at), cluster_id: null, data: { webhook: presentWebhook(row) } };
      const result = await sender.send({ url: row.url, secret: box.decrypt(row.secretEnc) }, { id: event.id, timestamp: at, body: JSON.stringify(event) });
      log.info({ tenantId, webhookId: id, eventId: event.id, outcome: result.outcome, statusCode: result.statusCode, durationMs: result.durationMs }, 'webhook test sent');
      return { event_id: event.id, outcome: result.outcome, status_code: result.statusCode, duration_ms: result.durationMs, error: result.error };
    },
    async deliveries(tenantId: string, id: string, q: { limit: number; cursor?: string | undefined }) {
      await found(tenantId, id);
      const rows = await repo.listAttempts(tenantId, id, q);
      const items = rows.slice(0, q.limit);
      const last = items[items.length - 1];
      return { items: items.map(presentAttempt), next_cursor: rows.length > q.limit && last ? encodeCursor({ createdAt: last.startedAt, id: last.id }) : null };
    },
  };
}
export type WebhookService = ReturnType<typeof createWebhookService>;
