import type { Logger } from 'pino';
import type { Db } from '../../db/client.js';
import { recordEvent } from '../events/outbox.js';
import { withArtifacts } from '../events/resources.js';
import { presentBackup } from '../backups/backups.present.js';
import { presentRestore } from '../restores/restores.service.js';
import type { SendResult } from '../webhooks/sender.js';
import { hooksOf, type HookCaller, type HookName, type HookTarget } from './hooks.js';

/**
 * The pause of a consistent backup or of a restore (SPEC section 11): the pre hook must answer
 * 2xx before anything is read or written; from its answer on, the post hook is owed, and it is
 * called once the job no longer needs the pause (every component at its consistent point, or
 * the job's end, whatever it is). What is owed is recorded in PostgreSQL (`hook_state`), so a
 * worker that dies in the pause leaves the call to the reconciler (`resumeOrphans`), within the
 * lease bound. A post hook may then be called twice (the worker called it but died before
 * recording it): both calls carry the same `webhook-id`, as webhook retries do.
 */
export type JobKind = 'backup' | 'restore';

const HOOKS: Record<JobKind, { pre: HookName; post: HookName }> = {
  backup: { pre: 'pre_backup', post: 'post_backup' },
  restore: { pre: 'pre_restore', post: 'post_restore' },
};

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

const describe = (r: SendResult) => r.error ?? `answered ${r.statusCode}`;

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

async function setState(db: Db, kind: JobKind, id: string, data: { hookState: 'resumed'; pausedMs?: number | null }, from: 'paused') {
  const where = { id, hookState: from };
  const r = kind === 'backup' ? await db.backup.updateMany({ where, data }) : await db.restore.updateMany({ where, data: { hookState: data.hookState } });
  return r.count > 0;
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
  const body = o.kind === 'backup' ? { backup_id: o.jobId, live: o.live } : { restore_id: o.jobId, live: o.live };
  const answer = await deps.hooks.call(o.cluster, pre, body);
  if (answer === null) return { ok: true, pause: null };
  if (answer.outcome !== 'delivered') {
    await hookFailed(deps, { tenantId: o.tenantId, clusterId: o.cluster.id, kind: o.kind, jobId: o.jobId, hook: pre, result: answer });
    return { ok: false, component: `hook:${pre}`, message: `the ${pre} hook failed: ${describe(answer)}; nothing was ${o.kind === 'backup' ? 'read' : 'restored'}` };
  }
  const pausedAt = performance.now();
  // unconditional: an attempt handed back at shutdown resumed its own pause; this is a new one
  if (o.kind === 'backup') await deps.db.backup.updateMany({ where: { id: o.jobId }, data: { hookState: 'paused', pausedMs: null } });
  else await deps.db.restore.updateMany({ where: { id: o.jobId }, data: { hookState: 'paused' } });
  let resumed: Promise<void> | undefined;
  let ms: number | null = null;
  return {
    ok: true,
    pause: {
      pausedMs: () => ms,
      resume() {
        resumed ??= (async () => {
          ms = Math.round(performance.now() - pausedAt);
          const result = await deps.hooks.call(o.cluster, post, body);
          await setState(deps.db, o.kind, o.jobId, { hookState: 'resumed', pausedMs: ms }, 'paused');
          if (result && result.outcome !== 'delivered') await hookFailed(deps, { tenantId: o.tenantId, clusterId: o.cluster.id, kind: o.kind, jobId: o.jobId, hook: post, result });
          deps.log.info({ job_id: o.jobId, hook: post, paused_ms: ms, outcome: result?.outcome ?? 'no hook' }, 'pause ended');
        })();
        return resumed;
      },
    },
  };
}

/**
 * The reconciler's part: jobs that ended while paused (their worker was lost, so the reaper
 * failed them) get their post hook now. Returns how many were resumed.
 */
export async function resumeOrphans(deps: PauseDeps, limit = 100): Promise<number> {
  let n = 0;
  for (const kind of ['backup', 'restore'] as const) {
    const rows =
      kind === 'backup'
        ? await deps.db.backup.findMany({ where: { hookState: 'paused', status: { notIn: ['running', 'queued'] } }, select: { id: true, tenantId: true, live: true, cluster: { select: { id: true, hooks: true, hooksSecretEnc: true } } }, take: limit })
        : await deps.db.restore.findMany({ where: { hookState: 'paused', status: { notIn: ['running', 'queued'] } }, select: { id: true, tenantId: true, cluster: { select: { id: true, hooks: true, hooksSecretEnc: true } } }, take: limit });
    // In parallel: one hook that hangs (up to its timeout_s) does not hold up the others.
    await Promise.all(rows.map(async (r) => {
      const { post } = HOOKS[kind];
      const live = 'live' in r ? (r.live as boolean) : false;
      const body = kind === 'backup' ? { backup_id: r.id, live } : { restore_id: r.id, live };
      const result = hooksOf(r.cluster.hooks)[post] ? await deps.hooks.call(r.cluster, post, body) : null;
      // Recorded whatever the answer: the hook is called once, not retried (hook.failed says it failed).
      if (!(await setState(deps.db, kind, r.id, { hookState: 'resumed' }, 'paused'))) return;
      n++;
      if (result && result.outcome !== 'delivered') await hookFailed(deps, { tenantId: r.tenantId, clusterId: r.cluster.id, kind, jobId: r.id, hook: post, result });
      deps.log.warn({ job_id: r.id, hook: post, outcome: result?.outcome ?? 'no hook' }, 'post hook called for a job whose worker was lost in its pause');
    }));
  }
  return n;
}
