/**
 * API benchmark (issue 5), with autocannon against this process's own servers on 127.0.0.1:
 *  - GET /v1/clusters/{id}/backups?limit=50 vs a bare Fastify route running the same SQL through
 *    `pg` (key lookup, cluster check, a page of backups with their artifacts); target >= 0.5.
 *  - POST /v1/clusters/{id}/backups vs a bare Fastify route running the same SQL through `pg`:
 *    the key lookup and the ledger's one decision statement (QUEUE_MANUAL_BACKUP_SQL: lock the
 *    cluster, policy, rate-limit and busy checks, insert and take the slot); target >= 0.5. The
 *    old multi-statement transaction is measured too, for comparison.
 *  - Webhooks: 1,000 events delivered to a local receiver, the rate and the
 *    p99 from each event's occurred_at to its arrival, against raw signed POSTs to the same receiver.
 * Prints throughput, p99 latency and the ratios, all measured in this run.
 */
import { createHash, randomUUID } from 'node:crypto';
import autocannon from 'autocannon';
import Fastify from 'fastify';
import pg from 'pg';
import { createApiApp } from '../src/roles/api.js';
import { QUEUE_MANUAL_BACKUP_SQL, queueManualParams } from '../src/jobs/ledger.js';
import { benchEnv, verdict } from './support.js';
import http from 'node:http';
import { recordEvent } from '../src/modules/events/outbox.js';
import { createUrlGuard } from '../src/net/url-guard.js';
import { parseAllowedHosts } from '../src/components/targets.js';
import { startWorkerRole } from '../src/roles/worker.js';
import { generateWebhookSecret } from '../src/modules/webhooks/webhooks.service.js';
import { signWebhook, unixSeconds } from '../src/modules/webhooks/signing.js';
import type { Runtime } from '../src/runtime.js';

const DURATION = Number(process.env.BENCH_SECONDS ?? 8);
/** BENCH_ONLY=webhooks runs the webhook delivery line alone (api: the request lines alone). */
const ONLY = process.env.BENCH_ONLY as 'api' | 'webhooks' | undefined;
const CONNECTIONS = 10;

const env = await benchEnv('api');
const { rt } = env;
const pool = new pg.Pool({ connectionString: env.dbUrl, max: 10 });
let exitCode = 0;

async function load(url: string, opts: { method?: 'GET' | 'POST'; token: string; paths?: string[] }) {
  const result = await autocannon({
    url,
    connections: CONNECTIONS,
    duration: DURATION,
    method: opts.method ?? 'GET',
    headers: { authorization: `Bearer ${opts.token}` },
    ...(opts.paths && { requests: opts.paths.map((path) => ({ path, method: opts.method ?? 'GET' })) }),
  });
  return { rps: result.requests.average, p99: result.latency.p99, codes: { '2xx': result['2xx'], '4xx': result['4xx'], '5xx': result['5xx'], errors: result.errors } };
}

const WEBHOOK_EVENTS = 1000;
/** Jobs a worker runs at once (WORKER_CONCURRENCY) in the webhook line, and the baseline's parallel POSTs. */
const WEBHOOK_CONCURRENCY = Number(process.env.BENCH_WEBHOOK_CONCURRENCY ?? 16);

const p = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
};

/**
 * 1,000 events recorded (10 writers, each event its own transaction)
 * and delivered by one worker to a receiver on 127.0.0.1: the rate from the first commit to the
 * last arrival, and the latency from each event's occurred_at to its arrival (p50, p99). The
 * baseline: the same number of signed POSTs of the same body, straight to the same receiver, one
 * connection each (as the sender does), WEBHOOK_CONCURRENCY at a time.
 */
async function benchWebhooks(b: { rt: Runtime; dbUrl: string }, pool: pg.Pool) {
  const arrivals = new Map<string, number>();
  const receiver = http.createServer((req, res) => {
    const id = String(req.headers['webhook-id']);
    if (!arrivals.has(id)) arrivals.set(id, Date.now());
    req.resume();
    req.on('end', () => res.writeHead(204).end());
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  const port = (receiver.address() as { port: number }).port;
  const url = `http://127.0.0.1:${port}/hook`;
  const allowed = parseAllowedHosts('127.0.0.1');
  const rt: Runtime = {
    ...b.rt,
    config: { ...b.rt.config, workerConcurrency: WEBHOOK_CONCURRENCY, webhooks: { ...b.rt.config.webhooks, allowedHosts: allowed, allowHttp: true } },
    webhookUrls: createUrlGuard({ allowedHosts: allowed, allowHttp: true }),
  };
  const tenantId = randomUUID();
  const secret = generateWebhookSecret();
  await pool.query(`INSERT INTO tenants (id, name, data_dir) VALUES ($1::uuid, 'bench-webhooks', $1::text)`, [tenantId]);
  await pool.query(`INSERT INTO webhooks (id, tenant_id, url, events, secret_enc) VALUES ($1, $2, $3, '{backup.completed}', $4)`, [randomUUID(), tenantId, url, rt.box.encrypt(secret)]);
  const data = { backup: { id: randomUUID(), cluster_id: randomUUID(), status: 'completed', trigger: 'manual', size_bytes: 123456, components: [{ name: 'files', status: 'completed' }] } };
  const worker = startWorkerRole(rt);
  try {
    const emit = async (n: number) => {
      const occurred: { id: string; at: number }[] = [];
      let next = 0;
      await Promise.all(
        Array.from({ length: 10 }, async () => {
          while (next < n) {
            next++;
            const at = new Date();
            // One statement, its own transaction: what a state change adds to its commit.
            const id = await recordEvent(rt.db, { tenantId, type: 'backup.completed', clusterId: data.backup.cluster_id, data, occurredAt: at });
            occurred.push({ id, at: at.getTime() });
          }
        }),
      );
      return occurred;
    };
    const waitAll = async (ids: string[], timeoutMs: number) => {
      const t = Date.now();
      while (ids.some((id) => !arrivals.has(id))) {
        if (Date.now() - t > timeoutMs) throw new Error(`only ${ids.filter((id) => arrivals.has(id)).length}/${ids.length} webhook events arrived`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    await waitAll((await emit(50)).map((e) => e.id), 60_000); // warm-up: 50 events through the whole path

    const t0 = Date.now();
    const events = await emit(WEBHOOK_EVENTS);
    await waitAll(events.map((e) => e.id), 300_000);
    const last = Math.max(...events.map((e) => arrivals.get(e.id)!));
    const emitted = Math.max(...events.map((e) => e.at)) - t0;
    const rate = WEBHOOK_EVENTS / ((last - t0) / 1000);
    const latencies = events.map((e) => arrivals.get(e.id)! - e.at);

    // One event at a time on an idle pipeline: the latency LISTEN/NOTIFY gives, without a backlog.
    const single: number[] = [];
    for (let i = 0; i < 20; i++) {
      const [e] = await emit(1);
      await waitAll([e!.id], 10_000);
      single.push(arrivals.get(e!.id)! - e!.at);
    }

    // Baseline: raw signed POSTs of the same body to the same receiver.
    const body = JSON.stringify({ id: randomUUID(), type: 'backup.completed', occurred_at: new Date().toISOString(), cluster_id: data.backup.cluster_id, data });
    const post = (id: string) =>
      new Promise<void>((resolve, reject) => {
        const ts = unixSeconds(new Date());
        const req = http.request(
          { host: '127.0.0.1', port, path: '/hook', method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'webhook-id': id, 'webhook-timestamp': String(ts), 'webhook-signature': signWebhook(secret, id, ts, body) } },
          (res) => {
            res.resume();
            res.on('end', resolve);
          },
        );
        req.on('error', reject);
        req.end(body);
      });
    let sent = 0;
    const b0 = Date.now();
    await Promise.all(
      Array.from({ length: WEBHOOK_CONCURRENCY }, async () => {
        while (sent < WEBHOOK_EVENTS) {
          sent++;
          await post(randomUUID());
        }
      }),
    );
    const baseRate = WEBHOOK_EVENTS / ((Date.now() - b0) / 1000);
    console.log(`webhooks baseline (raw signed POSTs, ${WEBHOOK_CONCURRENCY} at a time, one connection each): ${baseRate.toFixed(0)} req/s`);
    console.log(
      `webhooks service : ${WEBHOOK_EVENTS} events delivered at ${rate.toFixed(0)} events/s (first commit to last arrival), latency occurred_at -> receiver p50 ${p(latencies, 0.5)} ms, p99 ${p(latencies, 0.99)} ms (WORKER_CONCURRENCY=${WEBHOOK_CONCURRENCY}; the events were recorded over ${emitted} ms)`,
    );
    console.log(`webhooks one event at a time (idle pipeline): latency occurred_at -> receiver p50 ${p(single, 0.5)} ms, max ${Math.max(...single)} ms (20 events)`);
    console.log(`webhooks throughput ratio ${(rate / baseRate).toFixed(2)}`);
    if (process.env.BENCH_DEBUG) {
      const { rows } = await pool.query(`SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM d.created_at - e.occurred_at)) AS fanout,
        percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM a.started_at - d.created_at)) AS queued,
        percentile_cont(0.5) WITHIN GROUP (ORDER BY a.duration_ms) AS send, max(e.occurred_at) - min(e.occurred_at) AS emit_span
        FROM events e JOIN webhook_deliveries d ON d.event_id = e.id JOIN webhook_attempts a ON a.delivery_id = d.id`);
      console.error('webhooks medians (s): fan-out, queued, send (ms); emit span', rows[0]);
    }
  } finally {
    await worker.close();
    await new Promise<void>((r) => receiver.close(() => r()));
  }
}

/** GET and POST /v1/clusters/{id}/backups against bare Fastify routes running the same SQL. */
async function benchApi() {
    // Our service, with the rate limit out of the way.
    const app = await createApiApp({ ...rt, config: { ...rt.config, rateLimit: { max: 1e9, windowMs: 60_000 } } }, { logger: false });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const ours = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;

    // Seed directly: one tenant, an admin key, a policy without a rate limit, 200 clusters.
    const tenantId = randomUUID();
    const token = `bk_bench_${randomUUID()}`;
    const keyHash = createHash('sha256').update(token).digest('hex');
    const c = await pool.connect();
    await c.query(`INSERT INTO tenants (id, name, data_dir) VALUES ($1::uuid, 'bench', $1::text)`, [tenantId]);
    await c.query(`INSERT INTO api_keys (id, tenant_id, name, role, prefix, token_hash) VALUES ($1, $2, 'bench', 'admin', 'bk_bench', $3)`, [randomUUID(), tenantId, keyHash]);
    const policyId = randomUUID();
    await c.query(
      `INSERT INTO policies (id, tenant_id, name, is_default, default_for, timezone, schedule, max_backups, manual_count, manual_rate_limit, failed_count)
       VALUES ($1, $2, 'default', true, 'production', 'UTC', '[{"interval":"1d","count":7}]', 100, 100, NULL, 3)`,
      [policyId, tenantId],
    );
    const clusterIds: string[] = [];
    for (let i = 0; i < 200; i++) {
      const id = randomUUID();
      clusterIds.push(id);
      await c.query(
        `INSERT INTO clusters (id, tenant_id, name, environment, region, backup_location, policy_id, components)
         VALUES ($1, $2, $3, 'production', 'eu-1', 'same-region', $4, '[{"name":"files","type":"directory","config":{"path":"x"}},{"name":"db","type":"postgres","config":{"url_encrypted":"x","url_masked":"postgresql://u:***@h/db"}}]')`,
        [id, tenantId, `c${i}`, policyId],
      );
    }
    const listCluster = clusterIds[0]!;
    // 500 completed backups with two artifacts each on the listed cluster.
    await c.query(
      `INSERT INTO backups (id, tenant_id, cluster_id, trigger, status, created_at, started_at, completed_at, size_bytes, bytes_done, components)
       SELECT gen_random_uuid(), $1, $2, 'scheduled', 'completed', now() - g * interval '1 hour', now() - g * interval '1 hour', now() - g * interval '1 hour' + interval '1 minute', 2048, 2048,
              '[{"name":"files","status":"completed"},{"name":"db","status":"completed"}]'
       FROM generate_series(1, 500) g`,
      [tenantId, listCluster],
    );
    await c.query(
      `INSERT INTO backup_artifacts (id, backup_id, component, key, bytes, sha256, locations)
       SELECT gen_random_uuid(), b.id, comp, b.id || '/' || comp, 1024, md5(b.id::text) || md5(comp), jsonb_build_array(jsonb_build_object('store','primary','url','file:///x/' || b.id || '/' || comp,'status','present'))
       FROM backups b CROSS JOIN (VALUES ('files'), ('db')) v(comp)`,
    );
    await c.query('ANALYZE');
    c.release();

    // The baseline: bare Fastify, no validation or serialization schemas, the same SQL via pg.
    const bare = Fastify();
    const auth = async (header: string | undefined) => {
      const t = header?.replace(/^Bearer /, '') ?? '';
      const { rows } = await pool.query('SELECT id, tenant_id, role FROM api_keys WHERE token_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())', [
        createHash('sha256').update(t).digest('hex'),
      ]);
      return rows[0] as { tenant_id: string } | undefined;
    };
    bare.get('/v1/clusters/:id/backups', async (req, reply) => {
      const key = await auth(req.headers.authorization);
      if (!key) return reply.code(401).send();
      const { id } = req.params as { id: string };
      const cl = await pool.query('SELECT id FROM clusters WHERE id = $1 AND tenant_id = $2', [id, key.tenant_id]);
      if (!cl.rowCount) return reply.code(404).send();
      const { rows } = await pool.query(
        `SELECT b.*, COALESCE((SELECT json_agg(a ORDER BY a.component) FROM backup_artifacts a WHERE a.backup_id = b.id), '[]') AS artifacts
         FROM backups b WHERE b.tenant_id = $1 AND b.cluster_id = $2 ORDER BY b.created_at DESC, b.id DESC LIMIT 51`,
        [key.tenant_id, id],
      );
      return { items: rows.slice(0, 50), next_cursor: rows.length > 50 ? 'x' : null };
    });
    bare.setErrorHandler((err, _req, reply) => {
      if (process.env.BENCH_DEBUG) console.error('baseline error:', (err as Error).message);
      void reply.code(500).send();
    });
    // The same SQL as ours: the key lookup, then the ledger's decision statement.
    bare.post('/v1/clusters/:id/backups', async (req, reply) => {
      const key = await auth(req.headers.authorization);
      if (!key) return reply.code(401).send();
      const { id } = req.params as { id: string };
      const now = new Date();
      const params = queueManualParams({ id: randomUUID(), tenantId: key.tenant_id, clusterId: id, now, policy: { rate: null, timezone: 'UTC' }, since: null, idempotency: null });
      const { rows } = await pool.query(QUEUE_MANUAL_BACKUP_SQL, params);
      const verdict = rows[0]?.verdict;
      if (!verdict) return reply.code(404).send();
      if (verdict !== 'ok') return reply.code(409).send({ detail: verdict });
      return reply.code(202).send({ id: params[5], cluster_id: id, status: 'queued', components: rows[0].components });
    });
    // For comparison: the multi-statement transaction the service used before the ledger.
    bare.post('/v1/tx/clusters/:id/backups', async (req, reply) => {
      const key = await auth(req.headers.authorization);
      if (!key) return reply.code(401).send();
      const { id } = req.params as { id: string };
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const locked = await client.query('SELECT id FROM clusters WHERE id = $1 AND tenant_id = $2 FOR UPDATE', [id, key.tenant_id]);
        if (!locked.rowCount) {
          await client.query('ROLLBACK');
          return reply.code(404).send();
        }
        const cl = await client.query('SELECT c.status, c.components, p.manual_count, p.manual_rate_limit FROM clusters c JOIN policies p ON p.id = c.policy_id WHERE c.id = $1', [id]);
        const busy = await client.query(
          `SELECT (SELECT count(*) FROM backups WHERE cluster_id = $1 AND status IN ('queued','running')) + (SELECT count(*) FROM restores WHERE cluster_id = $1 AND status IN ('queued','running')) AS n`,
          [id],
        );
        if (Number(busy.rows[0].n) > 0 || cl.rows[0].status !== 'active') {
          await client.query('ROLLBACK');
          return reply.code(409).send({ detail: 'busy' });
        }
        const backupId = randomUUID();
        const row = await client.query(`INSERT INTO backups (id, tenant_id, cluster_id, trigger, status, components) VALUES ($1, $2, $3, 'manual', 'queued', '[]') RETURNING *`, [backupId, key.tenant_id, id]);
        await client.query(`UPDATE clusters SET active_job_id = $1, active_job_kind = 'backup' WHERE id = $2`, [backupId, id]);
        await client.query('COMMIT');
        return reply.code(202).send(row.rows[0]);
      } catch (err) {
        await client.query('ROLLBACK');
        throw err;
      } finally {
        client.release();
      }
    });
    await bare.listen({ port: 0, host: '127.0.0.1' });
    const base = `http://127.0.0.1:${(bare.server.address() as { port: number }).port}`;

    const listPath = `/v1/clusters/${listCluster}/backups?limit=50`;
    // Warm up both (JIT, pools, plans).
    await autocannon({ url: `${ours}${listPath}`, connections: 4, amount: 300, headers: { authorization: `Bearer ${token}` } });
    await autocannon({ url: `${base}${listPath}`, connections: 4, amount: 300, headers: { authorization: `Bearer ${token}` } });

    const baseList = await load(`${base}${listPath}`, { token });
    const ourList = await load(`${ours}${listPath}`, { token });
    const listRatio = ourList.rps / baseList.rps;
    const okList = listRatio >= 0.5 && ourList.codes['5xx'] === 0 && ourList.codes['2xx'] > 0;
    console.log(`GET backups?limit=50  baseline: ${baseList.rps.toFixed(0)} req/s, p99 ${baseList.p99} ms ${JSON.stringify(baseList.codes)}`);
    console.log(`GET backups?limit=50  service : ${ourList.rps.toFixed(0)} req/s, p99 ${ourList.p99} ms ${JSON.stringify(ourList.codes)}`);
    console.log(`GET backups?limit=50  throughput ratio ${listRatio.toFixed(2)} (target >= 0.5) ${verdict(okList)}; p99 ratio ${(ourList.p99 / Math.max(1, baseList.p99)).toFixed(2)}`);

    // POST across the other 199 clusters: the first request per cluster creates a backup (202),
    // later ones take the same locked decision path and answer 409 (one at a time).
    const paths = clusterIds.slice(1).map((id) => `/v1/clusters/${id}/backups`);
    const resetManual = async () => {
      await new Promise((r) => setTimeout(r, 1000)); // let requests still in flight finish
      await pool.query(`DELETE FROM backups WHERE trigger = 'manual'`);
      await pool.query(`UPDATE clusters SET active_job_id = NULL, active_job_kind = NULL, last_manual_at = NULL`);
    };
    const txPost = await load(base, { method: 'POST', token, paths: paths.map((p) => p.replace('/v1/', '/v1/tx/')) });
    await resetManual();
    const basePost = await load(base, { method: 'POST', token, paths });
    await resetManual();
    const ourPost = await load(ours, { method: 'POST', token, paths });
    const postRatio = ourPost.rps / basePost.rps;
    const okPost = postRatio >= 0.5 && ourPost.codes['5xx'] === 0 && ourPost.codes['2xx'] > 0;
    console.log(`POST backups baseline (same SQL: key lookup + one decision statement): ${basePost.rps.toFixed(0)} req/s, p99 ${basePost.p99} ms ${JSON.stringify(basePost.codes)}`);
    console.log(`POST backups baseline (old multi-statement transaction): ${txPost.rps.toFixed(0)} req/s, p99 ${txPost.p99} ms ${JSON.stringify(txPost.codes)}`);
    console.log(`POST backups service : ${ourPost.rps.toFixed(0)} req/s, p99 ${ourPost.p99} ms ${JSON.stringify(ourPost.codes)}`);
    console.log(`POST backups throughput ratio ${postRatio.toFixed(2)} (target >= 0.5) ${verdict(okPost)}; vs the old transaction ${(ourPost.rps / txPost.rps).toFixed(2)}; p99 ratio ${(ourPost.p99 / Math.max(1, basePost.p99)).toFixed(2)} (5xx: ${ourPost.codes['5xx']})`);
    if (!okList || !okPost) exitCode = 1;
    await app.close();
    await bare.close();
}

try {
  if (ONLY !== 'webhooks') await benchApi();
  if (ONLY === undefined || ONLY === 'webhooks') await benchWebhooks(env, pool);
} finally {
  await pool.end();
  await env.drop();
}
process.exit(exitCode);
