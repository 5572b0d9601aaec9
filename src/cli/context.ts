import { randomUUID } from 'node:crypto';
import type { Schemas } from '../client/index.js';
import type { Api } from './http.js';
import { ok } from './http.js';
import { CliError, EXIT } from './exit.js';

export type Cluster = Schemas['Cluster'];
export type Backup = Schemas['Backup'];
export type Restore = Schemas['Restore'];

/** What a command runs with: the API, where its output goes, and this invocation's key. */
export interface Ctx extends Api {
  json: boolean;
  /** One per invocation: every POST of this run (its retries included) carries it. */
  idempotencyKey: string;
  out(text: string): void;
}

export function makeCtx(api: Api, json: boolean, out: (text: string) => void, key?: string): Ctx {
  return { ...api, json, idempotencyKey: key ?? randomUUID(), out };
}

/** The API's JSON as it came, for --json. */
export function printJson(ctx: Ctx, value: unknown): void {
  ctx.out(JSON.stringify(value, null, 2));
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Every item of a cursor-paginated listing: `page` fetches one page from a cursor (undefined: the first). */
export async function allPages<T>(page: (cursor: string | undefined) => Promise<{ items: T[]; next_cursor: string | null }>): Promise<T[]> {
  const items: T[] = [];
  let cursor: string | undefined;
  do {
    const data = await page(cursor);
    items.push(...data.items);
    cursor = data.next_cursor ?? undefined;
  } while (cursor);
  return items;
}

/** Every cluster of the tenant (all pages). */
export async function allClusters(ctx: Ctx): Promise<Cluster[]> {
  return allPages(async (cursor) => (await ok(ctx.client.GET('/v1/clusters', { params: { query: { limit: 100, ...(cursor && { cursor }) } } }), 'GET /v1/clusters')).data);
}

export interface ClusterRef {
  id: string;
  /** The name when it was given or looked up; else the id. */
  label: string;
}

/**
 * CLUSTER is an id or a name. An id is used as it is (the API answers 404 for one that does not
 * exist, exit 7); a name is looked up in the clusters list (names are unique per tenant).
 */
export async function resolveCluster(ctx: Ctx, ref: string): Promise<ClusterRef> {
  if (UUID_RE.test(ref)) return { id: ref.toLowerCase(), label: ref };
  const found = (await allClusters(ctx)).find((c) => c.name === ref);
  if (!found) throw new CliError(EXIT.notFound, `no cluster named ${JSON.stringify(ref)} (backupctl clusters list shows them)`);
  return { id: found.id, label: ref };
}

/**
 * BACKUP is an id, or `latest`: the newest completed backup of the cluster (what a restore from
 * cron usually means).
 */
export async function resolveBackup(ctx: Ctx, cluster: ClusterRef, ref: string): Promise<string> {
  if (ref !== 'latest') {
    if (!UUID_RE.test(ref)) throw new CliError(EXIT.usage, `BACKUP must be a backup id or "latest", got ${JSON.stringify(ref)}`);
    return ref.toLowerCase();
  }
  const { data } = await ok(
    ctx.client.GET('/v1/clusters/{id}/backups', { params: { path: { id: cluster.id }, query: { status: 'completed', limit: 1 } } }),
    `GET /v1/clusters/${cluster.id}/backups`,
  );
  const newest = data.items[0];
  if (!newest) throw new CliError(EXIT.notFound, `cluster ${cluster.label} has no completed backup`);
  return newest.id;
}

export const short = (id: string) => id.slice(0, 8);
