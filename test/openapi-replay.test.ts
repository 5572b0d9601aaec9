/**
 * The document and the server cannot drift apart: real requests, made with the typed client
 * (src/client) against a started service, are checked against openapi/openapi.json by
 * openapi-backend (the request: path, query, headers, body) and by Ajv with the document's own
 * schemas (the response: a declared status, a declared media type, the body's schema, the
 * declared headers' values and the presence of the required ones). Every operation of the
 * document must be replayed at least once: a new route without a case here fails this file.
 *
 * To cover a new operation, add a case to `cases` below (in the order the flow needs).
 */
import { randomUUID } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { createServer, type Server } from 'node:http';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OpenAPIBackend, type Operation } from 'openapi-backend';
import { createApiClient, type ApiClient } from '../src/client/index.js';
import { DOCUMENT_PATH, documentAjv } from './helpers/openapi.js';
import { ADMIN_TOKEN, startStack, waitFor, type Stack } from './helpers/stack.js';

const METRICS_TOKEN = 'replay-metrics-token-0123456789';
const doc = JSON.parse(readFileSync(DOCUMENT_PATH, 'utf8')) as { paths: Record<string, Record<string, { operationId?: string }>> };

type Json = Record<string, any>;

interface Exchange {
  method: string;
  path: string;
  operationId: string | null;
  status: number;
  requestValid: boolean;
  requestErrors: string[];
  /** Disagreements of the response with the document. */
  problems: string[];
  headers: Headers;
  body: unknown;
}

/** openapi-backend over the committed document; request validation only (it would read only application/json responses). */
// Its own meta-validation of the document knows OpenAPI 3.0 only, hence `quick` (redocly lints the 3.1 document in CI).
const api = new OpenAPIBackend({
  definition: structuredClone(doc) as never,
  quick: true,
  customizeAjv: (_original, ajvOpts) => documentAjv(ajvOpts),
});
const ajv = documentAjv();
const compiled = new WeakMap<object, ReturnType<typeof ajv.compile>>();
function schemaErrors(schema: object, value: unknown): string[] {
  let validate = compiled.get(schema);
  if (!validate) compiled.set(schema, (validate = ajv.compile(schema)));
  return validate(value) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message}`);
}

const isJson = (type: string) => type === 'application/json' || type.endsWith('+json');

function parseRequestBody(text: string | undefined, type: string | undefined): unknown {
  if (text === undefined || text === '') return undefined;
  if (type === 'application/x-www-form-urlencoded') return Object.fromEntries(new URLSearchParams(text));
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** Checks one request and its response against the document. */
function check(request: { method: string; url: URL; headers: Headers; body: string | undefined }, response: { status: number; headers: Headers; bytes: Buffer }): Exchange {
  const headers = Object.fromEntries(request.headers);
  const req = {
    method: request.method.toLowerCase(),
    path: request.url.pathname,
    query: Object.fromEntries(request.url.searchParams),
    headers,
    body: parseRequestBody(request.body, headers['content-type']?.split(';')[0]),
  };
  const problems: string[] = [];
  const op = api.matchOperation(req) as (Operation & Json) | undefined;
  const typeOf = (h: Headers) => h.get('content-type')?.split(';')[0]!.trim();
  let body: unknown = response.bytes.toString('utf8');
  if (isJson(typeOf(response.headers) ?? '') && response.bytes.length) body = JSON.parse(response.bytes.toString('utf8'));
  const exchange: Exchange = { method: req.method, path: req.path, operationId: op?.operationId ?? null, status: response.status, requestValid: false, requestErrors: [], problems, headers: response.headers, body };
  if (!op) {
    problems.push(`no operation of the document is ${req.method.toUpperCase()} ${req.path}`);
    return exchange;
  }
  const v = api.validateRequest(req, op.operationId!);
  exchange.requestErrors = (v.errors ?? []).map((e) => `${e.instancePath} ${e.message}`);
  // openapi-backend does not look at the media type of a request body: the document does.
  const sentType = headers['content-type']?.split(';')[0]!.trim();
  const accepted = (op.requestBody as Json | undefined)?.content as Json | undefined;
  if (req.body !== undefined && !(sentType && accepted?.[sentType])) exchange.requestErrors.push(`request content type ${sentType ?? '(none)'} is not declared`);
  exchange.requestValid = exchange.requestErrors.length === 0;

  const declared = op.responses?.[String(response.status)] as Json | undefined;
  if (!declared) {
    problems.push(`status ${response.status} is not declared (declared: ${Object.keys(op.responses ?? {}).join(', ')})`);
    return exchange;
  }
  const type = typeOf(response.headers);
  if (declared.content) {
    const media = type ? (declared.content[type] as Json | undefined) : undefined;
    if (!media) problems.push(`content type ${type ?? '(none)'} is not declared (declared: ${Object.keys(declared.content).join(', ')})`);
    else if (isJson(type!)) problems.push(...schemaErrors(media.schema, body).map((e) => `body ${e}`));
    else if (media.schema?.format !== 'binary') problems.push(...schemaErrors(media.schema, body).map((e) => `body ${e}`));
  } else if (response.bytes.length > 0) problems.push(`a body is sent where the document declares none`);
  const hv = api.validateResponseHeaders(Object.fromEntries(response.headers), op.operationId!, { statusCode: response.status });
  problems.push(...(hv.errors ?? []).map((e) => `header ${e.instancePath} ${e.message}`));
  for (const [name, h] of Object.entries<Json>(declared.headers ?? {})) {
    if (h.required && !response.headers.has(name)) problems.push(`required header ${name} is not sent`);
  }
  return exchange;
}

let s: Stack;
let baseUrl: string;
const exchanges: Exchange[] = [];

/** globalThis.fetch, recording and checking every exchange. */
async function checkedFetch(input: Request): Promise<Response> {
  const body = input.body ? await input.clone().text() : undefined;
  const res = await fetch(input);
  const bytes = Buffer.from(await res.clone().arrayBuffer());
  exchanges.push(check({ method: input.method, url: new URL(input.url), headers: input.headers, body }, { status: res.status, headers: res.headers, bytes }));
  return res;
}

/** A request the typed client cannot make (a wrong content type, a malformed body, a form). */
function raw(method: string, url: string, init: { headers?: Record<string, string>; body?: string } = {}) {
  return checkedFetch(new Request(new URL(url, baseUrl), { method, headers: init.headers ?? {}, ...(init.body !== undefined && { body: init.body }) }));
}

/** State the cases pass along. */
interface Ctx {
  anon: ApiClient;
  platform: ApiClient;
  admin: ApiClient;
  viewer: ApiClient;
  adminToken: string;
  tenantDir: string;
  viewerKeyId: string;
  policyId: string;
  clusterId: string;
  backupId: string;
  restoreId: string;
  clientId: string;
  clientSecret: string;
  accessToken: string;
  webhookId: string;
  /** A receiver on 127.0.0.1 (WEBHOOK_ALLOWED_HOSTS lets the service reach it). */
  receiverUrl: string;
}
const ctx = {} as Ctx;
const client = (token?: string) => createApiClient({ baseUrl, ...(token !== undefined && { token }), fetch: checkedFetch });
const uuid = () => randomUUID();

interface Case {
  name: string;
  /** The operation and status the case's exchanges must include. */
  op: string;
  status: number;
  /** The request breaks the document on purpose (the validator must refuse it too). */
  invalidRequest?: boolean;
  run(c: Ctx): Promise<unknown>;
  /** Further checks of the answer (the last exchange of `op`). */
  then?(x: Exchange): void;
}

const waitBackup = (statuses: string[]) =>
  waitFor(async () => {
    const r = await ctx.admin.GET('/v1/clusters/{id}/backups/{backup_id}', { params: { path: { id: ctx.clusterId, backup_id: ctx.backupId } } });
    return r.data && statuses.includes(r.data.status) ? r.data : null;
  }, 30_000, 'the backup');

const problemDetail = (x: Exchange) => (x.body as { detail?: string }).detail;

const cases: Case[] = [
  { name: 'liveness', op: 'getLiveness', status: 200, run: (c) => c.anon.GET('/healthz') },
  { name: 'readiness', op: 'getReadiness', status: 200, run: (c) => c.anon.GET('/readyz') },
  { name: 'metrics without the token', op: 'getMetrics', status: 401, run: (c) => c.anon.GET('/metrics') },
  { name: 'metrics', op: 'getMetrics', status: 200, run: () => client(METRICS_TOKEN).GET('/metrics', { parseAs: 'text' }) },
  { name: 'tenant creation with a wrong token', op: 'createTenant', status: 401, run: (c) => client('wrong-token').POST('/v1/tenants', { body: { name: 'nope' } }) },
  {
    name: 'tenant creation',
    op: 'createTenant',
    status: 201,
    run: async (c) => {
      const r = await c.platform.POST('/v1/tenants', { body: { name: `replay ${uuid()}` } });
      c.adminToken = r.data!.api_key.token;
      c.admin = client(c.adminToken);
      c.tenantDir = path.join(s.dataRoot, r.data!.tenant.data_dir);
    },
  },
  { name: 'tenants', op: 'listTenants', status: 200, run: (c) => c.platform.GET('/v1/tenants', { params: { query: { limit: 5 } } }) },
  {
    name: 'api key creation',
    op: 'createApiKey',
    status: 201,
    run: async (c) => {
      const r = await c.admin.POST('/v1/api-keys', { body: { name: 'viewer', role: 'viewer' } });
      c.viewerKeyId = r.data!.id;
      c.viewer = client(r.data!.token);
    },
  },
  { name: 'api keys', op: 'listApiKeys', status: 200, run: (c) => c.admin.GET('/v1/api-keys') },
  {
    name: 'policy creation',
    op: 'createPolicy',
    status: 201,
    run: async (c) => {
      const r = await c.admin.POST('/v1/policies', { body: { name: 'replay', schedule: [{ interval: '1d', count: 3 }] } });
      c.policyId = r.data!.id;
    },
  },
  { name: 'policy creation with a taken name', op: 'createPolicy', status: 409, run: (c) => c.admin.POST('/v1/policies', { body: { name: 'replay' } }) },
  { name: 'policy creation with an empty name', op: 'createPolicy', status: 422, invalidRequest: true, run: (c) => c.admin.POST('/v1/policies', { body: { name: '' } }) },
  {
    name: 'policy creation as a form',
    op: 'createPolicy',
    status: 415,
    invalidRequest: true,
    run: (c) => raw('POST', '/v1/policies', { headers: { authorization: `Bearer ${c.adminToken}`, 'content-type': 'application/x-www-form-urlencoded' }, body: 'name=x' }),
    then: (x) => expect(problemDetail(x)).toBe('unsupported content type "application/x-www-form-urlencoded"; expected application/json'),
  },
  {
    name: 'policy creation with malformed JSON',
    op: 'createPolicy',
    status: 400,
    invalidRequest: true,
    run: (c) => raw('POST', '/v1/policies', { headers: { authorization: `Bearer ${c.adminToken}`, 'content-type': 'application/json' }, body: '{"name":' }),
  },
  { name: 'policies', op: 'listPolicies', status: 200, run: (c) => c.admin.GET('/v1/policies') },
  { name: 'a policy', op: 'getPolicy', status: 200, run: (c) => c.admin.GET('/v1/policies/{id}', { params: { path: { id: c.policyId } } }) },
  { name: 'policy change', op: 'updatePolicy', status: 200, run: (c) => c.admin.PATCH('/v1/policies/{id}', { params: { path: { id: c.policyId } }, body: { max_backups: 5 } }) },
  { name: 'policy deletion', op: 'deletePolicy', status: 204, run: (c) => c.admin.DELETE('/v1/policies/{id}', { params: { path: { id: c.policyId } } }) },
  {
    name: 'cluster creation',
    op: 'createCluster',
    status: 201,
    run: async (c) => {
      await mkdir(path.join(c.tenantDir, 'src', 'sub'), { recursive: true });
      await writeFile(path.join(c.tenantDir, 'src', 'a.txt'), 'alpha\n');
      await writeFile(path.join(c.tenantDir, 'src', 'sub', 'b.txt'), 'beta\n');
      const r = await c.admin.POST('/v1/clusters', { body: { name: 'replay', components: [{ name: 'files', type: 'directory', config: { path: 'src' } }] } });
      c.clusterId = r.data!.id;
    },
    then: (x) => expect(x.headers.get('location')).toMatch(/^\/v1\/clusters\/[0-9a-f-]{36}$/),
  },
  {
    name: 'cluster creation with a taken name',
    op: 'createCluster',
    status: 409,
    run: (c) => c.admin.POST('/v1/clusters', { body: { name: 'replay', components: [{ name: 'files', type: 'directory', config: { path: 'src' } }] } }),
  },
  { name: 'cluster creation without components', op: 'createCluster', status: 422, invalidRequest: true, run: (c) => c.admin.POST('/v1/clusters', { body: { name: 'empty', components: [] } }) },
  { name: 'clusters', op: 'listClusters', status: 200, run: (c) => c.viewer.GET('/v1/clusters') },
  { name: 'a cluster', op: 'getCluster', status: 200, run: (c) => c.viewer.GET('/v1/clusters/{id}', { params: { path: { id: c.clusterId } } }) },
  { name: 'a missing cluster', op: 'getCluster', status: 404, run: (c) => c.viewer.GET('/v1/clusters/{id}', { params: { path: { id: uuid() } } }) },
  { name: 'cluster change', op: 'updateCluster', status: 200, run: (c) => c.admin.PATCH('/v1/clusters/{id}', { params: { path: { id: c.clusterId } }, body: { name: 'replayed' } }) },
  { name: 'a backup by a viewer', op: 'createBackup', status: 403, run: (c) => c.viewer.POST('/v1/clusters/{id}/backups', { params: { path: { id: c.clusterId } } }) },
  {
    name: 'a backup (no body)',
    op: 'createBackup',
    status: 202,
    run: async (c) => {
      const r = await c.admin.POST('/v1/clusters/{id}/backups', { params: { path: { id: c.clusterId }, header: { 'idempotency-key': 'replay-1' } } });
      c.backupId = r.data!.id;
      expect((await waitBackup(['completed', 'failed'])).status).toBe('completed');
    },
    then: (x) => expect(x.headers.get('location')).toBe(`/v1/clusters/${ctx.clusterId}/backups/${ctx.backupId}`),
  },
  {
    name: 'the same backup request again (replayed)',
    op: 'createBackup',
    status: 202,
    run: (c) => c.admin.POST('/v1/clusters/{id}/backups', { params: { path: { id: c.clusterId }, header: { 'idempotency-key': 'replay-1' } } }),
    then: (x) => expect(x.headers.get('idempotent-replayed')).toBe('true'),
  },
  {
    name: 'another manual backup within the hour',
    op: 'createBackup',
    status: 429,
    run: (c) => c.admin.POST('/v1/clusters/{id}/backups', { params: { path: { id: c.clusterId } }, body: {} }),
    then: (x) => expect(Number(x.headers.get('retry-after'))).toBeGreaterThan(0),
  },
  { name: 'backups', op: 'listBackups', status: 200, run: (c) => c.viewer.GET('/v1/clusters/{id}/backups', { params: { path: { id: c.clusterId }, query: { status: 'completed' } } }) },
  { name: 'a backup', op: 'getBackup', status: 200, run: (c) => c.viewer.GET('/v1/clusters/{id}/backups/{backup_id}', { params: { path: { id: c.clusterId, backup_id: c.backupId } } }) },
  { name: 'retention', op: 'getRetention', status: 200, run: (c) => c.viewer.GET('/v1/clusters/{id}/retention', { params: { path: { id: c.clusterId } } }) },
  {
    name: 'retention under a draft policy',
    op: 'previewRetention',
    status: 200,
    run: (c) => c.viewer.POST('/v1/clusters/{id}/retention/preview', { params: { path: { id: c.clusterId } }, body: { policy: { schedule: [{ interval: '1d', count: 1 }], max_backups: 3 } } }),
  },
  {
    name: 'retention under a draft policy breaking a rule',
    op: 'previewRetention',
    status: 422,
    run: (c) => c.viewer.POST('/v1/clusters/{id}/retention/preview', { params: { path: { id: c.clusterId } }, body: { policy: { schedule: [{ interval: '1x', count: 1 }] } } }),
  },
  { name: 'usage', op: 'getUsage', status: 200, run: (c) => c.viewer.GET('/v1/usage') },
  {
    name: 'files of a backup',
    op: 'listBackupFiles',
    status: 200,
    run: (c) => c.viewer.GET('/v1/clusters/{id}/backups/{backup_id}/files', { params: { path: { id: c.clusterId, backup_id: c.backupId }, query: { path: 'sub' } } }),
    then: (x) => expect((x.body as { items: { name: string }[] }).items.map((i) => i.name)).toEqual(['b.txt']),
  },
  {
    name: 'a component archive',
    op: 'downloadComponentArchive',
    status: 200,
    run: (c) => c.admin.GET('/v1/clusters/{id}/backups/{backup_id}/components/{name}/archive', { params: { path: { id: c.clusterId, backup_id: c.backupId, name: 'files' } }, parseAs: 'arrayBuffer' }),
    then: (x) => expect(x.headers.get('content-disposition')).toMatch(/^attachment; filename=".+\.tar"$/),
  },
  {
    name: 'verification',
    op: 'verifyBackup',
    status: 202,
    run: async (c) => {
      await c.admin.POST('/v1/clusters/{id}/backups/{backup_id}/verify', { params: { path: { id: c.clusterId, backup_id: c.backupId } } });
      await waitFor(async () => {
        const b = await waitBackup(['completed']);
        return b.verification && ['passed', 'failed'].includes(b.verification.status) ? b : null;
      }, 30_000, 'the verification');
    },
  },
  {
    name: 'a restore (no body)',
    op: 'createRestore',
    status: 202,
    run: async (c) => {
      const r = await c.admin.POST('/v1/clusters/{id}/backups/{backup_id}/restore', { params: { path: { id: c.clusterId, backup_id: c.backupId } } });
      c.restoreId = r.data!.id;
      await waitFor(async () => {
        const g = await c.viewer.GET('/v1/clusters/{id}/restores/{restore_id}', { params: { path: { id: c.clusterId, restore_id: c.restoreId } } });
        return g.data && ['completed', 'failed'].includes(g.data.status) ? g.data : null;
      }, 30_000, 'the restore');
    },
  },
  { name: 'a restore', op: 'getRestore', status: 200, run: (c) => c.viewer.GET('/v1/clusters/{id}/restores/{restore_id}', { params: { path: { id: c.clusterId, restore_id: c.restoreId } } }) },
  { name: 'restores', op: 'listRestores', status: 200, run: (c) => c.viewer.GET('/v1/clusters/{id}/restores', { params: { path: { id: c.clusterId } } }) },
  { name: 'recovery window (no continuous component)', op: 'getRecoveryWindow', status: 200, run: (c) => c.viewer.GET('/v1/clusters/{id}/recovery-window', { params: { path: { id: c.clusterId } } }) },
  {
    name: 'point-in-time restore of a cluster with no continuous component',
    op: 'createPointInTimeRestore',
    status: 422,
    run: (c) =>
      c.admin.POST('/v1/clusters/{id}/restores', { params: { path: { id: c.clusterId } }, body: { point_in_time: new Date(Date.now() - 60_000).toISOString(), target_database: 'bk_replay_pitr' } }),
  },
  {
    name: 'api client creation',
    op: 'createApiClient',
    status: 201,
    run: async (c) => {
      const r = await c.admin.POST('/v1/api-clients', { body: { name: 'cron', role: 'operator' } });
      c.clientId = r.data!.client_id;
      c.clientSecret = r.data!.client_secret;
    },
  },
  { name: 'api clients', op: 'listApiClients', status: 200, run: (c) => c.admin.GET('/v1/api-clients') },
  { name: 'an api client', op: 'getApiClient', status: 200, run: (c) => c.admin.GET('/v1/api-clients/{id}', { params: { path: { id: c.clientId } } }) },
  {
    name: 'a token (HTTP Basic)',
    op: 'issueToken',
    status: 200,
    run: async (c) => {
      const res = await raw('POST', '/oauth/token', {
        headers: { authorization: `Basic ${Buffer.from(`${c.clientId}:${c.clientSecret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: 'grant_type=client_credentials&scope=viewer',
      });
      c.accessToken = ((await res.json()) as { access_token: string }).access_token;
    },
  },
  {
    name: 'a token with a wrong secret',
    op: 'issueToken',
    status: 401,
    run: (c) =>
      raw('POST', '/oauth/token', { headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `grant_type=client_credentials&client_id=${c.clientId}&client_secret=wrong` }),
  },
  {
    name: 'a token for an unsupported grant',
    op: 'issueToken',
    status: 400,
    run: (c) => raw('POST', '/oauth/token', { headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `grant_type=password&client_id=${c.clientId}&client_secret=${c.clientSecret}` }),
    then: (x) => expect((x.body as { error: string }).error).toBe('unsupported_grant_type'),
  },
  { name: 'clusters with an access token', op: 'listClusters', status: 200, run: (c) => client(c.accessToken).GET('/v1/clusters') },
  { name: 'api client deletion', op: 'deleteApiClient', status: 204, run: (c) => c.admin.DELETE('/v1/api-clients/{id}', { params: { path: { id: c.clientId } } }) },
  { name: 'data retention', op: 'getDataRetention', status: 200, run: (c) => c.viewer.GET('/v1/data-retention') },
  {
    name: 'data retention change',
    op: 'updateDataRetention',
    status: 200,
    run: (c) => c.admin.PATCH('/v1/data-retention', { body: { staging: { max_backups: 5, default_config: { schedule: [{ interval: '1d', count: 3 }] } } } }),
    then: (x) => expect((x.body as { staging: unknown }).staging).toEqual({ max_backups: 5, default_config: { schedule: [{ interval: '1d', count: 3 }], manual_count: 3 } }),
  },
  {
    name: 'data retention change breaking a rule',
    op: 'updateDataRetention',
    status: 422,
    run: (c) => c.admin.PATCH('/v1/data-retention', { body: { development: { max_backups: 1, default_config: { manual_count: 2 } } } }),
  },
  {
    name: 'events of the cluster',
    op: 'listEvents',
    status: 200,
    run: (c) => c.viewer.GET('/v1/events', { params: { query: { cluster_id: c.clusterId, limit: 50 } } }),
    then: (x) => expect((x.body as { items: { type: string }[] }).items.map((e) => e.type)).toEqual(expect.arrayContaining(['backup.started', 'backup.completed', 'restore.started', 'restore.completed'])),
  },
  { name: 'events with a bad cursor', op: 'listEvents', status: 422, run: (c) => c.viewer.GET('/v1/events', { params: { query: { cursor: 'nonsense' } } }) },
  {
    name: 'webhook creation',
    op: 'createWebhook',
    status: 201,
    run: async (c) => {
      const r = await c.admin.POST('/v1/webhooks', { body: { url: c.receiverUrl, events: ['backup.completed', 'backup.failed'], description: 'replay' } });
      c.webhookId = r.data!.id;
      expect(r.data!.secret).toMatch(/^whsec_/);
    },
  },
  {
    name: 'webhook creation for a private address',
    op: 'createWebhook',
    status: 422,
    run: (c) => c.admin.POST('/v1/webhooks', { body: { url: 'http://10.1.2.3/hook', events: ['backup.completed'] } }),
  },
  { name: 'webhooks', op: 'listWebhooks', status: 200, run: (c) => c.admin.GET('/v1/webhooks') },
  { name: 'a webhook', op: 'getWebhook', status: 200, run: (c) => c.admin.GET('/v1/webhooks/{id}', { params: { path: { id: c.webhookId } } }) },
  { name: 'a webhook of no one', op: 'getWebhook', status: 404, run: (c) => c.admin.GET('/v1/webhooks/{id}', { params: { path: { id: uuid() } } }) },
  { name: 'webhook change', op: 'updateWebhook', status: 200, run: (c) => c.admin.PATCH('/v1/webhooks/{id}', { params: { path: { id: c.webhookId } }, body: { events: ['backup.failed'] } }) },
  {
    name: 'webhook test',
    op: 'testWebhook',
    status: 200,
    run: (c) => c.admin.POST('/v1/webhooks/{id}/test', { params: { path: { id: c.webhookId } } }),
    then: (x) => expect((x.body as { outcome: string }).outcome).toBe('delivered'),
  },
  { name: 'webhook deliveries', op: 'listWebhookDeliveries', status: 200, run: (c) => c.admin.GET('/v1/webhooks/{id}/deliveries', { params: { path: { id: c.webhookId } } }) },
  { name: 'webhook deletion', op: 'deleteWebhook', status: 204, run: (c) => c.admin.DELETE('/v1/webhooks/{id}', { params: { path: { id: c.webhookId } } }) },
  { name: 'audit events', op: 'listAuditEvents', status: 200, run: (c) => c.admin.GET('/v1/audit-events', { params: { query: { action: 'backup.create' } } }) },
  { name: 'api key revocation', op: 'revokeApiKey', status: 204, run: (c) => c.admin.DELETE('/v1/api-keys/{id}', { params: { path: { id: c.viewerKeyId } } }) },
  { name: 'backup deletion', op: 'deleteBackup', status: 202, run: (c) => c.admin.DELETE('/v1/clusters/{id}/backups/{backup_id}', { params: { path: { id: c.clusterId, backup_id: c.backupId } } }) },
  { name: 'cluster deletion', op: 'deleteCluster', status: 202, run: (c) => c.admin.DELETE('/v1/clusters/{id}', { params: { path: { id: c.clusterId } } }) },
];

let receiver: Server;
beforeAll(async () => {
  receiver = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(204).end());
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  ctx.receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`;
  s = await startStack({ env: { METRICS_TOKEN, WEBHOOK_ALLOWED_HOSTS: '127.0.0.1', WEBHOOK_ALLOW_HTTP: 'true' } });
  await s.app.listen({ port: 0, host: '127.0.0.1' });
  baseUrl = `http://127.0.0.1:${(s.app.server.address() as AddressInfo).port}`;
  await api.init();
  ctx.anon = client();
  ctx.platform = client(ADMIN_TOKEN);
});
afterAll(async () => {
  await s?.close();
  receiver?.close();
});

describe('every operation replayed against openapi/openapi.json', () => {
  for (const k of cases) {
    it(`${k.op} ${k.status}: ${k.name}`, async () => {
      const from = exchanges.length;
      await k.run(ctx);
      const mine = exchanges.slice(from);
      // Every exchange of the case (polls included) agrees with the document.
      for (const x of mine) {
        expect(x.problems, `${x.method.toUpperCase()} ${x.path} -> ${x.status}: ${JSON.stringify(x.body).slice(0, 300)}`).toEqual([]);
        const deliberate = k.invalidRequest && x.operationId === k.op && x.status === k.status;
        expect(x.requestValid, `${x.method.toUpperCase()} ${x.path}: request ${deliberate ? 'accepted by' : 'refused by'} the validator: ${x.requestErrors.join('; ')}`).toBe(!deliberate);
      }
      const hit = mine.filter((x) => x.operationId === k.op && x.status === k.status).at(-1);
      expect(hit, `no ${k.op} answered ${k.status}: ${mine.map((x) => `${x.operationId} ${x.status} ${JSON.stringify(x.body).slice(0, 200)}`).join(' | ')}`).toBeDefined();
      k.then?.(hit!);
    });
  }

  it('the checks refuse what the document does not allow (so the replay above proves something)', () => {
    const url = new URL(`/v1/clusters/${uuid()}`, 'http://x');
    const request = { method: 'GET', url, headers: new Headers({ authorization: 'Bearer t' }), body: undefined };
    const sent = (status: number, headers: Record<string, string>, body: unknown) => check(request, { status, headers: new Headers(headers), bytes: Buffer.from(JSON.stringify(body)) });
    const rateLimited = { 'ratelimit-limit': '10', 'ratelimit-remaining': '9', 'ratelimit-reset': '60', 'x-request-id': 'r' };
    expect(sent(418, { 'content-type': 'application/json', ...rateLimited }, {}).problems.join()).toMatch(/status 418 is not declared/);
    expect(sent(200, { 'content-type': 'application/json', ...rateLimited }, { id: 1 }).problems.join()).toMatch(/body/);
    expect(sent(404, { 'content-type': 'application/json', ...rateLimited }, { type: 't', title: 't', status: 404, detail: 'd' }).problems.join()).toMatch(/content type application\/json is not declared/);
    expect(sent(404, { 'content-type': 'application/problem+json' }, { type: 't', title: 't', status: 404, detail: 'd' }).problems.join()).toMatch(/required header RateLimit-Limit is not sent/);
    expect(sent(404, { 'content-type': 'application/problem+json', ...rateLimited, 'ratelimit-remaining': 'many' }, { type: 't', title: 't', status: 404, detail: 'd' }).problems.join()).toMatch(/header/);
    expect(sent(404, { 'content-type': 'application/problem+json', ...rateLimited }, { type: 't', title: 't', status: 404, detail: 'd' }).problems).toEqual([]);
    const post = check({ method: 'POST', url: new URL('/v1/policies', 'http://x'), headers: new Headers({ 'content-type': 'application/json' }), body: '{"name": 5}' }, { status: 422, headers: new Headers(), bytes: Buffer.alloc(0) });
    expect(post.requestValid).toBe(false);
  });

  it('covered every operation of the document', () => {
    const all = Object.values(doc.paths).flatMap((item) => Object.values(item).map((op) => op.operationId));
    expect(all.every((id): id is string => typeof id === 'string')).toBe(true);
    const covered = new Set(exchanges.filter((x) => x.problems.length === 0).map((x) => x.operationId));
    expect(all.filter((id) => !covered.has(id!)), 'operations no case replays').toEqual([]);
    expect(all.length).toBeGreaterThanOrEqual(36);
  });
});
