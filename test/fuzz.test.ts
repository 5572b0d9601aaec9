/**
 * Fuzzing driven by the served OpenAPI document: ~1,500 generated requests, mostly malformed
 * (wrong types, missing and extra fields, huge strings, deep nesting, odd ids and query values,
 * malformed JSON, wrong content types, missing or wrong credentials), spread over every operation.
 * No answer may be a 5xx; every error is problem+json (on POST /oauth/token only, an RFC 6749
 * section 5.2 error is accepted instead: SPEC section 9); nothing internal leaks; the service is
 * still healthy and usable afterwards.
 *
 * Reproducible: FUZZ_SEED (default below) fixes the generated requests; FUZZ_RUNS sets the total,
 * FUZZ_ONLY (a regular expression over "METHOD /path") restricts the operations, FUZZ_VERBOSE=1
 * prints every valid-looking request that was refused.
 */
import { createHash } from 'node:crypto';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, createKey, createTenant, startStack, waitFor, waitForBackup, type Stack } from './helpers/stack.js';
import { createTenantDatabase } from './helpers/db.js';
import {
  answerProblems,
  authProbes,
  buildRequest,
  describeRequest,
  operationsOf,
  requestArb,
  shuffle,
  type FuzzContext,
  type OpenApiDoc,
  type Operation,
  type ReqSpec,
} from './helpers/fuzz.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20_240_917);
const TOTAL = Number(process.env.FUZZ_RUNS ?? 1_500);
const MIN_PER_OPERATION = 40;
const CONCURRENCY = 8;
const REQUEST_TIMEOUT_MS = 15_000;

let s: Stack;
let ctx: FuzzContext;
let tokens: FuzzContext['tokens'];
let scratch: Awaited<ReturnType<typeof createTenantDatabase>> | undefined;
let doc: OpenApiDoc;
let receiver: Server | undefined;

async function ok<T = any>(method: string, url: string, token: string, body?: unknown, status = [200, 201, 202]): Promise<T> {
  const res = await s.request(method, url, { token, ...(body !== undefined && { body }) });
  if (!status.includes(res.status)) throw new Error(`fixture ${method} ${url}: ${res.status} ${res.text}`);
  return res.body as T;
}

/** A cluster with a directory component under the given policy, and a manual backup of it (queued). */
async function clusterWithBackup(token: string, name: string, policyId: string, deletionProtection = false) {
  const cluster = await ok('POST', '/v1/clusters', token, {
    name,
    policy_id: policyId,
    deletion_protection: deletionProtection,
    components: [{ name: 'files', type: 'directory', config: { path: 'app' } }],
  });
  const backup = await ok('POST', `/v1/clusters/${cluster.id}/backups`, token);
  return { clusterId: cluster.id as string, backupId: backup.id as string };
}

beforeAll(async () => {
  // A receiver for webhooks (POST /v1/webhooks/{id}/test really sends), which only it may reach.
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(204).end());
  });
  receiver = server;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const hookUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/fuzz`;
  s = await startStack({ env: { WEBHOOK_ALLOWED_HOSTS: '127.0.0.1', WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_TIMEOUT_MS: '2000' } }); // with a worker: backups really run
  scratch = await createTenantDatabase(); // for postgres components: on the tenants' server, never the service's own

  const a = await createTenant(s, 'fuzz-tenant');
  const admin = a.adminToken;
  // Each tenant's trees live in its own folder, DATA_ROOT/<data_dir>.
  const seedTree = async (home: string) => {
    await mkdir(path.join(home, 'app', 'nested'), { recursive: true });
    await writeFile(path.join(home, 'app', 'index.html'), '<h1>fuzz</h1>'.repeat(100));
    await writeFile(path.join(home, 'app', 'nested', 'data.bin'), Buffer.alloc(10_000, 3));
    await writeFile(path.join(home, 'app', 'nested', 'ünï cödé 😀.txt'), 'unicode name');
    await mkdir(path.join(home, 'empty'), { recursive: true });
  };
  await seedTree(a.dir);
  await writeFile(path.join(a.dir, 'a-file.txt'), 'not a directory');
  // Outside DATA_ROOT but harmless, should a bad path ever be accepted and restored into.
  const outside = path.join(path.dirname(s.dataRoot), 'outside');
  await mkdir(outside, { recursive: true });
  await symlink(outside, path.join(a.dir, 'escape'));
  const operator = await createKey(s, admin, 'operator');
  const viewer = await createKey(s, admin, 'viewer');
  const revokedKey = await ok('POST', '/v1/api-keys', admin, { name: 'revoked', role: 'admin' });
  await ok('DELETE', `/v1/api-keys/${revokedKey.id}`, admin, undefined, [200, 202, 204]);
  const spareKeys = await Promise.all([1, 2, 3].map((i) => ok('POST', '/v1/api-keys', admin, { name: `spare ${i}`, role: 'viewer' })));
  // OAuth2 API clients: two whose credentials the token requests use (an admin and a viewer, so
  // that scopes above the role are tried too), two that DELETE may consume.
  const client = (token: string, name: string, role: string) => ok<{ id: string; client_secret: string }>('POST', '/v1/api-clients', token, { name, role });
  const [mainClient, viewerClient] = await Promise.all([client(admin, 'fuzz main', 'admin'), client(admin, 'fuzz viewer', 'viewer')]);
  const spareClients = await Promise.all([1, 2].map((i) => client(admin, `spare ${i}`, 'operator')));
  const webhook = (token: string, name: string) => ok<{ id: string }>('POST', '/v1/webhooks', token, { url: `${hookUrl}/${name}`, events: ['backup.completed'], description: name });
  const [mainWebhook, ...spareWebhooks] = await Promise.all(['main', 'spare-1', 'spare-2'].map((n) => webhook(admin, n)));

  const mainPolicy = await ok('POST', '/v1/policies', admin, { name: 'fuzz main', schedule: [{ interval: '1d', count: 7 }, { interval: '1w', count: 4 }] });
  const victimPolicy = await ok('POST', '/v1/policies', admin, { name: 'fuzz victims', manual_rate_limit: null });
  const sparePolicies = await Promise.all([1, 2].map((i) => ok('POST', '/v1/policies', admin, { name: `spare ${i}` })));

  const b = await createTenant(s, 'fuzz-foreign');
  await seedTree(b.dir);
  await mkdir(path.join(b.dir, 'only-theirs'), { recursive: true });
  await symlink(path.join(b.dir, 'app'), path.join(a.dir, 'into-foreign'));
  const foreignDir = path.basename(b.dir);
  const foreignPolicy = await ok('POST', '/v1/policies', b.adminToken, { name: 'foreign' });
  const foreignClient = await client(b.adminToken, 'foreign', 'admin');
  const foreignWebhook = await webhook(b.adminToken, 'foreign');

  const [main, v1, v2, v3, foreign] = await Promise.all([
    clusterWithBackup(admin, 'fuzz main', mainPolicy.id, true),
    clusterWithBackup(admin, 'victim 1', victimPolicy.id),
    clusterWithBackup(admin, 'victim 2', victimPolicy.id),
    clusterWithBackup(admin, 'victim 3', victimPolicy.id),
    clusterWithBackup(b.adminToken, 'foreign', foreignPolicy.id),
  ]);
  const guarded = await ok('POST', '/v1/clusters', admin, { name: 'guarded', deletion_protection: true, components: [{ name: 'files', type: 'directory', config: { path: 'empty' } }] });
  for (const [t, c] of [[admin, main], [admin, v1], [admin, v2], [admin, v3], [b.adminToken, foreign]] as const) {
    const done = await waitForBackup(s, t, c.clusterId, c.backupId);
    expect(done.status, JSON.stringify(done.error)).toBe('completed');
  }

  // The document the fuzzing is driven by (served by the app, not the committed copy).
  const docRes = await s.request('GET', '/openapi.json');
  expect(docRes.status).toBe(200);
  doc = docRes.body as OpenApiDoc;

  // A finished restore, when the API has restores, so that restore ids reach deep code too.
  const restoreIds: string[] = [];
  const restorePath = Object.keys(doc.paths).find((p) => /\/restore$/.test(p) && doc.paths[p]?.post);
  if (restorePath) {
    const url = restorePath.replace('{id}', main.clusterId).replace('{backup_id}', main.backupId);
    const restore = await ok('POST', url, admin, {});
    await waitFor(
      async () => {
        const r = await s.request('GET', `/v1/clusters/${main.clusterId}/restores/${restore.id}`, { token: admin });
        return ['completed', 'failed'].includes(r.body?.status);
      },
      30_000,
      'the fixture restore',
    );
    restoreIds.push(restore.id);
  }

  // Real cursors, so that valid pagination requests are generated too.
  const cursors: string[] = [];
  for (const url of ['/v1/policies?limit=1', '/v1/clusters?limit=1', '/v1/api-keys?limit=1', '/v1/api-clients?limit=1', `/v1/clusters/${main.clusterId}/backups?limit=1`]) {
    const page = await ok('GET', url, admin);
    if (page.next_cursor) cursors.push(page.next_cursor);
  }
  const tenantsPage = await ok('GET', '/v1/tenants?limit=1', ADMIN_TOKEN);
  if (tenantsPage.next_cursor) cursors.push(tenantsPage.next_cursor);

  tokens = { platform: ADMIN_TOKEN, admin, operator, viewer, revoked: revokedKey.token, foreign: b.adminToken };
  ctx = {
    tokens,
    ownIds: {
      clusters: [main.clusterId, v1.clusterId, v2.clusterId, v3.clusterId, guarded.id],
      backups: [main.backupId, v1.backupId, v2.backupId, v3.backupId],
      policies: [mainPolicy.id, victimPolicy.id, ...sparePolicies.map((p) => p.id)],
      'api-keys': spareKeys.map((k) => k.id),
      'api-clients': [mainClient.id, viewerClient.id, ...spareClients.map((c) => c.id)],
      tenants: [a.tenantId],
      restores: restoreIds,
      webhooks: [mainWebhook!.id, ...spareWebhooks.map((w) => w.id)],
    },
    foreignIds: { clusters: [foreign.clusterId], backups: [foreign.backupId], policies: [foreignPolicy.id], 'api-clients': [foreignClient.id], tenants: [b.tenantId], webhooks: [foreignWebhook.id] },
    // `components`: a component's name in the path (the archive of a backup's component).
    mainBinding: { clusters: main.clusterId, backups: main.backupId, components: 'files', policies: mainPolicy.id, 'api-keys': spareKeys[0]!.id, 'api-clients': mainClient.id, tenants: a.tenantId, webhooks: mainWebhook!.id, ...(restoreIds[0] && { restores: restoreIds[0] }) },
    deleteBindings: [
      { clusters: v1.clusterId, backups: v1.backupId },
      { clusters: v2.clusterId, backups: v2.backupId },
      { clusters: v3.clusterId, backups: v3.backupId },
      { clusters: guarded.id }, // deletion-protected (and never patched): 409
      { policies: victimPolicy.id }, // in use by the victims: 409 until they are gone
      ...sparePolicies.map((p) => ({ policies: p.id as string })),
      ...spareKeys.map((k) => ({ 'api-keys': k.id as string })),
      ...spareClients.map((c) => ({ 'api-clients': c.id })),
      ...spareWebhooks.map((w) => ({ webhooks: w.id })),
    ],
    ownBindings: [
      { clusters: main.clusterId, backups: main.backupId, components: 'files', policies: mainPolicy.id, 'api-keys': spareKeys[0]!.id, 'api-clients': mainClient.id, webhooks: mainWebhook!.id, ...(restoreIds[0] && { restores: restoreIds[0] }) },
      { clusters: v1.clusterId, backups: v1.backupId, components: 'files', policies: victimPolicy.id, 'api-keys': spareKeys[1]!.id, 'api-clients': viewerClient.id },
      { clusters: v2.clusterId, backups: v2.backupId, components: 'files', policies: sparePolicies[0]!.id },
      { clusters: guarded.id },
    ],
    foreignBindings: [{ clusters: foreign.clusterId, backups: foreign.backupId, components: 'files', policies: foreignPolicy.id, 'api-clients': foreignClient.id, webhooks: foreignWebhook.id }],
    componentNames: ['files'],
    dirPaths: ['app', 'app/nested', 'empty'],
    oddDirPaths: ['./app', 'app/../app', 'missing', 'a-file.txt', 'escape', 'escape/x', '../outside', outside, '/nonexistent-fuzz-dir', path.join(a.dir, 'app'), `../${foreignDir}/app`, 'only-theirs', 'into-foreign', 'into-foreign/nested', '.', '', 'app\u0000x', 'a'.repeat(1024), 'a'.repeat(1025), '~/x', 'app/'],
    pgUrls: [scratch.url],
    oddPgUrls: [
      'postgresql://postgres@127.0.0.1:1/nothing',
      'postgres://user:secret@127.0.0.1:1/db?sslmode=disable',
      'postgresql://',
      'postgresql://%zz@127.0.0.1/db',
      'mysql://root@127.0.0.1/db',
      'not a url',
      '',
      'x'.repeat(2049),
    ],
    cursors,
    apiClients: [mainClient, viewerClient].map((c) => ({ id: c.id, secret: c.client_secret })),
    foreignApiClients: [{ id: foreignClient.id, secret: foreignClient.client_secret }],
  };
}, 120_000);

afterAll(async () => {
  await s?.close();
  await scratch?.drop();
  receiver?.close();
}, 60_000);

interface Outcome {
  spec: ReqSpec;
  summary: string;
  status: number;
  problems: string[];
  body: string;
  requestId: string;
}

/** What the service logged for a request at error level (the cause of a 5xx). */
function loggedCause(requestId: string): string {
  if (!requestId) return '';
  for (const line of s.logs().split('\n')) {
    if (!line.includes(requestId)) continue;
    try {
      const entry = JSON.parse(line) as { level?: number; request_id?: string; msg?: string; err?: { type?: string; code?: string; message?: string } };
      if (entry.request_id === requestId && (entry.level ?? 0) >= 50)
        return `${entry.msg ?? ''}: ${entry.err?.type ?? ''} ${entry.err?.code ?? ''} ${(entry.err?.message ?? '').replace(/\s+/g, ' ').slice(0, 400)}`;
    } catch {
      // not a JSON line
    }
  }
  return '';
}

async function send(op: Operation, spec: ReqSpec): Promise<Outcome> {
  const req = buildRequest(op, spec);
  const summary = describeRequest(spec, req);
  let timer: NodeJS.Timeout | undefined;
  try {
    const res = await Promise.race([
      s.app.inject({ method: req.method as 'GET', url: req.url, headers: req.headers, ...(req.payload !== undefined && { payload: req.payload }) }),
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)), REQUEST_TIMEOUT_MS))),
    ]);
    const requestId = String(res.headers['x-request-id'] ?? '');
    return { spec, summary, status: res.statusCode, problems: answerProblems(op.path, { status: res.statusCode, headers: res.headers, text: res.body }, req), body: res.body, requestId };
  } catch (err) {
    return { spec, summary, status: -1, problems: [`request failed: ${(err as Error).message}`], body: '', requestId: '' };
  } finally {
    clearTimeout(timer);
  }
}

/** Everything either tenant can read, through every GET of the document its ids fit, with its own key (volatile fields dropped). */
async function tenantViews(ops: Operation[]): Promise<Record<string, unknown>> {
  const views: Record<string, unknown> = {};
  const owners = [
    { who: 'A', token: tokens.admin, bindings: [{}, ...(ctx.ownBindings ?? [])] },
    { who: 'B', token: tokens.foreign, bindings: [{}, ...(ctx.foreignBindings ?? [])] },
  ];
  for (const op of ops) {
    if (op.method !== 'GET' || !op.secured || op.path === '/v1/audit-events') continue;
    const pathParams = op.params.filter((p) => p.in === 'path');
    for (const { who, token, bindings } of owners) {
      for (const b of bindings as Record<string, string>[]) {
        if (!pathParams.every((p) => p.resource && b[p.resource])) continue;
        if (!pathParams.length && b !== bindings[0]) continue;
        const url = op.path.replace(/\{([^}]+)\}/g, (_, name: string) => b[pathParams.find((p) => p.name === name)!.resource!]!) + (op.params.some((p) => p.name === 'limit') ? '?limit=100' : '');
        const res = await s.request('GET', url, { token: op.path.startsWith('/v1/tenants') ? ADMIN_TOKEN : token });
        // Not every answer is JSON (a component's archive): those are compared by their bytes' hash.
        const json = String(res.headers['content-type'] ?? '').includes('json');
        views[`${who} ${url}`] = { status: res.status, body: json ? JSON.parse(res.text, (k, v) => (k === 'last_used_at' ? undefined : v)) : createHash('sha256').update(res.text).digest('hex') };
      }
    }
  }
  return views;
}

/** Audit events of tenant A (newest first), every page. */
async function auditOfA(): Promise<{ id: string; actor: { key_id: string | null } }[]> {
  const out: { id: string; actor: { key_id: string | null } }[] = [];
  let cursor: string | null = null;
  do {
    const page: { items: { id: string; actor: { key_id: string | null } }[]; next_cursor: string | null } = await ok('GET', `/v1/audit-events?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, tokens.admin);
    out.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return out;
}

const sameAnswer = (o: Outcome) => `${o.status} ${o.body.replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi, '<id>')}`;

describe('OpenAPI-driven fuzzing', () => {
  // Runs first, while every fixture of both tenants is intact.
  it(
    'auth oracle: no, revoked or garbage credentials, a viewer on a mutation, the wrong kind of token and the other tenant\'s ids never succeed; a foreign id answers 404 exactly like a missing one; nothing changes',
    async () => {
      const ops = operationsOf(doc);
      const probes = ops.flatMap((op, i) => authProbes(op, ctx, SEED + 31 + i * 7919));
      for (const op of ops.filter((o) => o.secured && o.params.some((p) => p.in === 'path') && !o.path.startsWith('/v1/tenants')))
        expect(probes.some((p) => p.spec.op === op.key && p.kind === 'foreign-token'), `${op.key} has foreign-token probes`).toBe(true);
      const byKey = new Map(ops.map((o) => [o.key, o]));
      const viewsBefore = await tenantViews(ops);
      const auditBefore = new Set((await auditOfA()).map((e) => e.id));

      const failures: string[] = [];
      const statuses: Record<string, Record<number, number>> = {};
      let next = 0;
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          while (next < probes.length) {
            const probe = probes[next++]!;
            const op = byKey.get(probe.spec.op)!;
            const got = await send(op, probe.spec);
            const tally = (statuses[probe.kind] ??= {});
            tally[got.status] = (tally[got.status] ?? 0) + 1;
            const why = (m: string) => failures.push(`${probe.kind}: ${m} <- ${got.summary}\n    -> ${got.status} ${got.body.slice(0, 200)}`);
            if (got.problems.length) why(got.problems.join('; '));
            if (got.status >= 200 && got.status < 300) why('succeeded');
            else if (got.status < 0) why('no answer');
            if (probe.expect === 'foreign') {
              const control = await send(op, probe.control!);
              if (sameAnswer(control) !== sameAnswer(got)) why(`answers unlike a missing id (${control.status} ${control.body.slice(0, 200)})`);
              // 404, unless the body is refused whatever the path names (then the control is refused alike, checked above).
              else if (got.status !== 404 && (probe.kind === 'foreign-token' || got.status !== 422)) why('a foreign id must answer 404');
            }
          }
        }),
      );
      console.log(`auth oracle: ${probes.length} probes\n${Object.entries(statuses).map(([k, t]) => `  ${k.padEnd(20)} ${Object.entries(t).map(([st, n]) => `${st}:${n}`).join(' ')}`).join('\n')}`);
      expect(failures, 'auth oracle').toEqual([]);

      // Nothing of either tenant changed: every view re-read with its owner's key is the same.
      expect(await tenantViews(ops)).toEqual(viewsBefore);
      // Tenant A's audit log only gained A's own (failed) requests, none by another tenant's key.
      const aKeys = new Set<string>((await ok('GET', '/v1/api-keys?limit=100', tokens.admin)).items.map((k: { id: string }) => k.id));
      const added = (await auditOfA()).filter((e) => !auditBefore.has(e.id));
      expect(added.filter((e) => !e.actor.key_id || !aKeys.has(e.actor.key_id))).toEqual([]);
    },
    60_000,
  );

  it(
    'answers >= 1,000 malformed requests over every operation without a 5xx, always with problem+json errors, and stays healthy',
    async () => {
      // FUZZ_ONLY (a regular expression over "METHOD /path") narrows the run while debugging one operation.
      const only = process.env.FUZZ_ONLY ? new RegExp(process.env.FUZZ_ONLY) : null;
      const ops = operationsOf(doc).filter((o) => !only || only.test(o.key));
      expect(ops.length).toBeGreaterThan(only ? 0 : 10);
      const byKey = new Map(ops.map((o) => [o.key, o]));

      // Generate: the same number of requests per operation, each operation with its own seed.
      const perOp = Math.max(MIN_PER_OPERATION, Math.ceil(TOTAL / ops.length));
      const specs = shuffle(
        ops.flatMap((op, i) => fc.sample(requestArb(op, ctx), { seed: SEED + i * 7919, numRuns: perOp })),
        SEED,
      );
      if (!only) expect(specs.length).toBeGreaterThanOrEqual(1_000);

      // Send, CONCURRENCY at a time.
      const outcomes: Outcome[] = [];
      let next = 0;
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          while (next < specs.length) {
            const spec = specs[next++]!;
            outcomes.push(await send(byKey.get(spec.op)!, spec));
          }
        }),
      );

      // Report.
      const perOperation = new Map<string, { total: number; statuses: Record<number, number> }>();
      for (const o of outcomes) {
        const e = perOperation.get(o.spec.op) ?? { total: 0, statuses: {} };
        e.total++;
        e.statuses[o.status] = (e.statuses[o.status] ?? 0) + 1;
        perOperation.set(o.spec.op, e);
      }
      console.log(
        `fuzz: ${outcomes.length} requests (seed ${SEED}) over ${ops.length} operations\n` +
          [...perOperation]
            .map(([k, e]) => `  ${k.padEnd(52)} ${String(e.total).padStart(4)}  ${Object.entries(e.statuses).map(([st, n]) => `${st}:${n}`).join(' ')}`)
            .join('\n'),
      );
      if (process.env.FUZZ_VERBOSE)
        for (const o of outcomes.filter((x) => !x.spec.tags.length && x.status >= 400)) console.log(`valid-looking request refused: ${o.summary}\n  -> ${o.status} ${o.body.slice(0, 300)}`);
      const failures = outcomes.filter((o) => o.problems.length);
      if (failures.length) {
        // Group by what went wrong (problems + framework error code), with one example each.
        const groups = new Map<string, { ops: Set<string>; count: number; example: Outcome }>();
        for (const f of failures) {
          let code = '';
          try {
            const b = JSON.parse(f.body) as { code?: unknown; type?: unknown };
            code = String(b.code ?? b.type ?? '');
          } catch {
            // not JSON
          }
          // For a 5xx, the logged cause (digits and hex normalised) tells distinct faults apart.
          const cause = f.status >= 500 ? loggedCause(f.requestId).replace(/[0-9a-f]{8}-[0-9a-f-]{27}|\d+/gi, '#').slice(0, 160) : '';
          const key = `${f.status} ${code} :: ${f.problems.join('; ')}${cause ? ` :: logged: ${cause}` : ''}`;
          const g = groups.get(key) ?? { ops: new Set<string>(), count: 0, example: f };
          g.ops.add(f.spec.op);
          g.count++;
          groups.set(key, g);
        }
        console.log(
          `fuzz: ${failures.length} bad answers, ${groups.size} distinct:\n` +
            [...groups]
              .map(
                ([key, g]) =>
                  `- ${key}\n    ${g.count}x over ${g.ops.size} operation(s): ${[...g.ops].join(', ')}\n    example:  ${g.example.summary}\n    response: ${g.example.status} ${g.example.body.slice(0, 300)}${g.example.status >= 500 ? `\n    logged:   ${loggedCause(g.example.requestId)}` : ''}`,
              )
              .join('\n'),
        );
      }

      for (const op of ops) expect(perOperation.get(op.key)?.total ?? 0, op.key).toBeGreaterThanOrEqual(MIN_PER_OPERATION);
      expect(outcomes.length).toBe(specs.length);
      // Enough requests got through to the handlers (fixtures, tokens and ids are right).
      expect(outcomes.filter((o) => o.status >= 200 && o.status < 300).length).toBeGreaterThan(outcomes.length * 0.1);
      // Soft, so that the health checks below still run and report.
      expect
        .soft(
          failures.filter((f) => f.status >= 500 || f.status < 0).map((f) => `${f.status} ${f.summary}`),
          'no 5xx answers',
        )
        .toEqual([]);
      expect
        .soft(
          failures.map((f) => `${f.problems.join('; ')} <- ${f.summary}`),
          'every error is problem+json and leaks nothing',
        )
        .toEqual([]);

      // Still healthy and usable.
      expect((await s.request('GET', '/healthz')).status).toBe(200);
      const ready = await s.request('GET', '/readyz');
      expect(ready.status, ready.text).toBe(200);
      const clusters = await s.request('GET', '/v1/clusters', { token: tokens.admin });
      expect(clusters.status).toBe(200);
      expect(clusters.body.items.length).toBeGreaterThan(0);
      const mainCluster = await s.request('GET', `/v1/clusters/${ctx.mainBinding.clusters}`, { token: tokens.viewer });
      expect(mainCluster.status, mainCluster.text).toBe(200);
      const policy = await s.request('POST', '/v1/policies', { token: tokens.admin, body: { name: 'after the fuzz', schedule: [{ interval: '1d', count: 3 }] } });
      expect(policy.status, policy.text).toBe(201);
      const got = await s.request('GET', `/v1/policies/${policy.body.id}`, { token: tokens.viewer });
      expect(got.status).toBe(200);
      const backups = await s.request('GET', `/v1/clusters/${ctx.mainBinding.clusters}/backups`, { token: tokens.viewer });
      expect(backups.status).toBe(200);
    },
    120_000,
  );
});
