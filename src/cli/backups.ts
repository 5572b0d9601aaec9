import type { paths } from '../client/index.js';
import { printJson, resolveBackup, resolveCluster, short, type Backup, type ClusterRef, type Ctx } from './context.js';
import { CliError, EXIT, type ExitCode } from './exit.js';
import { fields, humanBytes, humanSeconds, humanTime, table } from './format.js';
import { ApiError, apiError, ok, sleep } from './http.js';
import { waitUntil } from './progress.js';

export interface WaitFlags {
  wait?: boolean;
  /** --timeout in ms (implies --wait). */
  timeout?: number;
}

/** --wait, or --timeout (which implies it). */
export const waits = (f: WaitFlags) => f.wait === true || f.timeout !== undefined;
/** Epoch ms at which --timeout ends the wait, or null. */
export const deadlineOf = (f: WaitFlags, startedAt: number) => (f.timeout === undefined ? null : startedAt + f.timeout);

export function showBackup(ctx: Ctx, b: Backup, cluster: ClusterRef): void {
  if (ctx.json) return printJson(ctx, b);
  const v = b.verification;
  ctx.out(
    fields([
      ['backup', b.id],
      ['cluster', cluster.label === b.cluster_id ? b.cluster_id : `${cluster.label} (${b.cluster_id})`],
      ['status', b.status],
      ['trigger', `${b.trigger}${b.live ? ', live' : ', consistent'}`],
      ['created', humanTime(b.created_at)],
      ['started', humanTime(b.started_at)],
      ['completed', humanTime(b.completed_at)],
      ['size', humanBytes(b.size_bytes)],
      ['stored', humanBytes(b.stored_bytes)],
      ['components', b.components.map((c) => `${c.name} ${c.status}`).join(', ') || '-'],
      ...(b.error ? ([['error', `${b.error.component ? `${b.error.component}: ` : ''}${b.error.message}`]] as [string, string][]) : []),
      ...(v ? ([['verification', `${v.status}${v.checked_at ? ` at ${humanTime(v.checked_at)}` : ''}${v.message ? `: ${v.message}` : ''}`]] as [string, string][]) : []),
    ]),
  );
}

const ended = (b: Backup) => b.status === 'completed' || b.status === 'failed' || b.status === 'deleting';

async function getBackup(ctx: Ctx, cluster: ClusterRef, id: string): Promise<Backup> {
  return (await ok(ctx.client.GET('/v1/clusters/{id}/backups/{backup_id}', { params: { path: { id: cluster.id, backup_id: id } } }), `backup ${id}`)).data;
}

/** Waits for the backup to end, then shows it; exit 1 when it failed. */
async function waitForBackup(ctx: Ctx, cluster: ClusterRef, id: string, flags: WaitFlags, startedAt: number): Promise<ExitCode> {
  const final = await waitUntil({
    label: `backup ${short(id)}`,
    get: () => getBackup(ctx, cluster, id),
    observe: (b) => ({ status: b.status, bytesDone: b.progress.bytes_done, bytesTotal: b.progress.bytes_total }),
    done: ended,
    deadline: deadlineOf(flags, startedAt),
    onTimeout: (b) =>
      `--timeout passed: backup ${id} is still ${b.status}; it goes on in the service (see it with: backupctl backup get ${cluster.label} ${id} --wait)`,
    write: ctx.note,
  });
  showBackup(ctx, final, cluster);
  if (final.status === 'failed') {
    if (!ctx.json) ctx.note(`backup ${id} failed${final.error ? `: ${final.error.message}` : ''}`);
    return EXIT.failed;
  }
  return EXIT.ok;
}

type CreateBody = NonNullable<paths['/v1/clusters/{id}/backups']['post']['requestBody']>['content']['application/json'];

export interface CreateFlags extends WaitFlags {
  live?: boolean;
  consistent?: boolean;
  retryAfterLimit?: boolean;
}

/**
 * POST .../backups with this invocation's Idempotency-Key (its own retries, and the one retry
 * after a 429 with --retry-after-limit, replay rather than create). `--live`/`--consistent`
 * send `live`; without either the service decides (SPEC section 11).
 */
export async function createBackup(ctx: Ctx, clusterArg: string, flags: CreateFlags): Promise<ExitCode> {
  const startedAt = Date.now();
  const cluster = await resolveCluster(ctx, clusterArg);
  const body = (flags.live ? { live: true } : flags.consistent ? { live: false } : {}) as CreateBody;
  const post = () =>
    ok(
      ctx.client.POST('/v1/clusters/{id}/backups', {
        params: { path: { id: cluster.id }, header: { 'idempotency-key': ctx.idempotencyKey } },
        body,
      }),
      `backup of cluster ${cluster.label}`,
    );
  let answer: Awaited<ReturnType<typeof post>>;
  try {
    answer = await post();
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 429 && flags.retryAfterLimit && err.retryAfter !== null)) throw err;
    const deadline = deadlineOf(flags, startedAt);
    if (deadline !== null && Date.now() + err.retryAfter * 1000 > deadline)
      throw new CliError(EXIT.refused, `${err.message}; not waiting: that is past --timeout`);
    ctx.note(`${err.message}; waiting ${humanSeconds(err.retryAfter)} (--retry-after-limit), then trying once more`);
    await sleep(err.retryAfter * 1000 + 250);
    answer = await post(); // a second refusal is final (exit 4)
  }
  const backup = answer.data;
  const replayed = answer.response.headers.get('idempotent-replayed') === 'true';
  if (!waits(flags)) {
    if (ctx.json) printJson(ctx, backup);
    else ctx.out(`backup ${backup.id} of cluster ${cluster.label} is ${backup.status}${replayed ? ' (the answer to an earlier request with this Idempotency-Key)' : ''}`);
    return EXIT.ok;
  }
  return waitForBackup(ctx, cluster, backup.id, flags, startedAt);
}

export async function getBackupCommand(ctx: Ctx, clusterArg: string, backupArg: string, flags: WaitFlags): Promise<ExitCode> {
  const startedAt = Date.now();
  const cluster = await resolveCluster(ctx, clusterArg);
  const id = await resolveBackup(ctx, cluster, backupArg);
  if (waits(flags)) return waitForBackup(ctx, cluster, id, flags, startedAt);
  showBackup(ctx, await getBackup(ctx, cluster, id), cluster);
  return EXIT.ok;
}

export async function deleteBackup(ctx: Ctx, clusterArg: string, backupArg: string, flags: WaitFlags): Promise<ExitCode> {
  const startedAt = Date.now();
  const cluster = await resolveCluster(ctx, clusterArg);
  const id = await resolveBackup(ctx, cluster, backupArg);
  const { data } = await ok(ctx.client.DELETE('/v1/clusters/{id}/backups/{backup_id}', { params: { path: { id: cluster.id, backup_id: id } } }), `delete of backup ${id}`);
  if (!waits(flags)) {
    if (ctx.json) printJson(ctx, data);
    else ctx.out(`backup ${id} is ${data.status}`);
    return EXIT.ok;
  }
  // Deleted means gone: the record goes once its artifacts have.
  await waitUntil({
    label: `delete ${short(id)}`,
    get: async () => {
      const r = await ctx.client.GET('/v1/clusters/{id}/backups/{backup_id}', { params: { path: { id: cluster.id, backup_id: id } } });
      if (r.response.status === 404) return null;
      if (!r.response.ok) throw apiError(r.response, r.error, `backup ${id}`);
      return r.data ?? null;
    },
    observe: (b) => ({ status: b?.status ?? 'deleted' }),
    done: (b) => b === null,
    deadline: deadlineOf(flags, startedAt),
    onTimeout: (b) => `--timeout passed: backup ${id} is still ${b?.status ?? 'deleting'}; the deletion goes on in the service`,
    write: ctx.note,
  });
  // --json: the API's answer to the DELETE (status deleting); exit 0 says it is gone since.
  if (ctx.json) printJson(ctx, data);
  else ctx.out(`backup ${id} deleted`);
  return EXIT.ok;
}

export async function verifyBackup(ctx: Ctx, clusterArg: string, backupArg: string, flags: WaitFlags): Promise<ExitCode> {
  const startedAt = Date.now();
  const cluster = await resolveCluster(ctx, clusterArg);
  const id = await resolveBackup(ctx, cluster, backupArg);
  const { data } = await ok(
    ctx.client.POST('/v1/clusters/{id}/backups/{backup_id}/verify', { params: { path: { id: cluster.id, backup_id: id } }, headers: { 'idempotency-key': ctx.idempotencyKey } }),
    `verification of backup ${id}`,
  );
  if (!waits(flags)) {
    showBackup(ctx, data, cluster);
    return EXIT.ok;
  }
  const final = await waitUntil({
    label: `verify ${short(id)}`,
    get: () => getBackup(ctx, cluster, id),
    observe: (b) => ({ status: b.verification?.status ?? 'queued' }),
    done: (b) => b.verification?.status === 'passed' || b.verification?.status === 'failed',
    deadline: deadlineOf(flags, startedAt),
    onTimeout: (b) => `--timeout passed: the verification of backup ${id} is still ${b.verification?.status ?? 'queued'}; it goes on in the service`,
    write: ctx.note,
  });
  showBackup(ctx, final, cluster);
  if (final.verification?.status === 'failed') {
    if (!ctx.json) ctx.note(`verification of backup ${id} failed${final.verification.message ? `: ${final.verification.message}` : ''}`);
    return EXIT.failed;
  }
  return EXIT.ok;
}

export interface ListFlags {
  status?: Backup['status'];
  trigger?: Backup['trigger'];
  limit?: number;
}

export async function listBackups(ctx: Ctx, clusterArg: string, flags: ListFlags): Promise<ExitCode> {
  const cluster = await resolveCluster(ctx, clusterArg);
  const query = { limit: flags.limit ?? 20, ...(flags.status && { status: flags.status }), ...(flags.trigger && { trigger: flags.trigger }) };
  const { data } = await ok(ctx.client.GET('/v1/clusters/{id}/backups', { params: { path: { id: cluster.id }, query } }), `backups of cluster ${cluster.label}`);
  if (ctx.json) printJson(ctx, data);
  else
    ctx.out(
      table(
        ['ID', 'STATUS', 'TRIGGER', 'CREATED', 'SIZE', 'STORED', 'ERROR'],
        data.items.map((b) => [b.id, b.status, b.trigger, humanTime(b.created_at), humanBytes(b.size_bytes), humanBytes(b.stored_bytes), b.error?.message ?? '']),
      ),
    );
  return EXIT.ok;
}
