import { createHash } from 'node:crypto';
import type { Db, Tx } from '../../db/client.js';
import { Invalid } from '../../errors.js';

export const IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000;

export interface StoredAnswer {
  status: number;
  body: unknown;
  location: string | null;
}

export function requestHash(scope: string, body: unknown): string {
  return createHash('sha256').update(JSON.stringify([scope, body ?? null])).digest('hex');
}

/**
 * The first successful answer given for a key; a key reused with another request is 422
 * (draft-ietf-httpapi-idempotency-key). Only successes are stored: a request refused for a
 * transient reason (busy, rate limited) may be retried with the same key.
 */
export async function findAnswer(tx: Tx | Db, tenantId: string, key: string, hash: string, now: Date): Promise<StoredAnswer | null> {
  const rec = await tx.idempotencyRecord.findUnique({ where: { tenantId_key: { tenantId, key } } });
  if (!rec) return null;
  if (rec.createdAt.getTime() < now.getTime() - IDEMPOTENCY_TTL_MS) {
    // Expired: the key is free again (the reconciler also removes expired records in bulk).
    await tx.idempotencyRecord.deleteMany({ where: { tenantId, key, createdAt: rec.createdAt } });
    return null;
  }
  if (rec.requestHash !== hash)
    throw new Invalid('Idempotency-Key was already used with a different request', [
      { path: 'headers.idempotency-key', message: 'reused with a different request; use a new key' },
    ]);
  return { status: rec.responseStatus, body: rec.responseBody, location: rec.location };
}

export async function saveAnswer(tx: Tx, tenantId: string, key: string, hash: string, answer: StoredAnswer, now: Date): Promise<void> {
  const data = { requestHash: hash, responseStatus: answer.status, responseBody: answer.body as object, location: answer.location, createdAt: now };
  await tx.idempotencyRecord.upsert({ where: { tenantId_key: { tenantId, key } }, create: { tenantId, key, ...data }, update: data });
}
