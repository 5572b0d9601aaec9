import { z } from 'zod';
import type { Access } from './auth.js';

/** Shared HTTP schemas: problem bodies, ids, pagination, and the shapes of documented answers. */
export const PROBLEM_MEDIA_TYPE = 'application/problem+json';

export const problemSchema = z
  .object({
    type: z.string().describe('a URI reference naming the kind of problem, e.g. `/problems/validation-error`'),
    title: z.string().describe('short summary of the kind (the same for every problem of one type)'),
    status: z.number().int().describe('the HTTP status code'),
    detail: z.string().describe('what went wrong in this case, for a human'),
    errors: z
      .array(z.object({ path: z.string().describe('where, e.g. `body.components.0.config.path` or `querystring.limit`'), message: z.string() }))
      .optional()
      .describe('every problem found with the request (422)'),
  })
  .meta({ id: 'Problem', description: 'RFC 9457 problem details, always sent as application/problem+json' });

export const uuid = z.uuid();
export const idParams = z.object({ id: uuid });
export const timestamp = z.string().meta({ format: 'date-time' });

export const listQuery = z.object({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().max(512).optional(),
});

export function listOf<T extends z.ZodType>(item: T) {
  return z.object({ items: z.array(item), next_cursor: z.string().nullable().describe('pass as `cursor` for the next page; null on the last page') });
}

/** The response headers the document declares (components.headers), by name. */
export const HEADERS = {
  Location: { description: 'the path of the resource created or started', required: true, schema: { type: 'string', format: 'uri-reference' } },
  'Idempotent-Replayed': {
    description: 'present (`true`) when this is the stored first answer to an earlier request with the same Idempotency-Key and body',
    required: false,
    schema: { type: 'string', enum: ['true'] },
  },
  'Content-Disposition': { description: '`attachment; filename="..."`: the suggested file name', required: true, schema: { type: 'string' } },
  'WWW-Authenticate': { description: 'the authentication scheme to use, e.g. `Bearer realm="backups"`', required: true, schema: { type: 'string' } },
  'Retry-After': { description: 'seconds to wait before trying again', required: true, schema: { type: 'integer', minimum: 0 } },
  'RateLimit-Limit': { description: 'requests allowed per window for this credential (or, before it authenticated here, this client address)', required: true, schema: { type: 'integer', minimum: 0 } },
  'RateLimit-Remaining': { description: 'requests left in the current window', required: true, schema: { type: 'integer', minimum: 0 } },
  'RateLimit-Reset': { description: 'seconds until the current window ends', required: true, schema: { type: 'integer', minimum: 0 } },
  'X-Request-Id': { description: "the request's id (the caller's X-Request-Id when well formed), as logged", required: true, schema: { type: 'string' } },
} as const;
export type HeaderName = keyof typeof HEADERS;

/**
 * A JSON answer with its description and the headers it carries. The schema serializes the
 * answer; src/http/openapi.ts puts the description and headers into the document.
 */
export function json<S extends z.ZodType>(schema: S, description: string, headers: HeaderName[] = []) {
  return { description, content: { 'application/json': { schema } }, ...(headers.length > 0 && { headers: pickHeaders(headers) }) };
}

/**
 * A problem+json answer a route gives besides the standard ones: src/http/openapi.ts adds those
 * (400, 401, 403, 404, 413, 415, 422, 429, 503) to every operation they apply to.
 */
export function problemResponse(description: string, headers: HeaderName[] = []) {
  return { description, content: { [PROBLEM_MEDIA_TYPE]: { schema: problemSchema } }, ...(headers.length > 0 && { headers: pickHeaders(headers) }) };
}

/** Header schemas for @fastify/swagger; the document then refers to components.headers instead. */
function pickHeaders(names: HeaderName[]): Record<string, object> {
  return Object.fromEntries(names.map((n) => [n, HEADERS[n].schema]));
}

/**
 * Routes behind a tenant or platform credential: an API key, an OAuth2 access token, or the
 * platform token, all sent as `Authorization: Bearer`.
 */
export const bearer = [{ bearerAuth: [] }];
/**
 * The security of a route behind `guard(access)`: any bearer credential with that role, which for
 * an OAuth2 access token means that scope (or a wider one).
 */
export function securityFor(access: Access): { [scheme: string]: string[] }[] {
  return access === 'platform' ? bearer : [{ bearerAuth: [] }, { oauth2: [access] }];
}
/** Routes anyone may call (the probes). */
export const publicAccess: { [scheme: string]: string[] }[] = [];

export function iso(d: Date): string;
export function iso(d: Date | null | undefined): string | null;
export function iso(d: Date | null | undefined): string | null {
  return d ? d.toISOString() : null;
}
