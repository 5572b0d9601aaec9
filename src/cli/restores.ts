import { printJson, resolveBackup, resolveCluster, short, type ClusterRef, type Ctx, type Restore } from './context.js';
import { EXIT, type ExitCode } from './exit.js';
import { fields, humanTime, table } from './format.js';
import { ok } from './http.js';
import { waitUntil } from './progress.js';
import { deadlineOf, waits, type WaitFlags } from './backups.js';

function showRestore(ctx: Ctx, r: Restore): void {
  if (ctx.json) return printJson(ctx, r);
  ctx.out(
    fields([
      ['restore', r.id],
      ['backup', r.backup_id],
      ['from cluster', r.source_cluster_id],
      ['into cluster', r.cluster_id],
      ['status', r.status],
      ['components', r.components.join(', ')],
      ['paths', r.paths ? r.paths.join(', ') : 'whole components'],
      ['created', humanTime(r.created_at)],
      ['completed', humanTime(r.completed_at)],
      ...(r.error ? ([['error', `${r.error.component ? `${r.error.component}: ` : ''}${r.error.message}`]] as [string, string][]) : []),
    ]),
  );
}

export interface RestoreFlags extends WaitFlags {
  targetCluster?: string;
  components?: string[];
  paths?: string[];
}

export async function restoreCommand(ctx: Ctx, clusterArg: string, backupArg: string, flags: RestoreFlags): Promise<ExitCode> {
  const startedAt = Date.now();
  const cluster = await resolveCluster(ctx, clusterArg);
  const backupId = await resolveBackup(ctx, cluster, backupArg);
  const target: ClusterRef | null = flags.targetCluster ? await resolveCluster(ctx, flags.targetCluster) : null;
  const body = {
    ...(target && { target_cluster_id: target.id }),
    ...(flags.components && { components: flags.components }),
    ...(flags.paths && { paths: flags.paths }),
  };
  const { data } = await ok(
    ctx.client.POST('/v1/clusters/{id}/backups/{backup_id}/restore', {
      params: { path: { id: cluster.id, backup_id: backupId } },
      // The service does not deduplicate restores by key; sent so that a proxy log ties the retries together.
      headers: { 'idempotency-key': ctx.idempotencyKey },
      body,
    }),
    `restore of backup ${backupId}`,
  );
  if (!waits(flags)) {
    if (ctx.json) printJson(ctx, data);
    else ctx.out(`restore ${data.id} of backup ${backupId} into cluster ${target?.label ?? cluster.label} is ${data.status}`);
    return EXIT.ok;
  }
  const final = await waitUntil({
    label: `restore ${short(data.id)}`,
    get: async () =>
      (await ok(ctx.client.GET('/v1/clusters/{id}/restores/{restore_id}', { params: { path: { id: cluster.id, restore_id: data.id } } }), `restore ${data.id}`)).data,
    observe: (r) => ({ status: r.status }),
    done: (r) => r.status === 'completed' || r.status === 'failed',
    deadline: deadlineOf(flags, startedAt),
    onTimeout: (r) => `--timeout passed: restore ${r.id} is still ${r.status}; it goes on in the service (backupctl restores list ${cluster.label})`,
    write: ctx.note,
  });
  showRestore(ctx, final);
  if (final.status === 'failed') {
    if (!ctx.json) ctx.note(`restore ${final.id} failed${final.error ? `: ${final.error.message}` : ''}`);
    return EXIT.failed;
  }
  return EXIT.ok;
}

export async function listRestores(ctx: Ctx, clusterArg: string, flags: { limit?: number }): Promise<ExitCode> {
  const cluster = await resolveCluster(ctx, clusterArg);
  const { data } = await ok(
    ctx.client.GET('/v1/clusters/{id}/restores', { params: { path: { id: cluster.id }, query: { limit: flags.limit ?? 20 } } }),
    `restores of cluster ${cluster.label}`,
  );
  if (ctx.json) printJson(ctx, data);
  else
    ctx.out(
      table(
        ['ID', 'STATUS', 'BACKUP', 'INTO CLUSTER', 'CREATED', 'ERROR'],
        data.items.map((r) => [r.id, r.status, r.backup_id, r.cluster_id, humanTime(r.created_at), r.error?.message ?? '']),
      ),
    );
  return EXIT.ok;
}
