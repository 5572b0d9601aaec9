import type { Runtime } from '../runtime.js';
import { jobId } from '../queue/jobs.js';
import { nextRunsAt } from '../scheduling/index.js';
import { asLeader } from '../db/leader.js';
import { reconcile } from '../modules/backups/reconciler.js';
import { sweepRetention } from '../modules/retention/retention.sweep.js';

export interface SchedulerOptions {
  batchSize?: number;
  tickMs?: number;
  sweepMs?: number;
  onSkip?: () => void;
}

interface DueRow {
  id: string;
  busy: boolean;
  timezone: string;
  schedule: string;
}

interface Claimed {
  backups: { id: string; tenantId: string; clusterId: string }[];
  claimed: number;
  skipped: number;
}

async function claimDue(rt: Runtime, batchSize: number): Promise<Claimed | null> {
  const now = rt.now();
  const nowIso = now.toISOString();
  // The common case, nothing due, costs one indexed probe and no transaction.
  const [probe] = await rt.db.$queryRaw<{ due: boolean }[]>`
    SELECT EXISTS (SELECT 1 FROM clusters WHERE next_backup_at <= ${nowIso}::timestamptz AND status <> 'deleting') AS due`;
  if (!probe?.due) return null;
  return rt.db.$transaction(async (tx) => {
    // Busy (the cluster's job slot is taken, or it is not active) is read from the locked row:
    // FOR UPDATE re-reads a row that a concurrent transaction changed (a manual backup taking
    // the slot), where a subquery would still see this statement's older snapshot.
    const due = await tx.$queryRaw<DueRow[]>`
      SELECT c.id::text, p.timezone, p.schedule::text AS schedule,
             (c.status <> 'active' OR c.active_job_id IS NOT NULL) AS busy
      FROM clusters c JOIN policies p ON p.id = c.policy_id
      WHERE c.next_backup_at <= ${nowIso}::timestamptz AND c.status <> 'deleting'
      ORDER BY c.next_backup_at
      LIMIT ${batchSize}
      FOR UPDATE OF c SKIP LOCKED`;
    if (due.length === 0) return null;
    const next = nextRunsFor(due, now);
    const backups = await rt.ledger.queueScheduledBackups(tx, due.map((d, i) => ({ clusterId: d.id, next: next[i]!, busy: d.busy })), now);
    return { backups, claimed: due.length, skipped: due.length - backups.length };
  });
}

async function enqueue(rt: Runtime, backups: Claimed['backups']): Promise<void> {
  if (backups.length === 0) return;
  await rt.queues.all.backups
    .addBulk(
      backups.map((b) => ({
        name: 'run-backup',
        data: { tenant_id: b.tenantId, backup_id: b.id },
        opts: { jobId: jobId('run-backup', b.id) },
      })),
    )
    .catch((err: unknown) => rt.log.warn({ err }, 'could not enqueue scheduled backups; the reconciler will'));
}

/** One batch: claim due clusters, commit, enqueue. */
export async function tick(rt: Runtime, opts: { batchSize: number; onSkip?: () => void }): Promise<{ created: number; skipped: number }> {
  const claimed = await claimDue(rt, opts.batchSize);
  if (!claimed) return { created: 0, skipped: 0 };
  for (let i = 0; i < claimed.skipped; i++) opts.onSkip?.();
  await enqueue(rt, claimed.backups);
  return { created: claimed.backups.length, skipped: claimed.skipped };
}

/**
 * Claims batches until nothing is due. Two claim loops run at once (SKIP LOCKED keeps them
 * apart), so one loop's Redis enqueue overlaps the other's PostgreSQL claim.
 */
export async function drain(rt: Runtime, opts: { batchSize: number; onSkip?: () => void; stopped?: () => boolean; loops?: number }): Promise<{ created: number; skipped: number }> {
  let created = 0;
  let skipped = 0;
  const loop = async () => {
    for (;;) {
      const claimed = await claimDue(rt, opts.batchSize);
      if (!claimed) return;
      for (let i = 0; i < claimed.skipped; i++) opts.onSkip?.();
      created += claimed.backups.length;
      skipped += claimed.skipped;
      await enqueue(rt, claimed.backups);
      if (claimed.claimed < opts.batchSize || opts.stopped?.()) return;
    }
  };
  await Promise.all(Array.from({ length: opts.loops ?? 2 }, loop));
  return { created, skipped };
}

/** Next slot of every claimed cluster, as ISO strings ('' for none); clusters sharing a policy share the bucket math. */
function nextRunsFor(due: DueRow[], now: Date): string[] {
  const groups = new Map<string, number[]>();
  due.forEach((d, i) => {
    const key = d.timezone + d.schedule;
    const g = groups.get(key);
    if (g) g.push(i);
    else groups.set(key, [i]);
  });
  const out = new Array<string>(due.length).fill('');
  for (const idx of groups.values()) {
    const first = due[idx[0]!]!;
    const schedule = JSON.parse(first.schedule) as { interval: string; count: number }[];
    const runs = nextRunsAt({ timezone: first.timezone, schedule }, idx.map((i) => due[i]!.id), now);
    idx.forEach((i, k) => (out[i] = runs[k]?.toISOString() ?? ''));
  }
  return out;
}

export function startSchedulerRole(rt: Runtime, opts: SchedulerOptions = {}): { close(): Promise<void> } {
  const batchSize = opts.batchSize ?? 1000;
  const tickMs = opts.tickMs ?? 1000;
  const sweepMs = opts.sweepMs ?? rt.config.reconcileIntervalMs;
  let stopped = false;
  const timers: { claim?: NodeJS.Timeout; sweeps?: NodeJS.Timeout } = {};
  let claiming: Promise<void> = Promise.resolve();
  let sweeping: Promise<void> = Promise.resolve();
  let lastReconcile = 0;
  // The retention sweep reads only dirty clusters, so it is cheap at start too, where it catches
  // prunes that a crash lost.
  let lastRetentionSweep = 0;

  // Every scheduler claims due slots (SKIP LOCKED keeps them apart).
  const claimLoop = async () => {
    try {
      await drain(rt, { batchSize, onSkip: opts.onSkip, stopped: () => stopped });
    } catch (err) {
      rt.log.warn({ err }, 'scheduler tick failed; retrying');
    }
    if (!stopped) timers.claim = setTimeout(() => (claiming = claimLoop()), tickMs);
  };
  // The periodic sweeps run on one scheduler at a time (an advisory lock each), in a loop of their
  // own so that a long sweep never delays a due slot. A scheduler that finds the lock taken skips
  // that period; if the leader dies, its lock goes with its connection and another takes over.
  const sweepLoop = async () => {
    try {
      if (Date.now() - lastReconcile >= sweepMs) {
        lastReconcile = Date.now();
        await asLeader(rt.db, 'reconcile', Math.max(sweepMs, 60_000), () => reconcile(rt));
      }
      if (!stopped && Date.now() - lastRetentionSweep >= rt.config.retentionSweepMs) {
        lastRetentionSweep = Date.now();
        await asLeader(rt.db, 'retentionSweep', Math.max(rt.config.retentionSweepMs, 60_000), () => sweepRetention(rt, { stopped: () => stopped }));
      }
    } catch (err) {
      rt.log.warn({ err }, 'scheduler sweep failed; retrying');
    }
    if (!stopped) timers.sweeps = setTimeout(() => (sweeping = sweepLoop()), tickMs);
  };
  claiming = claimLoop();
  sweeping = sweepLoop();
  return {
    async close() {
      stopped = true;
      clearTimeout(timers.claim);
      clearTimeout(timers.sweeps);
      await Promise.all([claiming, sweeping]);
    },
  };
}
