/**
 * Scheduler and retention benchmark (issue 3). Prints, measured in this run:
 *  (a) one scheduler tick with nothing due, 100,000 clusters in PostgreSQL (target < 10 ms);
 *  (b) claiming + enqueuing 10,000 due clusters vs a raw BullMQ addBulk of 10,000 jobs
 *      (target: ratio of rates >= 0.5);
 *  (c) planRetention over 10,000 backups (target < 50 ms).
 */
import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import pg from 'pg';
import { drain, tick } from '../src/roles/scheduler.js';
import { planRetention } from '../src/retention/index.js';
import { benchEnv, median, timeIt, verdict } from './support.js';

const CLUSTERS = 100_000;
const DUE = 10_000;

const env = await benchEnv('sched');
const { rt } = env;
let failed = false;
try {
  const c = new pg.Client({ connectionString: env.dbUrl });
  await c.connect();
  const tenant = randomUUID();
  const policy = randomUUID();
  await c.query(`INSERT INTO tenants (id, name) VALUES ($1, 'bench')`, [tenant]);
  await c.query(
    `INSERT INTO policies (id, tenant_id, name, is_default, timezone, schedule, max_backups, manual_count, manual_rate_limit, failed_count)
     VALUES ($1, $2, 'default', true, 'Europe/Berlin', '[{"interval":"1d","count":7},{"interval":"1w","count":4}]', 20, 3, '1h', 3)`,
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
  for (let i = 0; i < 5; i++) await tick(rt, { batchSize: 1000 }); // warm up pool and plans
  const idle: number[] = [];
  for (let i = 0; i < 50; i++) idle.push(await timeIt(() => tick(rt, { batchSize: 1000 })));
  const idleMs = median(idle);
  const okA = idleMs < 10;
  console.log(`(a) tick with nothing due (${CLUSTERS} clusters): median ${idleMs.toFixed(2)} ms over 50 ticks; target < 10 ms -> ratio ${(idleMs / 10).toFixed(2)} of budget ${verdict(okA)}`);

  // (b) three interleaved rounds of the baseline (raw addBulk of 10,000 jobs) and ours (claim,
  // create rows, advance schedules, enqueue 10,000 due clusters); medians compared.
  const BATCH = 1000;
  const baseRuns: number[] = [];
  const oursRuns: number[] = [];
  let created = 0;
  let waiting = 0;
  for (let round = 0; round < 3; round++) {
    const raw = new Queue('bench-raw', { connection: rt.redis, prefix: env.prefix });
    const jobs = Array.from({ length: DUE }, () => {
      const id = randomUUID();
      return { name: 'run-backup', data: { tenant_id: tenant, backup_id: id }, opts: { jobId: `run-backup-${id}` } };
    });
    baseRuns.push(
      await timeIt(async () => {
        for (let i = 0; i < jobs.length; i += BATCH) await raw.addBulk(jobs.slice(i, i + BATCH));
      }),
    );
    await raw.obliterate({ force: true });
    await raw.close();

    await c.query('DELETE FROM backups');
    await rt.queues.all.backups.obliterate({ force: true });
    await c.query(`UPDATE clusters SET next_backup_at = now() - interval '1 minute' WHERE id IN (SELECT id FROM clusters ORDER BY id LIMIT ${DUE})`);
    oursRuns.push(await timeIt(async () => (created = (await drain(rt, { batchSize: BATCH })).created)));
    waiting = (await rt.queues.all.backups.getJobCounts('waiting')).waiting ?? 0;
    if (created !== DUE || waiting !== DUE) break;
  }
  const baseMs = median(baseRuns);
  const oursMs = median(oursRuns);
  const ratioB = baseMs / oursMs;
  const okB = created === DUE && waiting === DUE && ratioB >= 0.5;
  console.log(`(b) raw addBulk of ${DUE} jobs: ${baseRuns.map((x) => x.toFixed(0)).join(', ')} ms -> median ${baseMs.toFixed(0)} ms (${(DUE / (baseMs / 1000)).toFixed(0)} jobs/s)`);
  console.log(`    claim + create rows + enqueue ${DUE} due clusters: ${oursRuns.map((x) => x.toFixed(0)).join(', ')} ms -> median ${oursMs.toFixed(0)} ms (${(DUE / (oursMs / 1000)).toFixed(0)} clusters/s); last round ${created} created, ${waiting} jobs waiting`);
  console.log(`    ratio ${ratioB.toFixed(2)} of the raw addBulk rate; target >= 0.5 ${verdict(okB)}`);
  await c.end();

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
  failed = !(okA && okB && okC);
} finally {
  await env.drop();
}
process.exit(failed ? 1 : 0);
