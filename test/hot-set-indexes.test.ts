import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from './helpers/db.js';

/**
 * The reconciler, the sweeps and the scheduler probe small hot sets (queued, running, deleting,
 * being verified, dirty) among many finished rows every few seconds. Each probe must read an index
 * that leads it to its set, never the whole table: the planner picks it on its own here, on tables
 * of 60,000 finished backups and 6,000 clusters with fresh statistics (no enable_seqscan games).
 */
let tdb: Awaited<ReturnType<typeof createTestDatabase>>;
let c: pg.Client;
beforeAll(async () => {
  tdb = await createTestDatabase();
  c = new pg.Client({ connectionString: tdb.url });
  await c.connect();
  const tenant = '00000000-0000-4000-8000-000000000001';
  const policy = '00000000-0000-4000-8000-000000000002';
  await c.query(`INSERT INTO tenants (id, name, data_dir) VALUES ($1::uuid, 'indexes', $1::text)`, [tenant]);
  await c.query(
    `INSERT INTO policies (id, tenant_id, name, is_default, default_for, timezone, schedule, max_backups, manual_count, manual_rate_limit, failed_count)
     VALUES ($1, $2, 'default', true, 'production', 'UTC', '[]', 10, 3, null, 3)`,
    [policy, tenant],
  );
  await c.query(
    `INSERT INTO clusters (id, tenant_id, name, environment, region, backup_location, policy_id, components, next_backup_at, status, retention_dirty)
     SELECT gen_random_uuid(), $1, 'c' || g, 'production', 'eu-1', 'same-region', $2, '[]', now() + interval '1 hour',
            CASE WHEN g % 1000 = 0 THEN 'deleting' ELSE 'active' END::"ClusterStatus", g % 500 = 0
     FROM generate_series(1, 6000) g`,
    [tenant, policy],
  );
  // Ten finished backups per cluster; a few verifications and dual-region copies in flight.
  await c.query(
    `INSERT INTO backups (id, tenant_id, cluster_id, trigger, status, created_at, completed_at, components, verify_status, replication_status, replication_next_at)
     SELECT gen_random_uuid(), c.tenant_id, c.id, 'scheduled', CASE WHEN k = 3 THEN 'failed' ELSE 'completed' END::"BackupStatus",
            now() - k * interval '1 day', now() - k * interval '1 day', '[]',
            CASE WHEN k = 1 AND c.name LIKE '%77' THEN 'queued' WHEN k = 2 THEN 'passed' END,
            CASE WHEN k = 1 AND c.name LIKE '%99' THEN 'pending' WHEN k = 1 THEN 'replicated' END,
            CASE WHEN k = 1 AND c.name LIKE '%99' THEN now() END
     FROM clusters c CROSS JOIN generate_series(1, 10) k`,
  );
  // The hot sets: a few queued, running and deleting backups and restores (each running or queued
  // one holds its cluster's job slot, as the database requires).
  await c.query('BEGIN');
  await c.query(
    `WITH hot AS (
       SELECT c.id AS cluster_id, c.tenant_id, gen_random_uuid() AS id, CASE WHEN n % 2 = 0 THEN 'queued' ELSE 'running' END::"BackupStatus" AS status
       FROM (SELECT id, tenant_id, row_number() OVER (ORDER BY id) AS n FROM clusters WHERE status = 'active' ORDER BY id LIMIT 40) c
     ), ins AS (
       INSERT INTO backups (id, tenant_id, cluster_id, trigger, status, created_at, components, lease_expires_at)
       SELECT id, tenant_id, cluster_id, 'scheduled', status, now(), '[]', CASE WHEN status = 'running' THEN now() + interval '1 minute' END FROM hot
       RETURNING id, cluster_id
     )
     UPDATE clusters SET active_job_id = ins.id, active_job_kind = 'backup' FROM ins WHERE clusters.id = ins.cluster_id`,
  );
  await c.query('COMMIT');
  await c.query(`UPDATE backups SET status = 'deleting' WHERE id IN (SELECT id FROM backups WHERE status = 'failed' LIMIT 25)`);
  await c.query('BEGIN');
  await c.query(
    `WITH target AS (
       SELECT id, tenant_id, row_number() OVER (ORDER BY id) AS n FROM clusters WHERE status = 'active' AND active_job_id IS NULL ORDER BY id LIMIT 10
     ), ins AS (
       INSERT INTO restores (id, tenant_id, backup_id, source_cluster_id, cluster_id, components, status, created_at, lease_expires_at)
       SELECT gen_random_uuid(), t.tenant_id, (SELECT b.id FROM backups b WHERE b.cluster_id = t.id AND b.status = 'completed' LIMIT 1), t.id, t.id, '[]',
              CASE WHEN t.n % 2 = 0 THEN 'queued' ELSE 'running' END::"RestoreStatus", now(), CASE WHEN t.n % 2 = 1 THEN now() + interval '1 minute' END
       FROM target t
       RETURNING id, cluster_id
     )
     UPDATE clusters SET active_job_id = ins.id, active_job_kind = 'restore', status = 'restoring' FROM ins WHERE clusters.id = ins.cluster_id`,
  );
  await c.query('COMMIT');
  // Many finished restores, so that the table is not trivially small either.
  await c.query(
    `INSERT INTO restores (id, tenant_id, backup_id, source_cluster_id, cluster_id, components, status, created_at, completed_at)
     SELECT gen_random_uuid(), b.tenant_id, b.id, b.cluster_id, b.cluster_id, '[]', 'completed', now() - interval '1 day', now() - interval '1 day'
     FROM backups b WHERE b.status = 'completed' LIMIT 20000`,
  );
  await c.query('ANALYZE');
});
afterAll(async () => {
  await c?.end();
  await tdb?.drop();
});

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  Plans?: PlanNode[];
}

/** Every (node type, relation, index) of the plan of `sql`. */
async function scans(sql: string, params: unknown[] = []): Promise<{ node: string; relation?: string; index?: string }[]> {
  const { rows } = await c.query(`EXPLAIN (FORMAT JSON) ${sql}`, params);
  const out: { node: string; relation?: string; index?: string }[] = [];
  const walk = (n: PlanNode) => {
    if (n['Relation Name'] || n['Index Name']) out.push({ node: n['Node Type'], ...(n['Relation Name'] && { relation: n['Relation Name'] }), ...(n['Index Name'] && { index: n['Index Name'] }) });
    n.Plans?.forEach(walk);
  };
  walk((rows[0]['QUERY PLAN'] as { Plan: PlanNode }[])[0]!.Plan);
  return out;
}

// The probes as the reconciler and the ledger send them through Prisma: an enum is compared with
// `CAST($1::text AS "Enum")` and `take` adds `ORDER BY id`. Prisma binds values as parameters of
// an unnamed statement, which PostgreSQL plans with the values, as EXPLAIN does here.
// One batch of the retention sweep (src/modules/retention/retention.sweep.ts).
const SWEEP_BATCH = `SELECT id::text, tenant_id::text FROM clusters WHERE retention_dirty AND id > $1::uuid AND status <> 'deleting' ORDER BY clusters.id LIMIT $2`;
const prisma = (table: string, where: string) => `SELECT "public"."${table}"."id", "public"."${table}"."tenant_id" FROM "public"."${table}" WHERE ${where} ORDER BY "public"."${table}"."id" ASC LIMIT 500 OFFSET 0`;
const probes: { what: string; sql: string; params?: unknown[]; indexes: string[] }[] = [
  {
    what: 'running backups whose lease expired (ledger.reapLost)',
    sql: prisma('backups', `("public"."backups"."status" = CAST($1::text AS "public"."BackupStatus") AND "public"."backups"."lease_expires_at" < $2)`),
    params: ['running', new Date()],
    indexes: ['backups_status_idx'],
  },
  {
    what: 'queued backups whose job may be missing',
    sql: prisma('backups', `("public"."backups"."status" = CAST($1::text AS "public"."BackupStatus") AND "public"."backups"."created_at" < $2)`),
    params: ['queued', new Date(Date.now() + 60_000)],
    indexes: ['backups_status_idx'],
  },
  {
    what: 'interrupted backup deletions',
    sql: prisma('backups', `"public"."backups"."status" = CAST($1::text AS "public"."BackupStatus")`),
    params: ['deleting'],
    indexes: ['backups_status_idx'],
  },
  {
    what: 'verifications whose job may be missing',
    sql: prisma('backups', `("public"."backups"."status" = CAST($1::text AS "public"."BackupStatus") AND "public"."backups"."verify_status" IN ($2,$3))`),
    params: ['completed', 'queued', 'running'],
    indexes: ['backups_verify_active_idx'],
  },
  {
    what: 'dual-region copies due',
    sql: prisma(
      'backups',
      `("public"."backups"."status" = CAST($1::text AS "public"."BackupStatus") AND "public"."backups"."replication_status" IN ($2,$3) AND "public"."backups"."replication_next_at" <= $4)`,
    ),
    params: ['completed', 'pending', 'degraded', new Date()],
    indexes: ['backups_replication_due_idx'],
  },
  {
    what: 'running restores whose lease expired (ledger.reapLost)',
    sql: prisma('restores', `("public"."restores"."status" = CAST($1::text AS "public"."RestoreStatus") AND "public"."restores"."lease_expires_at" < $2)`),
    params: ['running', new Date()],
    indexes: ['restores_status_idx'],
  },
  {
    what: 'queued restores whose job may be missing',
    sql: prisma('restores', `("public"."restores"."status" = CAST($1::text AS "public"."RestoreStatus") AND "public"."restores"."created_at" < $2)`),
    params: ['queued', new Date(Date.now() + 60_000)],
    indexes: ['restores_status_idx'],
  },
  // Raw SQL with literal statuses.
  { what: 'interrupted backup deletions, raw SQL', sql: `SELECT id, tenant_id FROM backups WHERE status = 'deleting' LIMIT 500`, indexes: ['backups_status_idx'] },
  {
    what: 'active backups, raw SQL',
    sql: `SELECT id, tenant_id FROM backups WHERE status IN ('queued', 'running') AND lease_expires_at < now() LIMIT 500`,
    indexes: ['backups_one_active_per_cluster', 'backups_status_idx'],
  },
  { what: 'clusters being deleted, raw SQL', sql: `SELECT id, tenant_id FROM clusters WHERE status = 'deleting' LIMIT 500`, indexes: ['clusters_busy_status_idx'] },
  {
    what: 'the retention sweep, one keyset batch',
    sql: SWEEP_BATCH,
    params: ['00000000-0000-0000-0000-000000000000', 1000],
    indexes: ['clusters_retention_dirty_idx'],
  },
];

describe('every probe of a hot set reads an index of that set, never the table', () => {
  it('the reconciler, ledger and sweep probes', async () => {
    for (const { what, sql, params, indexes } of probes) {
      const plan = await scans(sql, params);
      expect.soft(plan.filter((s) => s.node === 'Seq Scan'), `${what}: no sequential scan`).toEqual([]);
      expect.soft(plan.filter((s) => s.index && indexes.includes(s.index)), `${what}: reads ${indexes.join(' or ')}, not ${JSON.stringify(plan)}`).not.toEqual([]);
    }
  });

  it('a retention sweep batch walks the index in id order even when every cluster is dirty (no sort of the rest: linear)', async () => {
    await c.query('UPDATE clusters SET retention_dirty = true WHERE NOT retention_dirty');
    await c.query('VACUUM ANALYZE clusters');
    try {
      const { rows } = await c.query(`EXPLAIN (FORMAT JSON) ${SWEEP_BATCH}`, ['00000000-0000-0000-0000-000000000000', 1000]);
      const nodes: PlanNode[] = [];
      const walk = (n: PlanNode) => (nodes.push(n), n.Plans?.forEach(walk));
      walk((rows[0]['QUERY PLAN'] as { Plan: PlanNode }[])[0]!.Plan);
      expect(nodes.map((n) => n['Node Type'])).toEqual(['Limit', 'Index Scan']);
      expect(nodes[1]!['Index Name']).toMatch(/^clusters_(retention_dirty_idx|pkey)$/);
    } finally {
      await c.query(`UPDATE clusters SET retention_dirty = (name ~ '^c[0-9]*[05]00$')`);
      await c.query('ANALYZE clusters');
    }
  });

  it('the partial indexes hold only their hot sets', async () => {
    const partial = ['backups_verify_active_idx', 'backups_replication_due_idx', 'clusters_retention_dirty_idx'];
    const { rows } = await c.query(`SELECT indexname, indexdef FROM pg_indexes WHERE indexname = ANY ($1)`, [partial]);
    expect(rows.map((r) => r.indexname).sort()).toEqual([...partial].sort());
    for (const r of rows) expect(r.indexdef, r.indexname).toMatch(/ WHERE /);
    const { rows: sizes } = await c.query(`SELECT relname, reltuples FROM pg_class WHERE relname = ANY ($1)`, [partial]);
    // Dozens of rows each (as ANALYZE estimates them), against 60,000 backups and 6,000 clusters.
    for (const r of sizes) expect(Number(r.reltuples), r.relname).toBeLessThan(600);
  });
});
