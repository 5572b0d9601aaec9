/**
 * The OpenAPI document: @fastify/swagger builds it from the routes' zod schemas; the two
 * transforms here add what the routes cannot say one by one.
 *
 * - Per route (routeTransform): the headers a route's answers declare, and whether its body may
 *   be absent (@fastify/swagger marks every body required).
 * - Per document (documentTransform): the standard answers every operation gets from code that
 *   runs outside its handler (the rate limiter, the auth guard, the body parser, the error
 *   mapper), derived from what the operation has: a credential, a body, path parameters. Each
 *   is application/problem+json with its headers (Retry-After, WWW-Authenticate, RateLimit-*).
 *   Schemas nothing refers to (the *Input twins zod makes of every named schema) are dropped.
 */
import type { FastifyDynamicSwaggerOptions } from '@fastify/swagger';
import { jsonSchemaTransform, jsonSchemaTransformObject } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { UNLIMITED } from './rate-limit.js';
import { HEADERS, PROBLEM_MEDIA_TYPE, type HeaderName } from './schemas.js';

export const API_VERSION = '1.0.0';

// The document is plain JSON here.
type Json = Record<string, any>;

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'] as const;
const BODY_OPTIONAL = 'x-body-optional';

/** The standard problem answers: component name, when an operation has it, description, headers. */
const STANDARD: Record<number, { name: string; description: string; headers: HeaderName[] }> = {
  400: { name: 'BadRequest', description: 'the body is not valid JSON (or is empty under a JSON content type)', headers: [] },
  401: { name: 'Unauthorized', description: 'missing, unknown, revoked or expired credential', headers: ['WWW-Authenticate'] },
  403: { name: 'Forbidden', description: "the credential's role (or the kind of credential) does not allow this operation", headers: [] },
  404: { name: 'NotFound', description: "no such resource in the credential's tenant (another tenant's id, or a malformed one, answers the same)", headers: [] },
  413: { name: 'ContentTooLarge', description: 'the body is larger than BODY_LIMIT_BYTES', headers: [] },
  415: { name: 'UnsupportedMediaType', description: 'the body is not application/json (the detail names the type expected)', headers: [] },
  422: { name: 'ValidationFailed', description: 'the request is invalid; `errors` lists every problem with its path', headers: [] },
  429: { name: 'TooManyRequests', description: 'over the rate limit of this credential or client address (RATE_LIMIT_MAX per RATE_LIMIT_WINDOW_MS)', headers: ['Retry-After'] },
  503: { name: 'Unavailable', description: 'the database is unavailable; try again after Retry-After', headers: ['Retry-After'] },
};
const RATE_LIMIT_HEADERS: HeaderName[] = ['RateLimit-Limit', 'RateLimit-Remaining', 'RateLimit-Reset'];

const TAGS: Record<string, string> = {
  tenants: 'Tenants, managed with the platform token (ADMIN_TOKEN)',
  'api-keys': "A tenant's API keys and their roles (viewer, operator, admin)",
  'api-clients': 'OAuth2 clients of a tenant, which obtain access tokens at POST /oauth/token',
  oauth: 'The OAuth2 token endpoint (client credentials grant, RFC 6749)',
  policies: 'Schedules and retention rules clusters follow',
  clusters: 'Clusters and their components (directories, PostgreSQL databases)',
  backups: 'Backups: on demand and scheduled, verify, browse, download, retention',
  restores: 'Restores of a backup into its cluster or another one',
  usage: "The tenant's storage",
  audit: 'The record of mutating requests',
  ops: 'Probes and metrics for the operator',
};

export const swaggerOptions: FastifyDynamicSwaggerOptions = {
  openapi: {
    openapi: '3.1.0',
    info: {
      title: 'Backup service API',
      version: API_VERSION,
      description:
        'Multi-tenant backup-as-a-service: consistent cluster backups on schedules and on demand, retention, restore. Errors are RFC 9457 application/problem+json. Every answer but the probes carries the RateLimit-* headers of the credential (or client address).',
    },
    servers: [{ url: '/', description: 'the service serving this document (GET /openapi.json), e.g. http://localhost:3000' }],
    components: {
      securitySchemes: {
        bearerAuth: { type: 'http', scheme: 'bearer', description: 'a tenant API key, an OAuth2 access token (see oauth2), or the platform ADMIN_TOKEN for /v1/tenants' },
        basicAuth: { type: 'http', scheme: 'basic', description: "an API client's client_id and client_secret, at POST /oauth/token only" },
        oauth2: {
          type: 'oauth2',
          description: 'client credentials of an API client (POST /v1/api-clients); the access token is then sent as bearerAuth',
          flows: {
            clientCredentials: {
              tokenUrl: '/oauth/token',
              scopes: { viewer: 'read', operator: 'viewer, plus create and delete backups, start restores', admin: 'everything in the tenant' },
            },
          },
        },
        metricsToken: { type: 'http', scheme: 'bearer', description: "the operator's METRICS_TOKEN (GET /metrics only)" },
      },
    },
    tags: Object.entries(TAGS).map(([name, description]) => ({ name, description })),
  },
  transform: routeTransform as FastifyDynamicSwaggerOptions['transform'],
  transformObject: documentTransform as FastifyDynamicSwaggerOptions['transformObject'],
};

type RouteArg = Parameters<typeof jsonSchemaTransform>[0];

/** jsonSchemaTransform, keeping the headers of content-form answers and marking bodies that may be absent. */
function routeTransform(arg: RouteArg) {
  const out = jsonSchemaTransform(arg) as { schema: Json; url: string };
  const schema = arg.schema as Json | undefined;
  if (!schema || out.schema.hide) return out;
  for (const [code, declared] of Object.entries<Json>(schema.response ?? {})) {
    if (declared && typeof declared === 'object' && declared.headers && out.schema.response?.[code]) out.schema.response[code].headers = declared.headers;
  }
  if (schema.body instanceof z.ZodType && schema.body.safeParse(undefined).success) out.schema[BODY_OPTIONAL] = true;
  return out;
}

function documentTransform(arg: Parameters<typeof jsonSchemaTransformObject>[0]) {
  const doc = jsonSchemaTransformObject(arg) as Json;
  finishDocument(doc);
  return doc;
}

const headerRef = (name: HeaderName) => ({ $ref: `#/components/headers/${name}` });
const responseRef = (code: number) => ({ $ref: `#/components/responses/${STANDARD[code]!.name}` });

function problemAnswer(description: string, headers: HeaderName[]): Json {
  return {
    description,
    ...(headers.length > 0 && { headers: Object.fromEntries(headers.map((h) => [h, headerRef(h)])) }),
    content: { [PROBLEM_MEDIA_TYPE]: { schema: { $ref: '#/components/schemas/Problem' } } },
  };
}

/** The standard answers an operation gives, from what it has. */
function standardCodes(path: string, op: Json): number[] {
  const codes = [422]; // every query is checked (NUL characters) before any handler
  const body = op.requestBody?.content as Json | undefined;
  if (body) codes.push(413);
  if (body?.['application/json']) codes.push(400, 415);
  if ((op.parameters as Json[] | undefined)?.some((p) => p.in === 'path')) codes.push(404);
  if ((op.security as Json[] | undefined)?.some((s) => 'bearerAuth' in s)) codes.push(401, 403, 503);
  if (!UNLIMITED.has(path)) codes.push(429);
  return codes;
}

function finishDocument(doc: Json): void {
  const components = (doc.components ??= {});
  components.headers = Object.fromEntries(Object.entries(HEADERS).map(([name, h]) => [name, { ...h, schema: { ...h.schema } }]));
  components.responses = Object.fromEntries(
    Object.entries(STANDARD).map(([code, s]) => [s.name, problemAnswer(s.description, [...s.headers, ...RATE_LIMIT_HEADERS, 'X-Request-Id'])]),
  );
  for (const [path, item] of Object.entries<Json>(doc.paths ?? {})) {
    const limited = !UNLIMITED.has(path);
    for (const method of METHODS) {
      const op = item[method] as Json | undefined;
      if (!op) continue;
      if (op[BODY_OPTIONAL]) {
        if (op.requestBody) op.requestBody.required = false;
        delete op[BODY_OPTIONAL];
      }
      const responses: Json = { ...op.responses };
      for (const code of standardCodes(path, op)) {
        if (responses[code]) continue;
        // The shared components carry the rate-limit headers; an unlimited operation's answers do not.
        responses[code] = limited ? responseRef(code) : problemAnswer(STANDARD[code]!.description, STANDARD[code]!.headers);
      }
      for (const [code, res] of Object.entries<Json>(responses)) {
        if (res.$ref) continue;
        const headers: Json = { ...res.headers };
        // Inline header schemas (from the routes) become references to the shared definitions.
        for (const name of Object.keys(headers)) if (name in HEADERS) headers[name] = headerRef(name as HeaderName);
        // A 429 always says when to retry (the limiter's and the domain's RateLimited alike).
        const add: HeaderName[] = [...(code === '429' ? (['Retry-After'] as const) : []), ...(limited ? RATE_LIMIT_HEADERS : []), 'X-Request-Id'];
        for (const name of add) headers[name] ??= headerRef(name);
        res.headers = headers;
      }
      op.responses = Object.fromEntries(Object.entries(responses).sort(([a], [b]) => a.localeCompare(b)));
    }
  }
  pruneUnusedSchemas(doc);
}

/** Drops component schemas nothing in the document refers to (directly or through other schemas). */
function pruneUnusedSchemas(doc: Json): void {
  const schemas: Json = doc.components?.schemas ?? {};
  const prefix = '#/components/schemas/';
  const used = new Set<string>();
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) return v.forEach(walk);
    if (!v || typeof v !== 'object') return;
    for (const [k, child] of Object.entries(v)) {
      if (k === '$ref' && typeof child === 'string' && child.startsWith(prefix)) {
        const name = child.slice(prefix.length);
        if (!used.has(name)) {
          used.add(name);
          walk(schemas[name]);
        }
      } else walk(child);
    }
  };
  walk({ ...doc, components: { ...doc.components, schemas: undefined } });
  for (const name of Object.keys(schemas)) if (!used.has(name)) delete schemas[name];
}
