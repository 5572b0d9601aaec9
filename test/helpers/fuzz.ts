/**
 * OpenAPI-driven request fuzzer: turns every operation of the served OpenAPI document into
 * fast-check generators of (mostly malformed) requests, and checks the answers.
 *
 * Generation is pure data ("specs"); huge strings are markers materialised only when a request is
 * sent, so that 1,500 specs do not hold hundreds of megabytes.
 */
import fc from 'fast-check';

// ---------------------------------------------------------------------------------------------
// OpenAPI model
// ---------------------------------------------------------------------------------------------

export interface JsonSchema {
  $ref?: string;
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: boolean | JsonSchema;
  items?: JsonSchema;
  enum?: unknown[];
  const?: unknown;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  allOf?: JsonSchema[];
  format?: string;
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  minItems?: number;
  maxItems?: number;
  default?: unknown;
}

interface OpenApiParameter {
  name: string;
  in: string;
  required?: boolean;
  schema?: JsonSchema;
}

interface OpenApiOperation {
  parameters?: OpenApiParameter[];
  requestBody?: { required?: boolean; content?: Record<string, { schema?: JsonSchema }> };
  security?: unknown[];
}

export interface OpenApiDoc {
  paths: Record<string, Record<string, OpenApiOperation>>;
  components?: { schemas?: Record<string, JsonSchema> };
}

export interface Param {
  name: string;
  in: 'path' | 'query' | 'header';
  required: boolean;
  schema: JsonSchema;
  /** For path parameters: the literal path segment before it ("clusters" for /clusters/{id}). */
  resource?: string;
}

export interface Operation {
  key: string; // "GET /v1/clusters/{id}"
  method: string;
  path: string;
  params: Param[];
  body?: { schema: JsonSchema; required: boolean; contentType: string };
  /** A credential is required: security is declared and has no empty (anonymous) alternative. */
  secured: boolean;
  /** The document lets a viewer call it (its oauth2 scopes name `viewer`); false when it declares a higher role or no scopes. */
  viewerAllowed: boolean;
}

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];

/** Every operation of the document (the interactive /docs pages excluded). */
export function operationsOf(doc: OpenApiDoc): Operation[] {
  const ops: Operation[] = [];
  for (const [path, item] of Object.entries(doc.paths)) {
    if (path === '/docs' || path.startsWith('/docs/')) continue;
    for (const [m, raw] of Object.entries(item)) {
      if (!METHODS.includes(m)) continue;
      const segments = path.split('/');
      const params: Param[] = (raw.parameters ?? [])
        .filter((p) => p.in === 'path' || p.in === 'query' || p.in === 'header')
        .map((p) => {
          const param: Param = { name: p.name, in: p.in as Param['in'], required: !!p.required, schema: deref(doc, p.schema ?? {}) };
          if (p.in === 'path') {
            const i = segments.indexOf(`{${p.name}}`);
            const before = i > 0 ? segments[i - 1] : undefined;
            if (before && !before.startsWith('{')) param.resource = before;
          }
          return param;
        });
      // Path parameters the document forgot still have to be filled in.
      for (const seg of segments) {
        const name = /^\{(.+)\}$/.exec(seg)?.[1];
        if (name && !params.some((p) => p.in === 'path' && p.name === name)) {
          const i = segments.indexOf(seg);
          params.push({ name, in: 'path', required: true, schema: { type: 'string' }, resource: segments[i - 1] });
        }
      }
      const content = raw.requestBody?.content ?? {};
      const contentType = Object.keys(content).find((c) => c.includes('json')) ?? Object.keys(content)[0];
      const op: Operation = {
        key: `${m.toUpperCase()} ${path}`,
        method: m.toUpperCase(),
        path,
        params,
        // `[{ basicAuth: [] }, {}]` (the token endpoint: client credentials by Basic or in the body) is optional, not secured.
        secured: Array.isArray(raw.security) && raw.security.length > 0 && raw.security.every((r) => isObj(r) && Object.keys(r).length > 0),
        viewerAllowed: (raw.security ?? []).some((r) => isObj(r) && Array.isArray((r as Record<string, unknown>).oauth2) && ((r as Record<string, string[]>).oauth2 ?? []).includes('viewer')),
      };
      if (contentType) op.body = { schema: deref(doc, content[contentType]?.schema ?? {}), required: !!raw.requestBody?.required, contentType };
      ops.push(op);
    }
  }
  return ops;
}

/** Inlines local $refs (depth-limited, so recursive schemas stay finite). */
export function deref(doc: OpenApiDoc, schema: JsonSchema, depth = 0): JsonSchema {
  if (depth > 12) return {};
  if (schema.$ref) {
    const name = schema.$ref.replace(/^#\/components\/schemas\//, '');
    const target = doc.components?.schemas?.[name];
    return target ? deref(doc, target, depth + 1) : {};
  }
  const out: JsonSchema = { ...schema };
  if (schema.properties) out.properties = Object.fromEntries(Object.entries(schema.properties).map(([k, v]) => [k, deref(doc, v, depth + 1)]));
  if (schema.items) out.items = deref(doc, schema.items, depth + 1);
  if (schema.anyOf) out.anyOf = schema.anyOf.map((s) => deref(doc, s, depth + 1));
  if (schema.oneOf) out.oneOf = schema.oneOf.map((s) => deref(doc, s, depth + 1));
  if (schema.allOf) out.allOf = schema.allOf.map((s) => deref(doc, s, depth + 1));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Fixtures the generators draw from
// ---------------------------------------------------------------------------------------------

export interface FuzzContext {
  tokens: { platform: string; admin: string; operator: string; viewer: string; revoked: string; foreign: string };
  /** Real ids of the fuzzed tenant, by resource segment ("clusters", "backups", "policies", ...). */
  ownIds: Record<string, string[]>;
  /** Real ids of another tenant (must answer 404). */
  foreignIds: Record<string, string[]>;
  /** Ids used for non-destructive operations: the main fixtures. */
  mainBinding: Record<string, string>;
  /** Ids DELETE operations may consume (never the main fixtures). */
  deleteBindings: Record<string, string>[];
  /** Names of the main cluster's components (for fields listing components by name). */
  componentNames: string[];
  /** Good and odd values for a directory component's config.path. */
  dirPaths: string[];
  oddDirPaths: string[];
  /** Good and odd values for a postgres component's config.url. */
  pgUrls: string[];
  oddPgUrls: string[];
  /** Cursors really returned by the API. */
  cursors: string[];
  /** OAuth2 API clients of the fuzzed tenant (their credentials, for POST /oauth/token), and one of the other tenant's. */
  apiClients?: { id: string; secret: string }[];
  foreignApiClients?: { id: string; secret: string }[];
  /** For the auth oracle: consistent sets of the fuzzed tenant's ids (a backup with its cluster), and the other tenant's. */
  ownBindings?: Record<string, string>[];
  foreignBindings?: Record<string, string>[];
}

// ---------------------------------------------------------------------------------------------
// Request specs (plain data) and their materialisation
// ---------------------------------------------------------------------------------------------

/** A string of `n` repetitions of `ch`, built only when sent. */
export interface Huge {
  $huge: number;
  ch: string;
}
/** JSON text nested `depth` levels deep, built only when sent. */
export interface Deep {
  $deep: number;
  kind: 'array' | 'object';
}
/** Literal JSON text spliced into a body. */
export interface RawJson {
  $raw: string;
}
type Marker = Huge | Deep | RawJson;
export type Str = string | Huge;

export type BodySpec =
  | { kind: 'none'; contentType?: string }
  | { kind: 'json'; value: unknown; contentType?: string }
  | { kind: 'raw'; text: Str | Deep; contentType?: string };

export interface ReqSpec {
  op: string;
  tags: string[];
  method: string;
  /** Path parameter values, already URL-ready (encoded, or deliberately raw). */
  pathParams: Record<string, Str>;
  suffix: string;
  /** Query pairs, already URL-ready. */
  query: [string, Str][];
  headers: Record<string, Str>;
  body: BodySpec;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isMarker = (v: unknown): v is Marker => isObj(v) && ('$huge' in v || '$deep' in v || '$raw' in v);

export function materialise(v: Str | Deep): string {
  if (typeof v === 'string') return v;
  if ('$huge' in v) return v.ch.repeat(Math.ceil(v.$huge / v.ch.length)).slice(0, v.$huge);
  return v.kind === 'array' ? '['.repeat(v.$deep) + '1' + ']'.repeat(v.$deep) : '{"a":'.repeat(v.$deep) + '1' + '}'.repeat(v.$deep);
}

/** JSON.stringify that understands the markers (and own "__proto__" keys). */
export function toJson(v: unknown): string {
  if (isMarker(v)) return '$raw' in v ? v.$raw : '$huge' in v ? JSON.stringify(materialise(v)) : materialise(v);
  if (Array.isArray(v)) return `[${v.map((x) => (x === undefined ? 'null' : toJson(x))).join(',')}]`;
  if (isObj(v))
    return `{${Object.keys(v)
      .filter((k) => v[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${toJson(v[k])}`)
      .join(',')}}`;
  return JSON.stringify(v) ?? 'null';
}

const FORM = 'application/x-www-form-urlencoded';

/** encodeURIComponent, or for a string with lone surrogates encodeAny (the invalid UTF-8 bytes). */
function encodeFormPart(s: string): string {
  try {
    return encodeURIComponent(s);
  } catch {
    return encodeAny(s);
  }
}

/**
 * A body as application/x-www-form-urlencoded (for operations that consume it): an object's
 * fields as pairs (an array as the same name repeated, a non-string as its JSON text); anything
 * else as its JSON text, which the server has to refuse as a form.
 */
export function toForm(v: unknown): string {
  if (!isObj(v) || isMarker(v)) return toJson(v);
  const text = (x: unknown): string => (typeof x === 'string' ? x : isMarker(x) ? ('$raw' in x ? x.$raw : materialise(x)) : x === null ? '' : toJson(x));
  const pairs: [string, string][] = [];
  for (const k of Object.keys(v)) {
    const x = v[k];
    if (x === undefined) continue;
    for (const item of Array.isArray(x) ? x : [x]) pairs.push([k, text(item)]);
  }
  return pairs.map(([k, x]) => `${encodeFormPart(k)}=${encodeFormPart(x)}`).join('&');
}

export interface BuiltRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  payload?: string;
}

export function buildRequest(op: Operation, spec: ReqSpec): BuiltRequest {
  let url = op.path.replace(/\{([^}]+)\}/g, (_, name: string) => materialise(spec.pathParams[name] ?? 'missing'));
  url += spec.suffix;
  if (spec.query.length) url += (url.includes('?') ? '&' : '?') + spec.query.map(([k, v]) => `${k}=${materialise(v)}`).join('&');
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(spec.headers)) headers[k] = materialise(v);
  const out: BuiltRequest = { method: spec.method, url, headers };
  const b = spec.body;
  // The operation's own media type, unless a mutation chose another (then the value goes as JSON).
  const form = op.body?.contentType === FORM && b.contentType === undefined;
  if (b.kind === 'json') out.payload = form ? toForm(b.value) : toJson(b.value);
  else if (b.kind === 'raw') out.payload = materialise(b.text);
  if (b.kind !== 'none' && b.contentType === undefined) headers['content-type'] = form ? FORM : 'application/json';
  if (b.contentType !== undefined && b.contentType !== '') headers['content-type'] = b.contentType;
  return out;
}

function clip(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n)}...(${s.length} chars)` : s;
}

/** A short, printable description of a request (for failure reports). */
export function describeRequest(spec: ReqSpec, req: BuiltRequest): string {
  const headers = Object.entries(req.headers)
    .map(([k, v]) => `${k}: ${clip(k === 'authorization' ? v.replace(/(Bearer\s+)(\S{6})\S+/i, '$1$2…') : v, 80)}`)
    .join(' | ');
  return `${req.method} ${clip(req.url, 200)}  [${spec.tags.join(', ') || 'valid'}]  headers{${headers}}  body=${req.payload === undefined ? '-' : JSON.stringify(clip(req.payload, 300))}`;
}

// ---------------------------------------------------------------------------------------------
// Checks on answers
// ---------------------------------------------------------------------------------------------

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | number | undefined>;
  text: string;
}

const STACK_TRACE = /\bat (?:async )?(?:[^()\n]{1,200} \()?(?:file:\/\/)?(?:\/|[A-Za-z]:\\|node:)[^\s)]*:\d+/;

/** The RFC 6749 section 5.2 error codes. */
export const OAUTH_ERROR_CODES = ['invalid_request', 'invalid_client', 'invalid_grant', 'unauthorized_client', 'unsupported_grant_type', 'invalid_scope'];

/**
 * Whether a request reaches the token endpoint, the one route whose errors are RFC 6749 section
 * 5.2 JSON rather than problem+json (SPEC section 9): POST /oauth/token, its path as the router
 * sees it (dot segments resolved, one trailing slash ignored, no query).
 */
export function isTokenEndpoint(req: { method: string; url: string }): boolean {
  if (req.method.toUpperCase() !== 'POST') return false;
  let pathname: string;
  try {
    pathname = new URL(req.url, 'http://fuzz.invalid').pathname;
  } catch {
    return false;
  }
  return pathname.replace(/(.)\/$/, '$1') === '/oauth/token';
}

/** What is wrong with an error answer as an RFC 6749 section 5.2 error ([] when it is one). */
function oauthErrorProblems(a: Answer, ct: string): string[] {
  const out: string[] = [];
  if (a.status !== 400 && a.status !== 401) out.push(`OAuth error with HTTP ${a.status} (RFC 6749 section 5.2: 400 or 401)`);
  if (!/^application\/json\s*(;|$)/i.test(ct)) out.push(`OAuth error with content-type "${ct}" (not application/json)`);
  let body: unknown;
  try {
    body = JSON.parse(a.text);
  } catch {
    out.push('OAuth error body is not JSON');
    return out;
  }
  if (!isObj(body)) return [...out, 'OAuth error body is not an object'];
  if (typeof body.error !== 'string' || !OAUTH_ERROR_CODES.includes(body.error)) out.push(`OAuth error.error ${JSON.stringify(body.error)} is not an RFC 6749 code`);
  if (typeof body.error_description !== 'string') out.push('OAuth error.error_description is not a string');
  const extra = Object.keys(body).filter((k) => !['error', 'error_description', 'error_uri'].includes(k));
  if (extra.length) out.push(`OAuth error has other fields: ${extra.join(', ')}`);
  if (a.status === 401) {
    if (body.error !== 'invalid_client') out.push(`OAuth 401 with error ${JSON.stringify(body.error)} (only invalid_client is a 401)`);
    if (!String(a.headers['www-authenticate'] ?? '')) out.push('OAuth 401 without WWW-Authenticate');
  }
  return out;
}

/**
 * Everything wrong with an answer ([] when it is acceptable). `req` is the request as sent: on
 * the token endpoint (only there) an error may be an RFC 6749 error instead of a problem.
 */
export function answerProblems(path: string, a: Answer, req?: { method: string; url: string }): string[] {
  const out: string[] = [];
  if (a.status >= 500) out.push(`server error ${a.status}`);
  if (STACK_TRACE.test(a.text)) out.push('body contains a stack trace');
  if (/prisma/i.test(a.text)) out.push('body mentions Prisma');
  if (a.text.includes('node_modules')) out.push('body mentions node_modules');
  // Success bodies of /metrics (text) and /docs (HTML) are not JSON; errors everywhere are problems.
  if (a.status >= 400 && !path.startsWith('/docs')) {
    const ct = String(a.headers['content-type'] ?? '');
    // The token endpoint answers its own errors (RFC 6749 section 5.2) as application/json; what
    // the framework refuses before its handler (413, 404 of a wrong path, 429) stays problem+json.
    if (req && path === '/oauth/token' && isTokenEndpoint(req) && !/^application\/problem\+json\b/.test(ct)) {
      out.push(...oauthErrorProblems(a, ct));
      return out;
    }
    if (!/^application\/problem\+json\b/.test(ct)) out.push(`error answer with content-type "${ct}" (not application/problem+json)`);
    let body: unknown;
    try {
      body = JSON.parse(a.text);
    } catch {
      out.push('error body is not JSON');
    }
    if (body !== undefined) {
      if (!isObj(body)) out.push('error body is not an object');
      else {
        for (const f of ['type', 'title', 'detail'] as const) if (typeof body[f] !== 'string') out.push(`problem.${f} is not a string`);
        if (body.status !== a.status) out.push(`problem.status ${JSON.stringify(body.status)} != HTTP ${a.status}`);
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Value generators
// ---------------------------------------------------------------------------------------------

const KB100 = 100 * 1024;
const MB2 = 2 * 1024 * 1024;

/** Nasty strings. None of them contains words the leak check looks for. */
export const EVIL_STRINGS: string[] = [
  '',
  ' ',
  '   padded   ',
  '\u0000',
  'nul\u0000inside',
  '\u0000\u0000\u0000',
  '\u0007\u001b[31mred\u001b[0m',
  '\r\n',
  'line1\nline2',
  '\t',
  '\u202etxt.exe',
  '\u200b',
  '\ufeffbom',
  '\ud800',
  '\udfff\ud800',
  '😀🔥💾',
  '👩‍👩‍👧‍👦',
  'e\u0301\u0301\u0301\u0301',
  'ｆｕｌｌｗｉｄｔｈ',
  'Ω≈ç√∫',
  'نص عربي',
  '日本語テキスト',
  "' OR '1'='1",
  "'; DROP TABLE clusters; --",
  '"; DELETE FROM backups; --',
  '1 UNION SELECT * FROM api_keys',
  '\\',
  '\\\\\\"',
  '%s%s%s%n',
  '%00',
  '${process.exit()}',
  '{{7*7}}',
  '<script>alert(1)</script>',
  '../../../../etc/passwd',
  '..\\..\\windows\\win.ini',
  '/etc/shadow',
  'file:///etc/passwd',
  'null',
  'undefined',
  'true',
  'NaN',
  '-1',
  '0',
  '1e309',
  '__proto__',
  'constructor',
  'toString',
  'hasOwnProperty',
  'é'.repeat(3000),
  '🔥'.repeat(2000),
];

export const evilString = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...EVIL_STRINGS) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 40 }) },
);

export const hugeString: fc.Arbitrary<Huge> = fc.record({
  $huge: fc.constantFrom(KB100, KB100 + 1, MB2),
  ch: fc.constantFrom('x', 'é', '😀', '\u0000', 'ab ', '"\\'),
});

export const deepValue: fc.Arbitrary<Deep> = fc.record({ $deep: fc.constantFrom(64, 1_000, 10_000, 100_000), kind: fc.constantFrom('array' as const, 'object' as const) });

const WRONG_TYPES: unknown[] = [null, true, false, 0, -1, 1.5, 1e308, -1e308, 'a string', '', [], [1, 'two', null], {}, { nested: { x: 1 } }, [[[]]]];

/** A JSON value of (usually) another type than the schema wants. */
export function wrongType(schema: JsonSchema): fc.Arbitrary<unknown> {
  const want = new Set(typesOf(schema));
  const jsonType = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v === 'number' ? (Number.isInteger(v) ? 'integer' : 'number') : typeof v);
  const wrong = WRONG_TYPES.filter((v) => !want.has(jsonType(v)) && !(jsonType(v) === 'integer' && want.has('number')));
  return fc.constantFrom(...(wrong.length ? wrong : WRONG_TYPES));
}

export const NUMBERISH: unknown[] = [
  '5',
  '1',
  'NaN',
  'Infinity',
  '-Infinity',
  '-0',
  '1e309',
  '0x10',
  ' 5 ',
  '5.5',
  '1_000',
  '',
  -1,
  0,
  -0,
  1001,
  101,
  2 ** 31 - 1,
  2 ** 31,
  -(2 ** 31) - 1,
  2 ** 53,
  2 ** 53 + 2,
  -(2 ** 63),
  1.5,
  0.1,
  5e-324,
  1e308,
  -1e308,
];
export const numberish = fc.constantFrom(...NUMBERISH);

const DATE_TIMES = [
  '2030-01-01T00:00:00Z',
  '2000-01-01T00:00:00Z',
  '1970-01-01T00:00:00.000Z',
  '2024-02-29T23:59:59.999999999+14:00',
  '9999-12-31T23:59:59Z',
  '0001-01-01T00:00:00Z',
  '2023-02-29T00:00:00Z',
  '2030-13-01T00:00:00Z',
  '2030-01-01',
  'tomorrow',
  '+275760-09-13T00:00:00.000Z',
  '-271821-04-20T00:00:00.000Z',
];

const VALID_INTERVALS = ['1h', '2h', '1d', '3d', '1w', '2w', '1M', '3M', '1y'];
const ODD_INTERVALS = ['0d', '0h', '-1d', '1.5d', '1D', '1x', 'd', '1', ' 1d', '1d ', '01d', '99999999d', '999999999y', '2147483648h', '9999999999', '1e3d', '１d'];
const VALID_TIMEZONES = ['UTC', 'Europe/Paris', 'America/New_York', 'Asia/Kolkata', 'Pacific/Chatham', 'Australia/Lord_Howe', 'Etc/GMT+12', 'Etc/GMT-14', 'America/St_Johns'];
const ODD_TIMEZONES = ['utc', 'Mars/Olympus', '+05:00', 'UTC+5', 'EST', 'Europe/../../etc', '', ' UTC', 'Europe/Paris\u0000', 'local', 'system'];

/**
 * A value for the schema, field-name aware so that requests reach deep code. `odd` picks edge
 * cases that the schema's syntax allows but the service should still refuse (or handle).
 */
export function validValue(schema: JsonSchema, name: string, ctx: FuzzContext, depth = 0, odd = false): fc.Arbitrary<unknown> {
  const variants = schema.anyOf ?? schema.oneOf;
  if (variants?.length) {
    const nonNull = variants.filter((v) => !typesOf(v).every((t) => t === 'null'));
    const hasNull = nonNull.length < variants.length;
    const arbs = nonNull.map((v) => ({ weight: 4, arbitrary: validValue(v, name, ctx, depth + 1, odd) }));
    if (hasNull) arbs.push({ weight: 1, arbitrary: fc.constant(null) as fc.Arbitrary<unknown> });
    return arbs.length ? fc.oneof(...arbs) : fc.constant(null);
  }
  if (schema.allOf?.length) return validValue(Object.assign({}, ...schema.allOf), name, ctx, depth + 1, odd);
  if (schema.const !== undefined) return fc.constant(schema.const);
  if (schema.enum?.length)
    return schema.default !== undefined && !odd
      ? fc.oneof({ weight: 2, arbitrary: fc.constant(schema.default) }, { weight: 1, arbitrary: fc.constantFrom(...schema.enum) })
      : fc.constantFrom(...schema.enum);
  const type = typesOf(schema).find((t) => t !== 'null') ?? (schema.properties ? 'object' : 'string');
  switch (type) {
    case 'string':
      return validString(schema, name, ctx, odd);
    case 'integer':
    case 'number': {
      if (odd) return fc.constantFrom(0, -1, 1, 100, 101, 1000, 1001, 2 ** 31 - 1, 2 ** 31, -(2 ** 31), Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER);
      if (/count$/.test(name)) return fc.integer({ min: name === 'manual_count' ? 0 : 1, max: 5 });
      if (name === 'max_backups') return fc.integer({ min: 5, max: 30 });
      const min = schema.minimum !== undefined && Math.abs(schema.minimum) < 1e6 ? schema.minimum : 0;
      const max = schema.maximum !== undefined && Math.abs(schema.maximum) < 1e6 ? schema.maximum : min + 50;
      return fc.integer({ min, max: Math.max(min, max) });
    }
    case 'boolean':
      return fc.boolean();
    case 'array': {
      if (!schema.items || depth > 6) return fc.constant([]);
      const minLength = Math.min(schema.minItems ?? 0, 3);
      const maxLength = Math.max(minLength, Math.min(schema.maxItems ?? 3, 3));
      const item = validValue(schema.items, name, ctx, depth + 1, odd);
      if (odd) return fc.array(item, { minLength, maxLength });
      // Items named by a key (components by name, schedule entries by interval) are unique.
      return fc.uniqueArray(item, { minLength, maxLength, selector: (v) => (isObj(v) ? JSON.stringify(v.name ?? v.interval ?? v) : JSON.stringify(v)) });
    }
    case 'object': {
      const props = schema.properties ?? {};
      const keys = Object.keys(props);
      if (!keys.length || depth > 6) return fc.constant({});
      const model: Record<string, fc.Arbitrary<unknown>> = {};
      for (const k of keys) model[k] = validValue(props[k] as JsonSchema, k, ctx, depth + 1, odd);
      const record = fc.record(model, { requiredKeys: (schema.required ?? []).filter((k) => keys.includes(k)) });
      // Client credentials in a body (the token request): mostly one client's matching pair, so that the grant is reached.
      const clients = ctx.apiClients ?? [];
      if (!odd && keys.includes('client_id') && keys.includes('client_secret') && clients.length) {
        const paired = fc
          .tuple(record, fc.constantFrom(...clients))
          .map(([r, c]) => ({ ...(r as Record<string, unknown>), client_id: c.id, client_secret: c.secret }));
        return fc.oneof({ weight: 3, arbitrary: paired }, { weight: 1, arbitrary: record });
      }
      return record;
    }
    default:
      return fc.constant(null);
  }
}

function typesOf(s: JsonSchema): string[] {
  if (Array.isArray(s.type)) return s.type;
  if (s.type) return [s.type];
  if (s.enum) return [...new Set(s.enum.map((v) => (v === null ? 'null' : typeof v)))];
  if (s.properties) return ['object'];
  return [];
}

/** Which resource a uuid body field names. */
export function resourceOfField(name: string): string | undefined {
  if (name === 'policy_id') return 'policies';
  if (name === 'backup_id') return 'backups';
  if (/cluster_id$/.test(name)) return 'clusters';
  if (name === 'restore_id') return 'restores';
  return undefined;
}

export function uuidFor(resource: string | undefined, ctx: FuzzContext, odd = false): fc.Arbitrary<string> {
  const own = (resource && ctx.ownIds[resource]) || [];
  const foreign = (resource && ctx.foreignIds[resource]) || [];
  const arbs: fc.WeightedArbitrary<string>[] = [{ weight: odd ? 4 : 1, arbitrary: fc.uuid() }];
  if (own.length) arbs.push({ weight: odd ? 1 : 8, arbitrary: fc.constantFrom(...own) });
  if (foreign.length) arbs.push({ weight: odd ? 4 : 1, arbitrary: fc.constantFrom(...foreign) });
  return fc.oneof(...arbs);
}

function validString(schema: JsonSchema, name: string, ctx: FuzzContext, odd: boolean): fc.Arbitrary<unknown> {
  if (schema.format === 'uuid') return uuidFor(resourceOfField(name), ctx, odd);
  // The token request (RFC 6749 section 4.4): the fixture clients' credentials, so that requests reach the grant.
  if (name === 'grant_type')
    return odd ? fc.constantFrom('password', 'authorization_code', 'refresh_token', 'CLIENT_CREDENTIALS', 'client_credentials ', 'urn:ietf:params:oauth:grant-type:jwt-bearer') : fc.constant('client_credentials');
  if (name === 'scope')
    return odd ? fc.constantFrom('root', 'Admin', 'admin admin', 'viewer  operator', ' viewer', 'tenant:admin', 'viewer,operator', 'x'.repeat(200), 'x'.repeat(201)) : fc.constantFrom('viewer', 'operator', 'admin', 'viewer operator');
  const clients = ctx.apiClients ?? [];
  if (name === 'client_id' && clients.length) {
    const ids = clients.map((c) => c.id);
    const foreign = (ctx.foreignApiClients ?? []).map((c) => c.id);
    return odd ? fc.constantFrom(...ids.map((id) => id.toUpperCase()), ...foreign, '00000000-0000-0000-0000-000000000000', `${ids[0]} `, 'x', '') : fc.oneof({ weight: 8, arbitrary: fc.constantFrom(...ids) }, { weight: 1, arbitrary: fc.uuid() });
  }
  if (name === 'client_secret' && clients.length) {
    const secrets = clients.map((c) => c.secret);
    return odd ? fc.constantFrom(...secrets.flatMap((x) => [`${x}x`, x.slice(0, -1), x.toUpperCase(), ` ${x}`]), ...(ctx.foreignApiClients ?? []).map((c) => c.secret), '') : fc.constantFrom(...secrets);
  }
  if (schema.format === 'date-time')
    return odd
      ? fc.constantFrom(...DATE_TIMES)
      : fc.date({ min: new Date('2031-01-01'), max: new Date('2090-01-01'), noInvalidDate: true }).map((d) => d.toISOString());
  if (name === 'interval' || name === 'manual_rate_limit') return fc.constantFrom(...(odd ? ODD_INTERVALS : VALID_INTERVALS));
  if (name === 'timezone') return fc.constantFrom(...(odd ? ODD_TIMEZONES : VALID_TIMEZONES));
  if (name === 'components' && ctx.componentNames.length) return fc.constantFrom(...(odd ? ['nope', '', 'FILES'] : ctx.componentNames));
  if (name === 'path') return fc.constantFrom(...(odd ? ctx.oddDirPaths : ctx.dirPaths));
  if (name === 'url') return fc.constantFrom(...(odd ? ctx.oddPgUrls : ctx.pgUrls));
  if (name === 'region') return odd ? fc.constantFrom('x', 'a'.repeat(32), 'a'.repeat(33), 'EU-1', '-eu', 'eu_1', '') : fc.constantFrom('eu-1', 'us-east-2', 'ap-3');
  if (name === 'name' && schema.pattern)
    return odd ? fc.constantFrom('x'.repeat(63), 'x'.repeat(64), 'Files', '-x', '_x', 'a b', 'ü', '') : fc.stringMatching(/^[a-z][a-z0-9_-]{0,10}$/);
  if (schema.pattern && !odd) {
    try {
      const re = new RegExp(schema.pattern);
      return fc.stringMatching(re).filter((s) => s.length <= (schema.maxLength ?? 1000));
    } catch {
      // unsupported pattern: fall through to a plain string
    }
  }
  if (odd)
    return fc.constantFrom(
      ...[' ', '  padded  ', 'x'.repeat(schema.maxLength ?? 100), 'x'.repeat((schema.maxLength ?? 100) + 1), 'é'.repeat(schema.maxLength ?? 100), '😀'.repeat(schema.maxLength ?? 100), '\u0000', 'tab\there', 'Name', 'default'],
    );
  const min = Math.max(1, schema.minLength ?? 0);
  return fc.oneof(
    { weight: 3, arbitrary: fc.stringMatching(/^[a-z][a-z0-9 -]{0,20}$/).map((s) => `fuzz ${s}`.slice(0, schema.maxLength ?? 100)) },
    { weight: 1, arbitrary: fc.string({ unit: 'grapheme', minLength: min, maxLength: Math.max(min, Math.min(schema.maxLength ?? 30, 30)) }) },
  );
}

// ---------------------------------------------------------------------------------------------
// Ids, query values, headers, tokens
// ---------------------------------------------------------------------------------------------

/** An odd path id: resolved against the real id the request would otherwise use. */
export type OddId = { t: 'plain'; v: string } | { t: 'raw'; v: string } | { t: 'transform'; f: string } | { t: 'huge'; v: Huge };

const ODD_PLAIN = [
  '00000000-0000-0000-0000-000000000000',
  'ffffffff-ffff-ffff-ffff-ffffffffffff',
  '00000000-0000-0000-0000-00000000000g',
  "1' OR '1'='1",
  '1; DROP TABLE clusters;--',
  '$where',
  '..',
  '.',
  '...',
  '-1',
  '0',
  '9'.repeat(40),
  '1e9',
  'NaN',
  'null',
  'undefined',
  'true',
  '[]',
  '{}',
  ' ',
  '😀',
  'ü',
  '\u0000',
  '\u202e',
  'a'.repeat(199),
  'a'.repeat(201),
  'b'.repeat(10_000),
  '../../etc/passwd',
];
const ODD_RAW = [
  '../',
  '..%2f..%2fetc%2fpasswd',
  '%2e%2e',
  '%2E%2E%2F',
  '%00',
  '%ZZ',
  '%',
  '%E0%A4%A',
  '%C0%AF',
  '%FF%FE',
  '%uFFFF',
  '%25',
  '%2F',
  '%252F',
  '//',
  'x?y=1',
  'x#frag',
  ';jsessionid=1',
  'a%20b',
  '*',
  '%0d%0aSet-Cookie:%20x=1',
  '%E2%80%AE',
];
const ODD_TRANSFORMS = ['upper', 'braces', 'nodash', 'urn', 'trailSpace', 'trailNewline', 'trailNul', 'twice', 'truncate', 'version0', 'variantC', 'otherResource', 'foreign', 'nil'];

export const oddId: fc.Arbitrary<OddId> = fc.oneof(
  { weight: 3, arbitrary: fc.uuid().map((v): OddId => ({ t: 'plain', v })) },
  { weight: 4, arbitrary: fc.constantFrom(...ODD_PLAIN).map((v): OddId => ({ t: 'plain', v })) },
  { weight: 1, arbitrary: evilString.map((v): OddId => ({ t: 'plain', v })) },
  { weight: 4, arbitrary: fc.constantFrom(...ODD_RAW).map((v): OddId => ({ t: 'raw', v })) },
  { weight: 5, arbitrary: fc.constantFrom(...ODD_TRANSFORMS).map((f): OddId => ({ t: 'transform', f })) },
  { weight: 1, arbitrary: hugeString.map((v): OddId => ({ t: 'huge', v: { $huge: Math.min(v.$huge, KB100), ch: 'a' } })) },
);

/** encodeURIComponent that also encodes lone surrogates (as the invalid UTF-8 bytes WTF-8 would give them). */
export function encodeAny(s: string): string {
  let out = '';
  for (const ch of s) {
    const cp = ch.codePointAt(0) ?? 0;
    if (cp >= 0xd800 && cp <= 0xdfff) {
      out += [0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f)].map((b) => `%${b.toString(16).toUpperCase()}`).join('');
    } else out += encodeURIComponent(ch);
  }
  return out;
}

export function resolveOddId(odd: OddId, base: string, resource: string | undefined, ctx: FuzzContext, pick: number): Str {
  if (odd.t === 'plain') return encodeAny(odd.v);
  if (odd.t === 'raw' || odd.t === 'huge') return odd.v;
  const at = <T>(xs: T[], fallback: T): T => (xs.length ? (xs[pick % xs.length] as T) : fallback);
  switch (odd.f) {
    case 'upper':
      return base.toUpperCase();
    case 'braces':
      return encodeURIComponent(`{${base}}`);
    case 'nodash':
      return base.replace(/-/g, '');
    case 'urn':
      return encodeURIComponent(`urn:uuid:${base}`);
    case 'trailSpace':
      return `${base}%20`;
    case 'trailNewline':
      return `${base}%0A`;
    case 'trailNul':
      return `${base}%00`;
    case 'twice':
      return base + base;
    case 'truncate':
      return base.slice(0, 35);
    case 'version0':
      return base.length === 36 ? `${base.slice(0, 14)}0${base.slice(15)}` : base;
    case 'variantC':
      return base.length === 36 ? `${base.slice(0, 19)}c${base.slice(20)}` : base;
    case 'otherResource': {
      const others = Object.entries(ctx.ownIds)
        .filter(([r]) => r !== resource)
        .flatMap(([, ids]) => ids);
      return at(others, base);
    }
    case 'foreign':
      return at((resource && ctx.foreignIds[resource]) || Object.values(ctx.foreignIds).flat(), base);
    default:
      return '00000000-0000-0000-0000-000000000000';
  }
}

function b64(v: unknown): string {
  return Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
}

export function cursorValues(ctx: FuzzContext): fc.Arbitrary<Str> {
  const uuid = ctx.mainBinding.clusters ?? '00000000-0000-0000-0000-000000000000';
  const crafted = [
    b64(['2020-01-01T00:00:00.000Z', '-'.repeat(36)]),
    b64(['2020-01-01T00:00:00.000Z', 'ffffffff-ffff-ffff-ffff-ffffffffffff']),
    b64(['2020-01-01T00:00:00.000Z', 'AAAAAAAA-AAAA-AAAA-AAAA-AAAAAAAAAAAA']),
    b64(['2020-01-01T00:00:00.000Z', '0123456789abcdef0123456789abcdef0123']),
    b64(['+275760-09-13T00:00:00.000Z', uuid]),
    b64(['-271821-04-20T00:00:00.000Z', uuid]),
    b64(['0001-01-01T00:00:00.000Z', uuid]),
    b64(['-004714-11-23T00:00:00.000Z', uuid]),
    b64(['not a date', uuid]),
    b64(['1', uuid]),
    b64(['2020-01-01', 'g'.repeat(36)]),
    b64([1, 2]),
    b64({ createdAt: '2020-01-01', id: uuid }),
    b64([]),
    b64('null'),
    b64('"'),
    b64('\u0000'),
  ];
  return fc.oneof(
    { weight: 2, arbitrary: fc.constantFrom(...(ctx.cursors.length ? ctx.cursors : [b64(['2020-01-01T00:00:00.000Z', uuid])])) },
    { weight: 4, arbitrary: fc.constantFrom(...crafted) },
    { weight: 2, arbitrary: fc.base64String({ maxLength: 80 }).map((s) => encodeAny(s)) },
    { weight: 2, arbitrary: evilString.map((s) => encodeAny(s)) },
    { weight: 1, arbitrary: fc.constantFrom<Str>('x'.repeat(513), '%ZZ', '%00', '', { $huge: KB100, ch: 'A' }) },
  );
}

export function badQueryValue(p: Param, ctx: FuzzContext): fc.Arbitrary<Str> {
  if (p.name === 'cursor') return cursorValues(ctx);
  const t = typesOf(p.schema);
  if (t.includes('integer') || t.includes('number'))
    return fc.constantFrom<Str>('0', '101', '-1', 'abc', '1e9', '1e2', '1.5', '', '%20', '0x10', 'Infinity', 'NaN', '100', '1', '9'.repeat(400), '%00', '1,2', '+5', '-0', { $huge: KB100, ch: '9' });
  return fc.oneof(
    { weight: 2, arbitrary: fc.constantFrom<Str>('', 'COMPLETED', 'x', '%00', '%ZZ', 'queued,running', { $huge: KB100, ch: 'q' }) },
    { weight: 1, arbitrary: evilString.map((s) => encodeAny(s)) },
  );
}

export function validQueryValue(p: Param, ctx: FuzzContext, opPath = ''): fc.Arbitrary<Str> {
  // A directory listing's cursor belongs to one directory of one backup: none of ours is valid there.
  if (p.name === 'cursor' && opPath.endsWith('/files')) return fc.constant('');
  if (p.name === 'cursor') return ctx.cursors.length ? fc.constantFrom(...ctx.cursors) : fc.constant('');
  return validValue(p.schema, p.name, ctx).map((v) => encodeAny(String(v)));
}

export const CONTENT_TYPES = [
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=xyz',
  'application/xml',
  'application/json; charset=latin1',
  'application/json; charset=utf-16',
  'application/JSON',
  'APPLICATION/JSON; CHARSET=UTF-8',
  'application/jsonx',
  'application/problem+json',
  'application/merge-patch+json',
  'application/octet-stream',
  '*/*',
  'application/json;;;',
  'json',
  ' ',
  '',
  `application/json; x=${'y'.repeat(5000)}`,
];

export type AuthChoice = 'right' | 'admin' | 'operator' | 'viewer' | 'platform' | 'foreign' | 'revoked' | 'none' | 'garbage' | 'empty' | 'long' | 'basic' | 'lowercase' | 'extraWord' | 'spaces' | 'twoSchemes';

export const authChoice: fc.Arbitrary<AuthChoice> = fc.oneof(
  { weight: 60, arbitrary: fc.constant('right' as const) },
  {
    weight: 40,
    arbitrary: fc.constantFrom<AuthChoice>('admin', 'operator', 'viewer', 'platform', 'foreign', 'revoked', 'none', 'garbage', 'empty', 'long', 'basic', 'lowercase', 'extraWord', 'spaces', 'twoSchemes'),
  },
);

export function authHeader(choice: AuthChoice, op: Operation, ctx: FuzzContext): Str | undefined {
  const t = ctx.tokens;
  const right = op.path.startsWith('/v1/tenants') ? t.platform : op.secured ? t.admin : undefined;
  switch (choice) {
    case 'right':
      return right === undefined ? undefined : `Bearer ${right}`;
    case 'admin':
    case 'operator':
    case 'viewer':
    case 'platform':
    case 'foreign':
    case 'revoked':
      return `Bearer ${t[choice]}`;
    case 'none':
      return undefined;
    case 'garbage':
      return 'Bearer not-a-real-token';
    case 'empty':
      return 'Bearer ';
    case 'long':
      return { $huge: 20_000, ch: 'k' };
    case 'basic':
      return 'Basic dXNlcjpwYXNzd29yZA==';
    case 'lowercase':
      return `bearer ${right ?? t.admin}`;
    case 'extraWord':
      return `Bearer ${right ?? t.admin} extra`;
    case 'spaces':
      return `Bearer    ${right ?? t.admin}   `;
    case 'twoSchemes':
      return `Bearer ${t.viewer}, Bearer ${t.admin}`;
  }
}

// ---------------------------------------------------------------------------------------------
// Mutations
// ---------------------------------------------------------------------------------------------

interface FieldInfo {
  path: (string | number)[];
  schema: JsonSchema;
  required: boolean;
}

/** Every field path of a body schema (arrays through index 0, variants merged). */
export function fieldsOf(schema: JsonSchema, prefix: (string | number)[] = [], depth = 0): FieldInfo[] {
  if (depth > 5) return [];
  const out: FieldInfo[] = [];
  const variants = schema.anyOf ?? schema.oneOf;
  if (variants) {
    const seen = new Set<string>();
    for (const v of variants)
      for (const f of fieldsOf(v, prefix, depth + 1)) {
        const k = f.path.join('.');
        if (!seen.has(k)) {
          seen.add(k);
          out.push(f);
        }
      }
    return out;
  }
  for (const [k, sub] of Object.entries(schema.properties ?? {})) {
    out.push({ path: [...prefix, k], schema: sub, required: (schema.required ?? []).includes(k) });
    out.push(...fieldsOf(sub, [...prefix, k], depth + 1));
  }
  if (schema.items) out.push(...fieldsOf(schema.items, [...prefix, 0], depth + 1));
  return out;
}

export type Mutation =
  | { k: 'fieldDrop'; path: (string | number)[] }
  | { k: 'fieldSet'; path: (string | number)[]; why: string; value: unknown }
  | { k: 'extraField'; at: (string | number)[]; key: string; value: unknown }
  | { k: 'wholeBody'; value: unknown }
  | { k: 'rawBody'; text: Str | Deep; why: string }
  | { k: 'contentType'; value: string }
  | { k: 'noBody' }
  | { k: 'emptyBody' }
  | { k: 'bodyOnBodyless'; value: unknown }
  | { k: 'pathId'; name: string; odd: OddId; pick: number }
  | { k: 'query'; name: string; value: Str }
  | { k: 'queryDup'; name: string }
  | { k: 'queryExtra'; pair: [string, Str] }
  | { k: 'header'; name: string; value: Str }
  | { k: 'method'; value: string }
  | { k: 'suffix'; value: string };

const MALFORMED_JSON: Str[] = [
  '{',
  '{"name": ',
  '{"name":"x",}',
  "{'name':'x'}",
  '{"name":"x"}}',
  '{"name":"x"} trailing',
  '[',
  'nul',
  'NaN',
  '{"max_backups": NaN}',
  '{"max_backups": Infinity}',
  '{"n": 01}',
  '{"n": .5}',
  '{"n": 1e}',
  '{"s": "\u0000"}',
  '{"s": "bad \\x escape"}',
  '{"s": "\\ud800"}',
  '\u00ff\u00fe{}',
  '\ufeff{}',
  '{"a":1,"a":2}',
  '{"__proto__": {"polluted": true}}',
  '{"constructor": {"prototype": {"polluted": true}}}',
  '/* comment */ {}',
  '{"name":"x"}\u0000',
  ' ',
  '""',
  '0',
  'true',
  '"just a string"',
  '[{}]',
  { $huge: MB2, ch: ' ' },
];

const EXTRA_KEYS = ['surprise', 'id', 'tenant_id', 'created_at', 'status', 'is_default', 'token', 'role', '', ' ', '__proto__', 'constructor', 'prototype', 'x'.repeat(300), '😀', 'a.b', '$gt'];

export function mutationArb(op: Operation, ctx: FuzzContext): fc.Arbitrary<Mutation> {
  const arbs: fc.WeightedArbitrary<Mutation>[] = [];
  const pathParams = op.params.filter((p) => p.in === 'path');
  const queryParams = op.params.filter((p) => p.in === 'query');
  const headerParams = op.params.filter((p) => p.in === 'header');

  if (op.body) {
    const fields = fieldsOf(op.body.schema);
    const objectPaths: (string | number)[][] = [[], ...fields.filter((f) => typesOf(f.schema).includes('object') || f.schema.properties).map((f) => f.path)];
    if (fields.length) {
      const field = fc.constantFrom(...fields);
      const required = fields.filter((f) => f.required);
      if (required.length) arbs.push({ weight: 4, arbitrary: fc.constantFrom(...required).map((f): Mutation => ({ k: 'fieldDrop', path: f.path })) });
      arbs.push({ weight: 2, arbitrary: field.map((f): Mutation => ({ k: 'fieldDrop', path: f.path })) });
      const set = (why: string, value: (f: FieldInfo) => fc.Arbitrary<unknown>, weight: number) =>
        arbs.push({ weight, arbitrary: field.chain((f) => value(f).map((v): Mutation => ({ k: 'fieldSet', path: f.path, why, value: v }))) });
      set('wrong type', (f) => wrongType(f.schema), 6);
      set('evil string', () => evilString, 4);
      set('huge string', () => hugeString, 2);
      set('deep nesting', () => deepValue.map((d): RawJson | Deep => d), 1);
      set('numberish', () => numberish, 3);
      set('odd value', (f) => validValue(f.schema, String(f.path[f.path.length - 1]), ctx, 0, true), 4);
      set('long array', () => fc.constantFrom(50_000, 21, 11).map((n) => ({ $raw: `[${new Array(n).fill('{}').join(',')}]` }) as RawJson), 1);
    }
    arbs.push({
      weight: 3,
      arbitrary: fc
        .tuple(fc.constantFrom(...objectPaths), fc.constantFrom(...EXTRA_KEYS), fc.oneof(fc.constantFrom<unknown>(1, 'x', null, true, { a: 1 }), evilString))
        .map(([at, key, value]): Mutation => ({ k: 'extraField', at, key, value })),
    });
    arbs.push({ weight: 2, arbitrary: fc.constantFrom<unknown>(null, [], [{}], 'body', 42, true, {}, [null]).map((value): Mutation => ({ k: 'wholeBody', value })) });
    arbs.push({ weight: 3, arbitrary: fc.constantFrom(...MALFORMED_JSON).map((text): Mutation => ({ k: 'rawBody', text, why: 'malformed JSON' })) });
    arbs.push({ weight: 1, arbitrary: deepValue.map((text): Mutation => ({ k: 'rawBody', text, why: 'deep JSON' })) });
    arbs.push({ weight: 1, arbitrary: fc.constant<Mutation>({ k: 'rawBody', text: { $huge: MB2, ch: 'x' }, why: '2 MB body' }) });
    arbs.push({ weight: 2, arbitrary: fc.constantFrom(...CONTENT_TYPES).map((value): Mutation => ({ k: 'contentType', value })) });
    arbs.push({ weight: 1, arbitrary: fc.constant<Mutation>({ k: 'noBody' }) });
    arbs.push({ weight: 1, arbitrary: fc.constant<Mutation>({ k: 'emptyBody' }) });
  } else {
    arbs.push({ weight: 1, arbitrary: fc.constantFrom<unknown>({ a: 1 }, { $raw: '{' }, 'text', { $huge: KB100, ch: 'x' }).map((value): Mutation => ({ k: 'bodyOnBodyless', value })) });
  }

  if (pathParams.length)
    arbs.push({
      weight: 8,
      arbitrary: fc.tuple(fc.constantFrom(...pathParams), oddId, fc.nat(1000)).map(([p, odd, pick]): Mutation => ({ k: 'pathId', name: p.name, odd, pick })),
    });
  if (queryParams.length) {
    arbs.push({ weight: 6, arbitrary: fc.constantFrom(...queryParams).chain((p) => badQueryValue(p, ctx).map((value): Mutation => ({ k: 'query', name: p.name, value }))) });
    arbs.push({ weight: 1, arbitrary: fc.constantFrom(...queryParams).map((p): Mutation => ({ k: 'queryDup', name: p.name })) });
  }
  arbs.push({
    weight: 1,
    arbitrary: fc
      .constantFrom<[string, Str]>(['foo', 'bar'], ['limit[]', '1'], ['a[b]', 'c'], ['__proto__', 'x'], ['constructor[prototype][x]', '1'], ['%ZZ', '1'], ['', ''], ['x', { $huge: KB100, ch: 'z' }])
      .map((pair): Mutation => ({ k: 'queryExtra', pair })),
  });
  const headerValues = fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom<Str>('fuzz-key-1', 'fuzz-key-2', '', ' ', 'x'.repeat(255), 'x'.repeat(256), 'caf\u00e9', '\t', 'a\u00ffb', { $huge: KB100, ch: 'h' }) },
    { weight: 1, arbitrary: fc.stringMatching(/^[ -~]{1,40}$/) },
  );
  for (const h of headerParams) arbs.push({ weight: 4, arbitrary: headerValues.map((value): Mutation => ({ k: 'header', name: h.name, value })) });
  arbs.push({
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom('x-request-id', 'accept', 'accept-encoding', 'content-encoding', 'x-forwarded-for', 'origin', 'if-none-match'), headerValues)
      .map(([name, value]): Mutation => ({ k: 'header', name, value })),
  });
  // Never DELETE through a method swap: that could consume the main fixtures.
  arbs.push({ weight: 1, arbitrary: fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'OPTIONS').map((value): Mutation => ({ k: 'method', value })) });
  arbs.push({ weight: 1, arbitrary: fc.constantFrom('/', '//', '/x', '/../x', '?', '?&&=', '/%2e', '/.', ';x').map((value): Mutation => ({ k: 'suffix', value })) });
  return fc.oneof(...arbs);
}

function setAt(root: unknown, path: (string | number)[], value: unknown): unknown {
  if (!path.length) return value;
  const [head, ...rest] = path as [string | number, ...(string | number)[]];
  let container: Record<string | number, unknown>;
  if (typeof head === 'number') container = (Array.isArray(root) ? [...root] : []) as unknown as Record<number, unknown>;
  else container = isObj(root) ? { ...root } : {};
  const next = setAt(container[head], rest, value);
  if (head === '__proto__') Object.defineProperty(container, head, { value: next, enumerable: true, configurable: true, writable: true });
  else container[head] = next;
  return container;
}

function dropAt(root: unknown, path: (string | number)[]): unknown {
  if (!path.length || (!isObj(root) && !Array.isArray(root))) return root;
  const [head, ...rest] = path as [string | number, ...(string | number)[]];
  const copy = (Array.isArray(root) ? [...root] : { ...root }) as Record<string | number, unknown>;
  if (!(head in copy)) return root;
  if (!rest.length) delete copy[head];
  else copy[head] = dropAt(copy[head], rest);
  return copy;
}

// ---------------------------------------------------------------------------------------------
// One operation's request generator
// ---------------------------------------------------------------------------------------------

export function requestArb(op: Operation, ctx: FuzzContext): fc.Arbitrary<ReqSpec> {
  const queryParams = op.params.filter((p) => p.in === 'query');
  const validQuery = fc.tuple(...queryParams.map((p) => fc.option(validQueryValue(p, ctx, op.path), { freq: 2 })));
  const validBody: fc.Arbitrary<unknown> = op.body ? validValue(op.body.schema, 'body', ctx) : fc.constant(undefined);
  const mut = mutationArb(op, ctx);
  const mutations = fc.oneof(
    { weight: 15, arbitrary: fc.constant([] as Mutation[]) },
    { weight: 50, arbitrary: fc.tuple(mut) },
    { weight: 25, arbitrary: fc.tuple(mut, mut) },
    { weight: 10, arbitrary: fc.tuple(mut, mut, mut) },
  );
  return fc
    .record({ auth: authChoice, binding: fc.nat(1000), randomId: fc.uuid(), query: validQuery, body: validBody, mutations })
    .map((d) => assemble(op, ctx, d));
}

function assemble(
  op: Operation,
  ctx: FuzzContext,
  d: { auth: AuthChoice; binding: number; randomId: string; query: (Str | null)[]; body: unknown; mutations: Mutation[] },
): ReqSpec {
  const tags: string[] = [];
  const pathParams = op.params.filter((p) => p.in === 'path');
  // Real ids: the main fixtures, or (for DELETE) a binding that may be consumed.
  let binding: Record<string, string> = ctx.mainBinding;
  if (op.method === 'DELETE') {
    const fits = ctx.deleteBindings.filter((b) => pathParams.every((p) => p.resource && b[p.resource]));
    binding = fits.length ? (fits[d.binding % fits.length] as Record<string, string>) : {};
  }
  const ids: Record<string, string> = {};
  const spec: ReqSpec = { op: op.key, tags, method: op.method, pathParams: {}, suffix: '', query: [], headers: {}, body: { kind: 'none' } };
  for (const p of pathParams) {
    ids[p.name] = (p.resource && binding[p.resource]) || d.randomId;
    spec.pathParams[p.name] = encodeURIComponent(ids[p.name] as string);
  }
  queryParams(op).forEach((p, i) => {
    const v = d.query[i];
    if (v !== null && v !== undefined && v !== '') spec.query.push([p.name, v]);
  });
  const auth = authHeader(d.auth, op, ctx);
  if (auth !== undefined) spec.headers.authorization = auth;
  if (d.auth !== 'right') tags.push(`auth:${d.auth}`);
  if (op.body && d.body !== undefined) spec.body = { kind: 'json', value: d.body };

  for (const m of d.mutations) {
    switch (m.k) {
      case 'fieldDrop':
        if (spec.body.kind === 'json') spec.body = { ...spec.body, value: dropAt(spec.body.value, m.path) };
        tags.push(`drop body.${m.path.join('.')}`);
        break;
      case 'fieldSet':
        spec.body = { kind: 'json', value: setAt(spec.body.kind === 'json' ? spec.body.value : {}, m.path, m.value), ...(spec.body.contentType !== undefined && { contentType: spec.body.contentType }) };
        tags.push(`${m.why} at body.${m.path.join('.')}`);
        break;
      case 'extraField':
        spec.body = { kind: 'json', value: setAt(spec.body.kind === 'json' ? spec.body.value : {}, [...m.at, m.key], m.value), ...(spec.body.contentType !== undefined && { contentType: spec.body.contentType }) };
        tags.push(`extra field body.${[...m.at, m.key.slice(0, 20)].join('.')}`);
        break;
      case 'wholeBody':
        spec.body = { kind: 'json', value: m.value };
        tags.push(`body is ${JSON.stringify(m.value)}`);
        break;
      case 'rawBody':
        spec.body = { kind: 'raw', text: m.text };
        tags.push(m.why);
        break;
      case 'contentType':
        spec.body = spec.body.kind === 'none' ? { kind: 'raw', text: 'name=x', contentType: m.value } : { ...spec.body, contentType: m.value };
        tags.push(`content-type ${m.value.slice(0, 40)}`);
        break;
      case 'noBody':
        spec.body = { kind: 'none' };
        tags.push('no body');
        break;
      case 'emptyBody':
        spec.body = { kind: 'raw', text: '', contentType: 'application/json' };
        tags.push('empty body with JSON content-type');
        break;
      case 'bodyOnBodyless':
        spec.body = { kind: 'json', value: m.value };
        tags.push('body on a bodyless operation');
        break;
      case 'pathId': {
        const p = pathParams.find((x) => x.name === m.name);
        spec.pathParams[m.name] = resolveOddId(m.odd, ids[m.name] ?? d.randomId, p?.resource, ctx, m.pick);
        tags.push(`odd ${m.name} (${m.odd.t === 'transform' ? m.odd.f : m.odd.t})`);
        break;
      }
      case 'query':
        spec.query = spec.query.filter(([k]) => k !== m.name);
        spec.query.push([m.name, m.value]);
        tags.push(`bad query ${m.name}`);
        break;
      case 'queryDup':
        spec.query.push([m.name, spec.query.find(([k]) => k === m.name)?.[1] ?? '1'], [m.name, '2']);
        tags.push(`duplicate query ${m.name}`);
        break;
      case 'queryExtra':
        spec.query.push(m.pair);
        tags.push('extra query');
        break;
      case 'header':
        spec.headers[m.name] = m.value;
        tags.push(`header ${m.name}`);
        break;
      case 'method':
        spec.method = m.value;
        tags.push(`method ${m.value}`);
        break;
      case 'suffix':
        spec.suffix = m.value;
        tags.push(`suffix ${m.value}`);
        break;
    }
  }
  return spec;
}

function queryParams(op: Operation): Param[] {
  return op.params.filter((p) => p.in === 'query');
}

/** Deterministic shuffle (mulberry32). */
export function shuffle<T>(xs: T[], seed: number): T[] {
  let a = seed >>> 0;
  const rand = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Auth oracle: requests that must never succeed
// ---------------------------------------------------------------------------------------------

/**
 * What a probe asserts. `denied`: never a 2xx (no, a revoked or a garbage credential; a viewer on
 * a mutating operation; the platform token on tenant operations; a tenant key on platform ones;
 * another tenant's id in the body). `foreign`: the resource ids in the path belong to another
 * tenant than the key's, so the answer is 404 and exactly the answer `control` gets, where those
 * ids are replaced by ids that exist nowhere (SPEC section 2: a foreign id answers 404, exactly
 * like a missing one).
 */
export interface AuthProbe {
  kind: 'anonymous' | 'viewer' | 'platform' | 'tenant-on-platform' | 'foreign-token' | 'foreign-path-id' | 'foreign-body-id';
  expect: 'denied' | 'foreign';
  spec: ReqSpec;
  control?: ReqSpec;
}

/** Path segments before a name, not an id (`/components/{name}/archive`). */
const NAME_RESOURCES = new Set(['components']);

const ANONYMOUS: AuthChoice[] = ['none', 'garbage', 'revoked', 'empty', 'basic', 'long'];

/** Every auth probe of one operation, `perKind` samples of each kind that applies; deterministic for a seed. */
export function authProbes(op: Operation, ctx: FuzzContext, seed: number, perKind = 2): AuthProbe[] {
  if (!op.secured) return [];
  const pathParams = op.params.filter((p) => p.in === 'path');
  const platformOp = op.path.startsWith('/v1/tenants');
  const fits = (b: Record<string, string>) => pathParams.every((p) => p.resource && b[p.resource]);
  const own = (ctx.ownBindings ?? [ctx.mainBinding]).filter(fits);
  const foreign = (ctx.foreignBindings ?? []).filter(fits);
  const validQuery = fc.tuple(...queryParams(op).map((p) => fc.option(validQueryValue(p, ctx, op.path), { freq: 2 })));
  const validBody: fc.Arbitrary<unknown> = op.body ? validValue(op.body.schema, 'body', ctx) : fc.constant(undefined);
  const draw = fc.record({ query: validQuery, body: validBody, pick: fc.nat(1000), missing: fc.array(fc.uuid({ version: 4 }), { minLength: 4, maxLength: 4 }) });
  const samples = fc.sample(draw, { seed, numRuns: perKind * 8 });
  let next = 0;
  const sample = () => samples[next++ % samples.length]!;

  const make = (ids: Record<string, string>, authorization: Str | undefined, d: ReturnType<typeof sample>, body = d.body): ReqSpec => {
    const spec: ReqSpec = { op: op.key, tags: [], method: op.method, pathParams: {}, suffix: '', query: [], headers: {}, body: { kind: 'none' } };
    pathParams.forEach((p, i) => (spec.pathParams[p.name] = encodeURIComponent(ids[p.name] ?? d.missing[i % 4]!)));
    queryParams(op).forEach((p, i) => {
      const v = d.query[i];
      if (v !== null && v !== undefined && v !== '') spec.query.push([p.name, v]);
    });
    if (authorization !== undefined) spec.headers.authorization = authorization;
    if (op.body && body !== undefined) spec.body = { kind: 'json', value: body };
    return spec;
  };
  const idsOf = (b: Record<string, string> | undefined): Record<string, string> =>
    Object.fromEntries(pathParams.map((p) => [p.name, (b && p.resource && b[p.resource]) || '']).filter(([, v]) => v));
  const bearer = (token: string) => `Bearer ${token}`;
  const probes: AuthProbe[] = [];
  const add = (kind: AuthProbe['kind'], expect: AuthProbe['expect'], spec: ReqSpec, control?: ReqSpec) => {
    spec.tags.push(`auth-oracle:${kind}`);
    probes.push({ kind, expect, spec, ...(control && { control }) });
  };
  const ownIds = (d: ReturnType<typeof sample>) => idsOf(own[d.pick % Math.max(1, own.length)]);

  for (let i = 0; i < perKind; i++) {
    for (const choice of ANONYMOUS) {
      const d = sample();
      add('anonymous', 'denied', make(ownIds(d), authHeader(choice, op, ctx), d));
    }
    // A viewer is denied whatever the document reserves for a higher role: every mutation, and
    // the reads it declares operator or admin only (a preview that changes nothing may be a POST).
    if (op.secured && !op.viewerAllowed) {
      const d = sample();
      add('viewer', 'denied', make(ownIds(d), bearer(ctx.tokens.viewer), d));
    }
    if (platformOp) {
      for (const token of [ctx.tokens.admin, ctx.tokens.foreign]) {
        const d = sample();
        add('tenant-on-platform', 'denied', make(ownIds(d), bearer(token), d));
      }
      continue;
    }
    {
      const d = sample();
      add('platform', 'denied', make(ownIds(d), bearer(ctx.tokens.platform), d));
    }
    if (pathParams.length && own.length) {
      // The other tenant's admin key on this tenant's ids; control: the same on ids that exist nowhere.
      const d = sample();
      add('foreign-token', 'foreign', make(ownIds(d), bearer(ctx.tokens.foreign), d), make({}, bearer(ctx.tokens.foreign), d));
      // One path id of the other tenant among the caller's own (both directions).
      for (const [callerBindings, otherBindings, token] of [
        [own, foreign, ctx.tokens.admin],
        [foreign, own, ctx.tokens.foreign],
      ] as const) {
        const e = sample();
        const mine = callerBindings[e.pick % Math.max(1, callerBindings.length)];
        const theirs = otherBindings[(e.pick >> 3) % Math.max(1, otherBindings.length)];
        // Only ids can be another tenant's: a component's name in the path is not one.
        const idParams = pathParams.filter((p) => !NAME_RESOURCES.has(p.resource ?? ''));
        const param = idParams[e.pick % Math.max(1, idParams.length)];
        if (!mine || !theirs || !param?.resource) continue;
        const ids = idsOf(mine);
        const controlIds = { ...ids };
        delete controlIds[param.name];
        ids[param.name] = theirs[param.resource]!;
        add('foreign-path-id', 'foreign', make(ids, bearer(token), e), make(controlIds, bearer(token), e));
      }
    }
    if (op.body) {
      // The other tenant's ids in the body's id fields (a policy, a restore target), on the caller's own path.
      const fields = fieldsOf(op.body.schema).filter((f) => f.schema.format === 'uuid' || (f.schema.anyOf ?? []).some((v) => v.format === 'uuid'));
      const caller = foreign[0] ?? (pathParams.length ? undefined : {});
      for (const f of fields) {
        const resource = resourceOfField(String(f.path[f.path.length - 1]));
        const theirs = resource && ctx.ownIds[resource]?.[0];
        if (!caller || !theirs) continue;
        const d = sample();
        const body = setAt(isObj(d.body) ? d.body : {}, f.path, theirs);
        add('foreign-body-id', 'denied', make(idsOf(caller), bearer(ctx.tokens.foreign), d, body));
      }
    }
  }
  return probes;
}
