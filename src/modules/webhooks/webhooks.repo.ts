import { randomUUID } from 'node:crypto';
import type { Db } from '../../db/client.js';
import { afterCursor, decodeCursor, newestFirst } from '../../lib/cursor.js';

export interface WebhookChanges {
  url?: string;
  events?: string[];
  description?: string | null;
  enabled?: boolean;
  disabledAt?: Date | null;
  disabledReason?: string | null;
  failingSince?: Date | null;
}

/** Every method is scoped by tenant: another tenant's id finds nothing, exactly like a missing one. */
export function createWebhookRepo(db: Db) {
  return {
    /**
     * The new webhook, or null when the tenant already has `max`: counted under the tenant row's
     * lock, so concurrent creations cannot go past it.
     */
    async create(tenantId: string, input: { url: string; events: string[]; description: string | null; secretEnc: string; now: Date }, max: number) {
      return db.$transaction(async (tx) => {
        await tx.$queryRaw`SELECT 1 FROM tenants WHERE id = ${tenantId}::uuid FOR UPDATE`;
        if ((await tx.webhook.count({ where: { tenantId } })) >= max) return null;
        return tx.webhook.create({
          data: { id: randomUUID(), tenantId, url: input.url, events: input.events, description: input.description, secretEnc: input.secretEnc, createdAt: input.now, updatedAt: input.now },
        });
      });
    },
    async list(tenantId: string, q: { limit: number; cursor?: string | undefined }) {
      return db.webhook.findMany({ where: { tenantId, ...afterCursor(q.cursor) }, orderBy: newestFirst, take: q.limit + 1 });
    },
    async find(tenantId: string, id: string) {
      return db.webhook.findFirst({ where: { id, tenantId } });
    },
    /** The updated row, or null when the tenant has no such webhook. */
    async update(tenantId: string, id: string, changes: WebhookChanges, now: Date) {
      const r = await db.webhook.updateMany({ where: { id, tenantId }, data: { ...changes, updatedAt: now } });
      return r.count > 0 ? db.webhook.findFirst({ where: { id, tenantId } }) : null;
    },
    /** Its deliveries and their attempts go with it (ON DELETE CASCADE). */
    async delete(tenantId: string, id: string) {
      return (await db.webhook.deleteMany({ where: { id, tenantId } })).count > 0;
    },
    /** Attempts newest first, keyset-paged on (started_at DESC, id DESC) (the index webhook_attempts_webhook_id_started_at_idx). */
    async listAttempts(tenantId: string, webhookId: string, q: { limit: number; cursor?: string | undefined }) {
      const c = q.cursor ? decodeCursor(q.cursor) : null;
      return db.webhookAttempt.findMany({
        where: {
          tenantId,
          webhookId,
          ...(c && { OR: [{ startedAt: { lt: c.createdAt } }, { startedAt: c.createdAt, id: { lt: c.id } }] }),
        },
        orderBy: [{ startedAt: 'desc' }, { id: 'desc' }],
        take: q.limit + 1,
        include: { delivery: { select: { status: true, event: { select: { type: true } } } } },
      });
    },
  };
}
export type WebhookRepo = ReturnType<typeof createWebhookRepo>;
export type WebhookRow = NonNullable<Awaited<ReturnType<WebhookRepo['create']>>>;
export type AttemptRow = Awaited<ReturnType<WebhookRepo['listAttempts']>>[number];
