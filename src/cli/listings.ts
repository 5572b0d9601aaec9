import { allClusters, allPages, printJson, resolveCluster, type Ctx } from './context.js';
import { EXIT, type ExitCode } from './exit.js';
import { humanTime, table } from './format.js';
import { ok } from './http.js';

export async function listClusters(ctx: Ctx): Promise<ExitCode> {
  const items = await allClusters(ctx);
  if (ctx.json) printJson(ctx, { items, next_cursor: null });
  else
    ctx.out(
      table(
        ['ID', 'NAME', 'ENVIRONMENT', 'STATUS', 'COMPONENTS', 'NEXT BACKUP'],
        items.map((c) => [c.id, c.name, c.environment, c.status, c.components.map((x) => `${x.name}(${x.type})`).join(','), humanTime(c.next_backup_at)]),
      ),
    );
  return EXIT.ok;
}

export async function showRetention(ctx: Ctx, clusterArg: string): Promise<ExitCode> {
  const cluster = await resolveCluster(ctx, clusterArg);
  const { data } = await ok(ctx.client.GET('/v1/clusters/{id}/retention', { params: { path: { id: cluster.id } } }), `retention of cluster ${cluster.label}`);
  if (ctx.json) printJson(ctx, data);
  else {
    ctx.out(`cluster ${cluster.label}, policy ${data.policy_id}`);
    ctx.out(
      table(
        ['BACKUP', 'TRIGGER', 'STATUS', 'CREATED', 'KEEP', 'WHY'],
        data.items.map((i) => [i.backup_id, i.trigger, i.status, humanTime(i.created_at), i.keep ? 'keep' : 'drop', i.reasons.join(', ')]),
      ),
    );
  }
  return EXIT.ok;
}

export async function listPolicies(ctx: Ctx): Promise<ExitCode> {
  const items = await allPages(async (cursor) => (await ok(ctx.client.GET('/v1/policies', { params: { query: { limit: 100, ...(cursor && { cursor }) } } }), 'GET /v1/policies')).data);
  if (ctx.json) printJson(ctx, { items, next_cursor: null });
  else
    ctx.out(
      table(
        ['ID', 'NAME', 'DEFAULT', 'SCHEDULE', 'MAX', 'MANUAL', 'MANUAL RATE', 'TIMEZONE'],
        items.map((p) => [
          p.id,
          p.name,
          p.is_default ? 'yes' : '',
          p.schedule.map((s) => `${s.interval}x${s.count}`).join(' ') || 'manual only',
          p.max_backups,
          p.manual_count,
          p.manual_rate_limit ?? 'none',
          p.timezone,
        ]),
      ),
    );
  return EXIT.ok;
}
