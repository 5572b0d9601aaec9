import { randomUUID } from 'node:crypto';
import type { Runtime } from '../runtime.js';
import { jobId } from '../queue/jobs.js';
import { nextRunAt } from '../scheduling/index.js';
import { reconcile } from '../modules/backups/reconciler.js';

export interface SchedulerOptions {
  batchSize?: number;
  tickMs?: number;
  sweepMs?: number;
  onSkip?: () => void;
}

interface DueRow {
  id: string;
  tenant_id: string;
  status: string;
  components: { name: string }[];
  timezone: string;
  schedule: { interval: string; count: number }[];
}

/**
 * Claims due clusters (FOR UPDATE SKIP LOCKED, so any number of schedulers can run) and, in the
 * same transaction, creates each scheduled backup and moves next_backup_at to the first slot
 * after *now*: a scheduler that was down runs one catch-up backup, not one per missed slot.
 * Busy clusters skip the slot (recorded in last_skipped_at). Jobs are enqueued after commit.
 */
export async function tick(rt: Runtime, opts: { batchSize: number; onSkip?: () => void }): Promise<{ created: number; skipped: number }> {
  const now = rt.now();
  const nowIso = now.toISOString();
  const claimed = await rt.db.$transaction(async (tx) => {
    const due = await tx.$queryRaw<DueRow[]>`
      SELECT c.id::text, c.tenant_id::text, c.status::text, c.components, p.timezone, p.schedule
      FROM clusters c JOIN policies p ON p.id = c.policy_id
      WHERE c.next_backup_at <= ${nowIso}::timestamptz AND c.status <> 'deleting'
      ORDER BY c.next_backup_at
      LIMIT ${opts.batchSize}
      FOR UPDATE OF c SKIP LOCKED`;
    if (due.length === 0) return null;
    const ids = due.map((d) => d.id);
    const busyRows = await tx.$queryRaw<{ cluster_id: string }[]>`
      SELECT cluster_id::text FROM backups WHERE cluster_id = ANY(${ids}::uuid[]) AND status IN ('queued', 'running')
      UNION SELECT cluster_id::text FROM restores WHERE cluster_id = ANY(${ids}::uuid[]) AND status IN ('queued', 'running')`;
    const busy = new Set(busyRows.map((r) => r.cluster_id));
    const backups: { id: string; tenantId: string; clusterId: string; components: { name: string; status: string }[] }[] = [];
    const next: string[] = [];
    const skipped: boolean[] = [];
    for (const d of due) {
      const isBusy = busy.has(d.id) || d.status !== 'active';
      next.push(nextRunAt({ timezone: d.timezone, schedule: d.schedule }, d.id, now)?.toISOString() ?? '');
      skipped.push(isBusy);
      if (!isBusy) backups.push({ id: randomUUID(), tenantId: d.tenant_id, clusterId: d.id, components: d.components.map((c) => ({ name: c.name, status: 'queued' })) });
    }
    if (backups.length) {
      await tx.backup.createMany({
        data: backups.map((b) => ({ ...b, trigger: 'scheduled' as const, status: 'queued' as const, createdAt: now })),
      });
    }
    await tx.$executeRaw`
      UPDATE clusters c
      SET next_backup_at = NULLIF(v.next, '')::timestamptz,
          last_skipped_at = CASE WHEN v.skipped THEN ${nowIso}::timestamptz ELSE c.last_skipped_at END
      FROM unnest(${ids}::uuid[], ${next}::text[], ${skipped}::boolean[]) AS v(id, next, skipped)
      WHERE c.id = v.id`;
    return { backups, skipped: skipped.filter(Boolean).length };
  });
  if (!claimed) return { created: 0, skipped: 0 };
  for (let i = 0; i < claimed.skipped; i++) opts.onSkip?.();
  if (claimed.backups.length) {
    await rt.queues.all.backups
      .addBulk(
        claimed.backups.map((b) => ({
          name: 'run-backup',
          data: { tenant_id: b.tenantId, backup_id: b.id },
          opts: { jobId: jobId('run-backup', b.id) },
        })),
      )
      .catch((err: unknown) => rt.log.warn({ err }, 'could not enqueue scheduled backups; the reconciler will'));
  }
  return { created: claimed.backups.length, skipped: claimed.skipped };
}

export function startSchedulerRole(rt: Runtime, opts: SchedulerOptions = {}): { close(): Promise<void> } {
  const batchSize = opts.batchSize ?? 1000;
  const tickMs = opts.tickMs ?? 1000;
  const sweepMs = opts.sweepMs ?? 30_000;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  let lastSweep = 0;

  const loop = async () => {
    try {
      // Drain: keep claiming while full batches come back.
      for (;;) {
        const r = await tick(rt, { batchSize, onSkip: opts.onSkip });
        if (stopped || r.created + r.skipped < batchSize) break;
      }
      if (Date.now() - lastSweep >= sweepMs) {
        lastSweep = Date.now();
        await reconcile(rt);
      }
    } catch (err) {
      rt.log.warn({ err }, 'scheduler tick failed; retrying');
    }
    if (!stopped) timer = setTimeout(() => (running = loop()), tickMs);
  };
  running = loop();
  return {
    async close() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
