import type { Db } from '../../db/client.js';
import type { UsageView } from './usage.schemas.js';

type Row = { cluster_id: string | null; name: string | null; logical: bigint | null; stored: bigint | null };

/**
 * Storage accounting of a tenant (SPEC section 8, Accounting), read in one statement: logical
 * bytes from its completed backups, stored bytes from the chunks of its live packs, each chunk
 * attributed to the cluster that first stored it. Chunks whose cluster is gone (deleted, but
 * still shared with other backups) count in the tenant's total only.
 */
export function createUsageService(deps: { db: Db }) {
  return {
    async get(tenantId: string): Promise<UsageView> {
      // One row per cluster of the tenant, plus one row (cluster_id NULL) holding the bytes
      // whose cluster no longer exists (chunks still shared by other clusters' backups).
      const rows = await deps.db.$queryRaw<Row[]>`
        WITH logical AS (
          SELECT b.cluster_id, sum(b.size_bytes)::bigint AS n
          FROM backups b WHERE b.tenant_id = ${tenantId}::uuid AND b.status = 'completed'
          GROUP BY b.cluster_id
        ), stored AS (
          SELECT c.cluster_id, sum(c.length)::bigint AS n
          FROM chunks c JOIN packs p ON p.id = c.pack_id AND p.tenant_id = c.tenant_id
          WHERE c.tenant_id = ${tenantId}::uuid AND p.status = 'live'
          GROUP BY c.cluster_id
        )
        SELECT cl.id::text AS cluster_id, cl.name, l.n AS logical, s.n AS stored
        FROM clusters cl
        LEFT JOIN logical l ON l.cluster_id = cl.id
        LEFT JOIN stored s ON s.cluster_id = cl.id
        WHERE cl.tenant_id = ${tenantId}::uuid
        UNION ALL
        SELECT NULL, NULL,
          (SELECT sum(l.n)::bigint FROM logical l WHERE NOT EXISTS (SELECT 1 FROM clusters cl WHERE cl.id = l.cluster_id AND cl.tenant_id = ${tenantId}::uuid)),
          (SELECT sum(s.n)::bigint FROM stored s
           WHERE s.cluster_id IS NULL OR NOT EXISTS (SELECT 1 FROM clusters cl WHERE cl.id = s.cluster_id AND cl.tenant_id = ${tenantId}::uuid))`;
      const num = (v: bigint | null) => Number(v ?? 0n);
      const clusters = rows
        .filter((r): r is Row & { cluster_id: string; name: string } => r.cluster_id !== null)
        .map((r) => ({ cluster_id: r.cluster_id, name: r.name, logical_bytes: num(r.logical), stored_bytes: num(r.stored) }))
        .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.cluster_id < b.cluster_id ? -1 : 1));
      return {
        logical_bytes: rows.reduce((n, r) => n + num(r.logical), 0),
        stored_bytes: rows.reduce((n, r) => n + num(r.stored), 0),
        clusters,
      };
    },
  };
}
export type UsageService = ReturnType<typeof createUsageService>;
