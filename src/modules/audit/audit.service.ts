import { randomUUID } from 'node:crypto';
import type { Db } from '../../db/client.js';
import { iso } from '../../http/schemas.js';
import { afterCursor, newestFirst, page } from '../../lib/cursor.js';

export interface AuditRecord {
  tenantId: string | null;
  keyId: string | null;
  actor: 'platform' | 'api_key' | 'api_client';
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
  actor: { type: e.actor as AuditRecord['actor'], key_id: e.keyId },
  target: { type: e.targetType, id: e.targetId },
  outcome: e.outcome as 'success' | 'failure',
  status_code: e.statusCode,
  request_id: e.requestId,
  method: e.method,
  path: e.path,
  created_at: iso(e.createdAt),
});

/** Events wait at most this long, or until this many are pending, before one INSERT writes them. */
const FLUSH_MS = 50;
const FLUSH_AT = 200;

/**
 * Audit events are written in batches: one multi-row INSERT (one commit, one WAL flush) per
 * 50 ms instead of one per request, off the request's path. `flush()` (called when the API
 * closes) writes what is pending; a crash loses at most the last 50 ms of events.
 */
export function createAuditService(deps: { db: Db; log?: { error(o: object, m: string): void } }) {
  const { db } = deps;
  type Batch = { records: AuditRecord[]; done: Promise<void>; resolve: () => void };
  const newBatch = (): Batch => {
    let resolve!: () => void;
    const done = new Promise<void>((r) => (resolve = r));
    return { records: [], done, resolve };
  };
  let pending = newBatch();
  let timer: NodeJS.Timeout | undefined;
  let writing: Promise<void> = Promise.resolve();

  async function write(batch: AuditRecord[]) {
    const col = <T>(f: (r: AuditRecord) => T) => batch.map(f);
    await db.$pool.query(
      `INSERT INTO audit_events (id, tenant_id, key_id, actor, action, target_type, target_id, outcome, status_code, method, path, request_id, created_at)
       SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::int[], $10::text[], $11::text[], $12::text[], $13::timestamptz[])`,
      [
        col(() => randomUUID()),
        col((r) => r.tenantId),
        col((r) => r.keyId),
        col((r) => r.actor),
        col((r) => r.action),
        col((r) => r.targetType),
        col((r) => r.targetId),
        col((r) => (r.statusCode < 400 ? 'success' : 'failure')),
        col((r) => r.statusCode),
        col((r) => r.method),
        col((r) => r.path),
        col((r) => r.requestId),
        col((r) => r.at),
      ],
    );
  }

  function flush(): Promise<void> {
    clearTimeout(timer);
    timer = undefined;
    if (pending.records.length === 0) return writing;
    const batch = pending;
    pending = newBatch();
    writing = writing
      .then(() => write(batch.records))
      .catch(async () => write(batch.records)) // one retry (a dropped connection)
      .catch((err: unknown) => deps.log?.error({ err, events: batch.records.length }, 'could not record audit events'))
      .finally(batch.resolve);
    return writing;
  }

  return {
    /** Queues one event; resolves once its batch is written (or given up on, logged). */
    record(r: AuditRecord): Promise<void> {
      const batch = pending;
      batch.records.push(r);
      if (batch.records.length >= FLUSH_AT) void flush();
      else timer ??= setTimeout(() => void flush(), FLUSH_MS);
      return batch.done;
    },
    flush,
    async list(tenantId: string, q: { action?: string | undefined; target_id?: string | undefined; limit: number; cursor?: string | undefined }) {
      await flush(); // this instance's own recent events are visible at once
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
