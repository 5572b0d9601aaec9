/**
 * Scheduler and retention benchmark (issues 3 and 9). Prints, measured in this run:
 *  (a) one scheduler tick with nothing due, 100,000 clusters in PostgreSQL (target < 10 ms);
 *  (b) claiming + enqueuing 10,000 due clusters vs a raw BullMQ addBulk of 10,000 jobs
 *      (target: ratio of rates >= 0.5);
 *  (c) planRetention over 10,000 backups (target < 50 ms);
 *  (d) one retention sweep pass over 100,000 dirty clusters, vs a raw addBulk of as many jobs;
 * and the scale line (BENCH_SCALE=0 skips it): the same database grown to 1,000,000 clusters and
 * 10,000,000 backups, then
 *  (a') the idle tick again (target < 10 ms), with its ratio to (a);
 *  (b') the claim rate again, with its ratio to the raw addBulk rate (target >= 0.5);
 *  (d') one retention sweep pass over 1,000,000 dirty clusters, with its ratio to the raw addBulk
 *       and its time per cluster against (d) (target: linear, ratio < 1.5), for the whole pass and
 *       for its SQL alone;
 *  (e') one reconcile pass with nothing to mend (informative).
 */
import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import pg from 'pg';
import { drain, tick } from '../src/roles/scheduler.js';
import { reconcile } from '../src/modules/backups/reconciler.js';
import { sweepRetention } from '../src/modules/retention/retention.sweep.js';
import { planRetention } from '../src/retention/index.js';
import type { Runtime } from '../src/runtime.js';
import { benchEnv, median, timeIt, verdict } from './support.js';

const CLUSTERS = 100_000;
const DUE = 10_000;
const SCALE = process.env.BENCH_SCALE !== '0';
const SCALE_CLUSTERS = Number(process.env.BENCH_SCALE_CLUSTERS ?? 1_000_000);
const SCALE_BACKUPS_PER_CLUSTER = Number(process.env.BENCH_SCALE_BACKUPS_PER_CLUSTER ?? 10);

const rate = (n: number, ms: number) => `${Math.round(n / (ms / 1000)).toLocaleString('en-US')}/s`;

/** Median of `runs` idle ticks (after a warm-up). */
async function idleTick(rt: Runtime, runs = 50): Promise<number> {
  for (let i = 0; i < 5; i++) await tick(rt, { batchSize: 1000 }); // warm up pool and plans
  const xs: number[] = [];
  for (let i = 0; i < runs; i++) xs.push(await timeIt(() => tick(rt, { batchSize: 1000 })));
  return median(xs);
}

/**
 * Three interleaved rounds of the baseline (raw addBulk of `due` jobs) and ours (claim, create
 * rows, take the slots, advance schedules, enqueue `due` due clusters); medians compared.
 */
async function claimRate(rt: Runtime, c: pg.Client, prefix: string, tenant: string, due: number) {
  const BATCH = 1000;
  const baseRuns: number[] = [];
  const oursRuns: number[] = [];
  let created = 0;
  let waiting = 0;
  for (let round = 0; round < 3; round++) {
    const raw = new Queue('bench-raw', { connection: rt.redis, prefix });
    const jobs = Array.from({ length: due }, () => {
      const id = randomUUID();
      return { name: 'run-backup', data: { tenant_id: tenant, backup_id: id }, opts: { jobId: `run-backup-${id}` } };
    });
    const base = async () => {
      baseRuns.push(
        await timeIt(async () => {
          for (let i = 0; i < jobs.length; i += BATCH) await raw.addBulk(jobs.slice(i, i + BATCH));
        }),
      );
      await raw.obliterate({ force: true });
    };
    const ours = async () => {
      // The previous round's backups go, and with them their clusters' job slots.
      await c.query(`UPDATE clusters SET active_job_id = NULL, active_job_kind = NULL WHERE active_job_id IS NOT NULL`);
      await c.query(`DELETE FROM backups WHERE status = 'queued'`);
      await rt.queues.all.backups.obliterate({ force: true });
      await c.query(`UPDATE clusters SET next_backup_at = now() - interval '1 minute' WHERE id IN (SELECT id FROM clusters ORDER BY id LIMIT ${due})`);
      oursRuns.push(await timeIt(async () => (created = (await drain(rt, { batchSize: BATCH })).created)));
      waiting = (await rt.queues.all.backups.getJobCounts('waiting')).waiting ?? 0;
    };
    if (round % 2 === 0) {
      await base();
      await ours();
    } else {
      await ours();
      await base();
    }
    await raw.close();
    if (created !== due || waiting !== due) break;
  }
  await c.query(`UPDATE clusters SET active_job_id = NULL, active_job_kind = NULL WHERE active_job_id IS NOT NULL`);
  await c.query(`DELETE FROM backups WHERE status = 'queued'`);
  await c.query(`UPDATE clusters SET next_backup_at = now() + interval '1 day' WHERE next_backup_at < now() + interval '1 hour'`);
  await rt.queues.all.backups.obliterate({ force: true });
  const baseMs = median(baseRuns);
  const oursMs = median(oursRuns);
  return { baseRuns, oursRuns, baseMs, oursMs, ratio: baseMs / oursMs, ok: created === due && waiting === due && baseMs / oursMs >= 0.5, created, waiting };
}

function printClaim(label: string, due: number, r: Awaited<ReturnType<typeof claimRate>>) {
  console.log(`${label} raw addBulk of ${due} jobs: ${r.baseRuns.map((x) => x.toFixed(0)).join(', ')} ms -> median ${r.baseMs.toFixed(0)} ms (${rate(due, r.baseMs)} jobs)`);
  console.log(`    claim + create rows + enqueue ${due} due clusters: ${r.oursRuns.map((x) => x.toFixed(0)).join(', ')} ms -> median ${r.oursMs.toFixed(0)} ms (${rate(due, r.oursMs)} clusters); last round ${r.created} created, ${r.waiting} jobs waiting`);
  console.log(`    ratio ${r.ratio.toFixed(2)} of the raw addBulk rate; target >= 0.5 ${verdict(r.ok)}`);
}

/**
 * One retention sweep pass over every cluster, all marked dirty: the whole pass (keyset reads +
 * prune jobs enqueued), its SQL alone (the same pass with a queue that drops the jobs), and the
 * baseline, a raw addBulk of as many prune jobs in batches of 1000.
 */
async function sweepPass(rt: Runtime, c: pg.Client, prefix: string, clusters: number, opts: { reset: boolean }) {
  await c.query(`UPDATE clusters SET retention_dirty = true WHERE NOT retention_dirty`);
  await c.query('VACUUM ANALYZE clusters');
  const sqlOnly = { ...rt, queues: { ...rt.queues, all: { ...rt.queues.all, maintenance: { addBulk: async () => [] } } } } as unknown as Runtime;
  let visited = 0;
  const sqlMs = await timeIt(async () => (visited = await sweepRetention(sqlOnly)));

  const raw = new Queue('bench-raw-prune', { connection: rt.redis, prefix });
  const ids = (await c.query<{ id: string; tenant_id: string }>(`SELECT id::text, tenant_id::text FROM clusters`)).rows;
  const baseMs = await timeIt(async () => {
    for (let i = 0; i < ids.length; i += 1000)
      await raw.addBulk(ids.slice(i, i + 1000).map((r) => ({ name: 'prune', data: { tenant_id: r.tenant_id, cluster_id: r.id }, opts: { jobId: `prune-${r.id}-raw` } })));
  });
  await raw.obliterate({ force: true });
  await raw.close();

  let enqueued = 0;
  const passMs = await timeIt(async () => (enqueued = await sweepRetention(rt)));
  const waiting = (await rt.queues.all.maintenance.getJobCounts('waiting')).waiting ?? 0;
  await rt.queues.all.maintenance.obliterate({ force: true });
  if (opts.reset) await c.query(`UPDATE clusters SET retention_dirty = false WHERE retention_dirty`);
  const ok = visited === clusters && enqueued === clusters && waiting === clusters;
  return { sqlMs, passMs, baseMs, visited, enqueued, waiting, ok, perClusterUs: (passMs * 1000) / clusters, sqlPerClusterUs: (sqlMs * 1000) / clusters };
}

function printSweep(label: string, clusters: number, r: Awaited<ReturnType<typeof sweepPass>>) {
  console.log(`${label} retention sweep pass over ${clusters.toLocaleString('en-US')} dirty clusters: ${(r.passMs / 1000).toFixed(2)} s (${rate(clusters, r.passMs)} clusters, ${r.perClusterUs.toFixed(1)} us each); ${r.enqueued} prune jobs enqueued, ${r.waiting} waiting ${verdict(r.ok)}`);
  console.log(`    its SQL alone (keyset batches of 1000 over clusters_retention_dirty_idx): ${(r.sqlMs / 1000).toFixed(2)} s (${rate(clusters, r.sqlMs)} clusters, ${r.sqlPerClusterUs.toFixed(2)} us each)`);
  console.log(`    raw addBulk of ${clusters.toLocaleString('en-US')} prune jobs: ${(r.baseMs / 1000).toFixed(2)} s (${rate(clusters, r.baseMs)}) -> ratio ${(r.baseMs / r.passMs).toFixed(2)} of the raw addBulk rate (informative)`);
}

/**
 * Grows the database to SCALE_CLUSTERS clusters with SCALE_BACKUPS_PER_CLUSTER finished backups
 * each, in PostgreSQL (INSERT ... SELECT generate_series), then ANALYZE.
 *
 * Backup ids are time-ordered (as UUIDv7 ids are) and rows go in cluster order, so each index
 * grows at its right edge. The seeding session runs with session_replication_role = replica,
 * which skips row triggers: the foreign-key checks and the deferred job-slot check, about 80 % of
 * the load time. Every seeded row satisfies both by construction (finished backups of clusters
 * that exist), and every measured statement runs on other sessions, with all of them on.
 */
async function seedScale(c: pg.Client, tenant: string, policy: string) {
  const have = Number((await c.query('SELECT count(*) AS n FROM clusters')).rows[0].n);
  await c.query(
    `INSERT INTO clusters (id, tenant_id, name, environment, region, backup_location, policy_id, components, next_backup_at)
     SELECT gen_random_uuid(), $1, 's' || g, 'production', 'eu-1', 'same-region', $2,
            '[{"name":"f","type":"directory","config":{"path":"x"}}]', now() + interval '1 day' + (g % 3600) * interval '1 second'
     FROM generate_series(1, ${SCALE_CLUSTERS - have}) g`,
    [tenant, policy],
  );
  await c.query(`CREATE TEMP TABLE seed_clusters AS SELECT row_number() OVER (ORDER BY id) AS n, id, tenant_id FROM clusters`);
  await c.query('CREATE INDEX ON seed_clusters (n)');
  await c.query(`SET session_replication_role = replica`);
  await c.query(`SET synchronous_commit = off`);
  const per = SCALE_BACKUPS_PER_CLUSTER;
  const chunk = 100_000;
  for (let from = 1; from <= SCALE_CLUSTERS; from += chunk) {
    // Per cluster: every 5th manual, one failed, one a day back from now.
    await c.query(
      `INSERT INTO backups (id, tenant_id, cluster_id, trigger, status, created_at, started_at, completed_at, size_bytes, bytes_done, components)
       SELECT (lpad(to_hex(s.n * ${per} + k), 8, '0') || '-0000-7000-8000-000000000000')::uuid, s.tenant_id, s.id,
              CASE WHEN k % 5 = 0 THEN 'manual' ELSE 'scheduled' END::"BackupTrigger",
              CASE WHEN k = 3 THEN 'failed' ELSE 'completed' END::"BackupStatus",
              now() - (k + 1) * interval '1 day', now() - (k + 1) * interval '1 day', now() - (k + 1) * interval '1 day' + interval '1 minute',
              1000000, 1000000, '[{"name":"f","status":"completed"}]'
       FROM seed_clusters s CROSS JOIN generate_series(0, ${per - 1}) k
       WHERE s.n BETWEEN ${from} AND ${from + chunk - 1}
       ORDER BY s.n, k`,
    );
    process.stdout.write(`  seeded backups of ${Math.min(from + chunk - 1, SCALE_CLUSTERS).toLocaleString('en-US')} clusters\r`);
  }
  process.stdout.write('\n');
  await c.query(`RESET session_replication_role`);
  await c.query(`RESET synchronous_commit`);
  await c.query('DROP TABLE seed_clusters');
  await c.query('ANALYZE');
}

const env = await benchEnv('sched');
const { rt } = env;
let failed = false;
try {
  const c = new pg.Client({ connectionString: env.dbUrl });
  c.on('error', (err) => console.error(`bench connection lost: ${err.message}`));
  await c.connect();
  const tenant = randomUUID();
  const policy = randomUUID();
  await c.query(`INSERT INTO tenants (id, name, data_dir) VALUES ($1::uuid, 'bench', $1::text)`, [tenant]);
  await c.query(
    `INSERT INTO policies (id, tenant_id, name, is_default, default_for, timezone, schedule, max_backups, manual_count, manual_rate_limit, failed_count)
     VALUES ($1, $2, 'default', true, 'production', 'Europe/Berlin', '[{"interval":"1d","count":7},{"interval":"1w","count":4}]', 20, 3, '1h', 3)`,
    [policy, tenant],
  );
  console.log(`seeding ${CLUSTERS} clusters...`);
  await c.query(
    `INSERT INTO clusters (id, tenant_id, name, environment, region, backup_location, policy_id, components, next_backup_at)
     SELECT gen_random_uuid(), $1, 'c' || g, 'production', 'eu-1', 'same-region', $2,
            '[{"name":"f","type":"directory","config":{"path":"x"}}]', now() + interval '1 day' + (g % 3600) * interval '1 second'
     FROM generate_series(1, ${CLUSTERS}) g`,
    [tenant, policy],
  );
  await c.query('ANALYZE');

  // (a) nothing due
  const idleMs = await idleTick(rt);
  const okA = idleMs < 10;
  console.log(`(a) tick with nothing due (${CLUSTERS} clusters): median ${idleMs.toFixed(2)} ms over 50 ticks; target < 10 ms -> ratio ${(idleMs / 10).toFixed(2)} of budget ${verdict(okA)}`);

  // (b) claim rate against a raw addBulk
  const claim = await claimRate(rt, c, env.prefix, tenant, DUE);
  printClaim('(b)', DUE, claim);
  const okB = claim.ok;

  // (c) planRetention over 10,000 backups: hourly backups over ~14 months, mixed triggers and failures.
  const start = Date.parse('2025-09-01T00:00:00Z');
  const backups = Array.from({ length: 10_000 }, (_, i) => ({
    id: `b${i}`,
    trigger: (i % 10 === 0 ? 'manual' : 'scheduled') as 'manual' | 'scheduled',
    status: (i % 37 === 0 ? 'failed' : 'completed') as 'completed' | 'failed',
    created_at: new Date(start + i * 3600_000 + (i % 7) * 60_000),
    in_use: i === 4242,
  }));
  const pol = { timezone: 'Europe/Berlin', schedule: [{ interval: '1h', count: 24 }, { interval: '1d', count: 7 }, { interval: '1w', count: 4 }, { interval: '1M', count: 12 }, { interval: '1y', count: 3 }], max_backups: 50, manual_count: 5, failed_count: 3 };
  const first = await timeIt(() => planRetention(backups, pol));
  const runs: number[] = [];
  for (let i = 0; i < 20; i++) runs.push(await timeIt(() => planRetention(backups, pol)));
  const planMs = median(runs);
  const kept = planRetention(backups, pol).filter((d) => d.keep).length;
  const okC = planMs < 50 && first < 50;
  console.log(`(c) planRetention over 10,000 backups: first ${first.toFixed(1)} ms, median ${planMs.toFixed(1)} ms of 20 (kept ${kept}); target < 50 ms -> ratio ${(planMs / 50).toFixed(2)} of budget ${verdict(okC)}`);

  // (d) one retention sweep pass over every cluster, all dirty
  const sweep = await sweepPass(rt, c, env.prefix, CLUSTERS, { reset: SCALE });
  printSweep('(d)', CLUSTERS, sweep);
  let ok = okA && okB && okC && sweep.ok;

  if (SCALE) {
    const t0 = Date.now();
    await seedScale(c, tenant, policy);
    console.log(`scale: ${SCALE_CLUSTERS.toLocaleString('en-US')} clusters and ${(SCALE_CLUSTERS * SCALE_BACKUPS_PER_CLUSTER).toLocaleString('en-US')} backups seeded in ${((Date.now() - t0) / 1000).toFixed(0)} s`);

    const idle2 = await idleTick(rt);
    const okA2 = idle2 < 10;
    console.log(`(a') tick with nothing due (${SCALE_CLUSTERS.toLocaleString('en-US')} clusters): median ${idle2.toFixed(2)} ms over 50 ticks; target < 10 ms -> ratio ${(idle2 / 10).toFixed(2)} of budget, ${(idle2 / idleMs).toFixed(2)} of (a) ${verdict(okA2)}`);

    const claim2 = await claimRate(rt, c, env.prefix, tenant, DUE);
    printClaim("(b')", DUE, claim2);
    console.log(`    claim rate ${(claim.oursMs / claim2.oursMs).toFixed(2)} of (b)`);

    const sweep2 = await sweepPass(rt, c, env.prefix, SCALE_CLUSTERS, { reset: false });
    printSweep("(d')", SCALE_CLUSTERS, sweep2);
    const linear = sweep2.perClusterUs / sweep.perClusterUs;
    const linearSql = sweep2.sqlPerClusterUs / sweep.sqlPerClusterUs;
    const okD2 = sweep2.ok && linear < 1.5;
    console.log(`    time per cluster ${linear.toFixed(2)} of (d) for the whole pass, ${linearSql.toFixed(2)} for its SQL (${(SCALE_CLUSTERS / CLUSTERS).toFixed(0)}x the clusters); target linear, < 1.5 ${verdict(okD2)}`);

    let rec = '';
    const recMs = await timeIt(async () => (rec = JSON.stringify(await reconcile(rt))));
    console.log(`(e') one reconcile pass with nothing to mend (${(SCALE_CLUSTERS * SCALE_BACKUPS_PER_CLUSTER).toLocaleString('en-US')} backups): ${recMs.toFixed(1)} ms ${rec} (informative)`);
    ok = ok && okA2 && claim2.ok && okD2;
  }
  await c.end();
  failed = !ok;
} finally {
  await env.drop();
}
process.exit(failed ? 1 : 0);
