import type { Logger } from 'pino';
import type { Db } from '../../db/client.js';
import { recordEvent } from '../events/outbox.js';
import { withArtifacts } from '../events/resources.js';
import { presentBackup } from '../backups/backups.present.js';
import { presentRestore } from '../restores/restores.service.js';
import type { SendResult } from '../webhooks/sender.js';
import { hooksOf, MAX_TIMEOUT_S, type HookCaller, type HookName, type HookTarget } from './hooks.js';

/**
 * The pause of a consistent backup or of a restore (SPEC section 11): the pre hook must answer
 * 2xx before anything is read or written; the post hook is then owed, and it is called once the
 * job no longer needs the pause (every component at its consistent point, or the job's end,
 * whatever it is). What is owed is recorded in PostgreSQL (`hook_state`) before the pre hook is
 * even called:
 *
 *   null -> pausing (pre hook called) -> paused (it answered 2xx) -> resuming (the post hook
 *   claimed) -> resumed (called)
 *
 * A pre hook that fails puts the state back to null: nothing is owed. Whoever calls the post hook
 * first claims it (a conditional update to `resuming`), the job's worker or the reconciler, so two
 * of them never both call it; a worker lost in the pause leaves the claim to the reconciler
 * (`resumeOrphans`), within the lease bound, and a claim older than the longest hook timeout
 * plus a margin (its caller died mid-call) is taken over. So the post hook may come twice only
 * when its caller died during the call, and then under the same `webhook-id`; and once when the
 * worker died while the pre hook was being called, whether or not the pre hook got through: the
 * safe side, since resuming writers that were not paused is harmless.
 */
export type JobKind = 'backup' | 'restore';

const HOOKS: Record<JobKind, { pre: HookName; post: HookName }> = {
  backup: { pre: 'pre_backup', post: 'post_backup' },
  restore: { pre: 'pre_restore', post: 'post_restore' },
};

/** A claim of a post hook older than this belongs to a caller that died (calls last at most MAX_TIMEOUT_S). */
export const CLAIM_STALE_MS = (MAX_TIMEOUT_S + 60) * 1000;
/**
 * A pause still `pausing` (its pre hook was being called) is taken over only once that call is
 * certainly over: its timeout_s from the pause's start, plus this margin. Earlier, a pre hook
 * still in flight (a worker that lost its lease, not its process) could pause the writers after
 * the post hook had been sent, and nothing would resume them.
 */
export const PRE_CALL_MARGIN_MS = 2000;

export interface PauseDeps {
  db: Db;
  hooks: HookCaller;
  now: () => Date;
  log: Pick<Logger, 'info' | 'warn'>;
}

export interface Pause {
  /** Ends the pause: the post hook, once (later calls return the first one's promise). */
  resume(): Promise<void>;
  /** Pre hook answered -> post hook called, once resumed. */
  pausedMs(): number | null;
}

export type PauseStart = { ok: true; pause: Pause | null } | { ok: false; component: string; message: string };

type HookState = 'pausing' | 'paused' | 'resuming' | 'resumed' | null;

const describe = (r: SendResult) => r.error ?? `answered ${r.statusCode}`;

const bodyOf = (kind: JobKind, id: string, live: boolean) => (kind === 'backup' ? { backup_id: id, live } : { restore_id: id, live });

/** Records `hook.failed` for a job (its own small transaction: a hook's failure is no change of the job's state by itself). */
async function hookFailed(deps: PauseDeps, o: { tenantId: string; clusterId: string; kind: JobKind; jobId: string; hook: HookName; result: SendResult }) {
  await deps.db
    .$transaction(async (tx) => {
      // the job as the API shows it at the failure, and what the hook did
      const job =
        o.kind === 'backup'
          ? presentBackup(await tx.backup.findUniqueOrThrow({ where: { id: o.jobId }, include: withArtifacts }))
          : presentRestore(await tx.restore.findUniqueOrThrow({ where: { id: o.jobId } }));
      return recordEvent(tx, {
        tenantId: o.tenantId,
        type: 'hook.failed',
        clusterId: o.clusterId,
        occurredAt: deps.now(),
        data: { [o.kind]: job, hook: { name: o.hook, status_code: o.result.statusCode, duration_ms: o.result.durationMs, error: describe(o.result) } },
      });
    })
    .catch((err: unknown) => deps.log.warn({ err, job_id: o.jobId, hook: o.hook }, 'could not record hook.failed'));
}

/** Moves a job's hook state from one of `from` (and, when given, the claim seen) to `data`'s; false when another caller moved it first. */
async function moveState(
  db: Db,
  kind: JobKind,
  id: string,
  from: { states: HookState[]; claimedAt?: Date | null },
  data: { hookState: HookState; hookClaimedAt?: Date | null; pausedMs?: number | null },
): Promise<boolean> {
  const where = { id, hookState: { in: from.states.filter((x) => x !== null) }, ...(from.claimedAt !== undefined && { hookClaimedAt: from.claimedAt }) };
  const { pausedMs, ...common } = data;
  const r =
    kind === 'backup'
      ? await db.backup.updateMany({ where, data: { ...common, ...(pausedMs !== undefined && { pausedMs }) } })
      : await db.restore.updateMany({ where, data: common });
  return r.count > 0;
}

/** The post hook of a claimed pause (state `resuming`): called once, then recorded whatever the answer (not retried: hook.failed says it failed). */
async function callPost(deps: PauseDeps, o: { kind: JobKind; tenantId: string; cluster: HookTarget; jobId: string; live: boolean; pause: string; pausedMs?: number }) {
  const { post } = HOOKS[o.kind];
  const result = await deps.hooks.call(o.cluster, post, bodyOf(o.kind, o.jobId, o.live), o.pause);
  await moveState(deps.db, o.kind, o.jobId, { states: ['resuming'] }, { hookState: 'resumed', ...(o.pausedMs !== undefined && { pausedMs: o.pausedMs }) });
  if (result && result.outcome !== 'delivered') await hookFailed(deps, { tenantId: o.tenantId, clusterId: o.cluster.id, kind: o.kind, jobId: o.jobId, hook: post, result });
  return result;
}

/**
 * Calls the pre hook of `kind` (if the cluster has one) and starts the pause. A pre hook that
 * fails (non-2xx, timeout, refused URL) fails the job, with `hook:<name>` as its component and
 * nothing read; no post hook is owed then.
 */
export async function beginPause(
  deps: PauseDeps,
  o: { kind: JobKind; tenantId: string; cluster: HookTarget; jobId: string; live: boolean },
): Promise<PauseStart> {
  const { pre, post } = HOOKS[o.kind];
  if (!hooksOf(o.cluster.hooks)[pre]) return { ok: true, pause: null };
  const startedAt = deps.now();
  const pauseId = String(startedAt.getTime());
  // Owed from here on, before the call: a worker killed while the pre hook answers still leaves
  // the post hook to the reconciler. Unconditional: an attempt handed back at shutdown resumed
  // its own pause; this is a new one.
  if (o.kind === 'backup') await deps.db.backup.updateMany({ where: { id: o.jobId }, data: { hookState: 'pausing', hookPausedAt: startedAt, hookClaimedAt: null, pausedMs: null } });
  else await deps.db.restore.updateMany({ where: { id: o.jobId }, data: { hookState: 'pausing', hookPausedAt: startedAt, hookClaimedAt: null } });
  const answer = await deps.hooks.call(o.cluster, pre, bodyOf(o.kind, o.jobId, o.live), pauseId);
  if (!answer || answer.outcome !== 'delivered') {
    await moveState(deps.db, o.kind, o.jobId, { states: ['pausing'] }, { hookState: null });
    if (answer) await hookFailed(deps, { tenantId: o.tenantId, clusterId: o.cluster.id, kind: o.kind, jobId: o.jobId, hook: pre, result: answer });
    const why = answer ? describe(answer) : 'the hook was removed';
    return { ok: false, component: `hook:${pre}`, message: `the ${pre} hook failed: ${why}; nothing was ${o.kind === 'backup' ? 'read' : 'restored'}` };
  }
  const pausedAt = performance.now();
  if (!(await moveState(deps.db, o.kind, o.jobId, { states: ['pausing'] }, { hookState: 'paused' }))) {
    // The reconciler took the pause over (this job's lease ran out while the pre hook answered)
    // and has called the post hook: there is no pause left to read in.
    return { ok: false, component: `hook:${pre}`, message: `the pause ended before the ${pre} hook's answer was recorded (this worker lost its lease); nothing was ${o.kind === 'backup' ? 'read' : 'restored'}` };
  }
  let resumed: Promise<void> | undefined;
  let ms: number | null = null;
  return {
    ok: true,
    pause: {
      pausedMs: () => ms,
      resume() {
        resumed ??= (async () => {
          ms = Math.round(performance.now() - pausedAt);
          // Claimed first: if the reconciler took this job's pause over (its lease ran out), it calls the hook, not us.
          if (!(await moveState(deps.db, o.kind, o.jobId, { states: ['pausing', 'paused'] }, { hookState: 'resuming', hookClaimedAt: deps.now(), pausedMs: ms }))) {
            deps.log.warn({ job_id: o.jobId, hook: post }, 'the post hook was already claimed by the reconciler');
            return;
          }
          const result = await callPost(deps, { ...o, pause: pauseId, pausedMs: ms });
          deps.log.info({ job_id: o.jobId, hook: post, paused_ms: ms, outcome: result?.outcome ?? 'no hook' }, 'pause ended');
        })().catch((err: unknown) => deps.log.warn({ err, job_id: o.jobId, hook: post }, 'could not end the pause; the reconciler will call the post hook'));
        return resumed;
      },
    },
  };
}

/**
 * The reconciler's part: jobs that ended while their post hook was owed (their worker was lost,
 * so the reaper failed them), and claims whose caller died mid-call. Each is claimed in its own
 * conditional update (two reconcilers never both get one); the calls run in the background, so
 * a hook that hangs for its timeout does not hold up the reconciler's pass. Returns how many were
 * claimed, and a promise of the calls' end (for tests and shutdown).
 */
export async function resumeOrphans(deps: PauseDeps, limit = 100): Promise<{ claimed: number; done: Promise<void> }> {
  const now = deps.now();
  const stale = new Date(now.getTime() - CLAIM_STALE_MS);
  const owed = {
    OR: [
      { hookState: { in: ['pausing', 'paused'] }, status: { notIn: ['running', 'queued'] as ('running' | 'queued')[] } },
      { hookState: 'resuming', hookClaimedAt: { lt: stale } },
    ],
  };
  const cluster = { select: { id: true, hooks: true, hooksSecretEnc: true } };
  const calls: Promise<unknown>[] = [];
  for (const kind of ['backup', 'restore'] as const) {
    const rows: { id: string; tenantId: string; live?: boolean; hookState: string | null; hookPausedAt: Date | null; hookClaimedAt: Date | null; cluster: HookTarget }[] =
      kind === 'backup'
        ? await deps.db.backup.findMany({ where: owed, select: { id: true, tenantId: true, live: true, hookState: true, hookPausedAt: true, hookClaimedAt: true, cluster }, take: limit })
        : await deps.db.restore.findMany({ where: owed, select: { id: true, tenantId: true, hookState: true, hookPausedAt: true, hookClaimedAt: true, cluster }, take: limit });
    for (const r of rows) {
      if (r.hookState === 'pausing') {
        const timeoutS = hooksOf(r.cluster.hooks)[HOOKS[kind].pre]?.timeout_s ?? MAX_TIMEOUT_S;
        if (!r.hookPausedAt || r.hookPausedAt.getTime() + timeoutS * 1000 + PRE_CALL_MARGIN_MS > now.getTime()) continue;
      }
      const claimed = await moveState(deps.db, kind, r.id, { states: [r.hookState as HookState], claimedAt: r.hookClaimedAt }, { hookState: 'resuming', hookClaimedAt: now });
      if (!claimed) continue;
      const { post } = HOOKS[kind];
      const o = { kind, tenantId: r.tenantId, cluster: r.cluster, jobId: r.id, live: r.live ?? false, pause: String(r.hookPausedAt?.getTime() ?? 0) };
      calls.push(
        callPost(deps, o).then(
          (result) => deps.log.warn({ job_id: r.id, hook: post, outcome: result?.outcome ?? 'no hook' }, 'post hook called for a job whose worker was lost in its pause'),
          (err: unknown) => deps.log.warn({ err, job_id: r.id, hook: post }, 'could not call the post hook of a job lost in its pause'),
        ),
      );
    }
  }
  return { claimed: calls.length, done: Promise.all(calls).then(() => {}) };
}
