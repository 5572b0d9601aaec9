import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors, isResponseSerializationError } from 'fastify-type-provider-zod';
import { Conflict, DomainError, Forbidden, Invalid, NotFound, RateLimited, Unauthorized, Unavailable, type FieldProblem } from '../errors.js';
import { isDatabaseUnavailable } from '../db/errors.js';

/** RFC 9457 body. `type` is a URI reference relative to the API (documented in the README). */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  errors?: FieldProblem[];
  instance?: string;
}

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  409: 'Conflict',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

const SLUGS: Record<number, string> = {
  400: 'bad-request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not-found',
  409: 'conflict',
  413: 'payload-too-large',
  415: 'unsupported-media-type',
  422: 'validation-error',
  429: 'rate-limited',
  500: 'internal-error',
  503: 'unavailable',
};

export function problem(status: number, detail: string, errors?: FieldProblem[]): Problem {
  return {
    type: `/problems/${SLUGS[status] ?? 'error'}`,
    title: TITLES[status] ?? 'Error',
    status,
    detail,
    ...(errors && errors.length ? { errors } : {}),
  };
}

export function sendProblem(reply: FastifyReply, p: Problem): FastifyReply {
  return reply.code(p.status).type('application/problem+json').send(p);
}

function zodPath(prefix: string, path: readonly PropertyKey[]): string {
  return [prefix, ...path.map(String)].filter(Boolean).join('.');
}

/** What a 415 says: the type sent and the one the route reads (its `consumes`, else JSON). */
function unsupportedMediaType(req: FastifyRequest): string {
  const consumes = (req.routeOptions.schema as { consumes?: string[] } | undefined)?.consumes;
  const expected = consumes?.length ? consumes.join(' or ') : 'application/json';
  const sent = req.headers['content-type']?.split(';')[0]?.trim();
  // Quoted with JSON.stringify: the header is the client's text, kept to a readable length.
  return sent ? `unsupported content type ${JSON.stringify(sent.slice(0, 100))}; expected ${expected}` : `a body needs a content type; expected ${expected}`;
}

/** Maps any thrown error to a problem; logs only real faults. */
export function toProblem(err: unknown, req: FastifyRequest): { problem: Problem; headers?: Record<string, string> } {
  if (err instanceof DomainError) {
    if (err instanceof NotFound) return { problem: problem(404, err.message) };
    if (err instanceof Invalid) return { problem: problem(422, err.message, err.errors) };
    if (err instanceof Conflict) return { problem: problem(409, err.message) };
    if (err instanceof RateLimited)
      return { problem: problem(429, err.message), headers: { 'retry-after': String(err.retryAfterSeconds) } };
    if (err instanceof Unauthorized)
      return { problem: problem(401, err.message), headers: { 'www-authenticate': 'Bearer realm="backups"' } };
    if (err instanceof Forbidden) return { problem: problem(403, err.message) };
    if (err instanceof Unavailable) return { problem: problem(503, err.message), headers: { 'retry-after': '5' } };
  }
  if (hasZodFastifySchemaValidationErrors(err)) {
    const where = err.validationContext ?? 'request';
    const errors = err.validation.map((v) => {
      const path = v.instancePath.split('/').filter(Boolean);
      return { path: zodPath(where, path), message: v.message ?? 'invalid' };
    });
    // A malformed id can name no resource: answer exactly like a missing one.
    if (where === 'params') return { problem: problem(404, 'resource not found') };
    return { problem: problem(422, `invalid ${where}`, errors) };
  }
  if (isDatabaseUnavailable(err)) {
    req.log.warn({ err }, 'database unavailable');
    return { problem: problem(503, 'the database is unavailable; try again shortly'), headers: { 'retry-after': '5' } };
  }
  const fe = err as FastifyError;
  if (!isResponseSerializationError(err) && typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    const detail =
      fe.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err instanceof SyntaxError
        ? 'request body is not valid JSON'
        : fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE'
          ? 'request body is too large'
          : fe.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE'
            ? unsupportedMediaType(req)
            : fe.message;
    const headers: Record<string, string> = {};
    return { problem: problem(fe.statusCode, detail), headers };
  }
  req.log.error({ err }, 'unhandled error');
  return { problem: problem(500, 'an unexpected error occurred; it has been logged') };
}

/** Path of the first string holding a NUL character (PostgreSQL cannot store one), or null. */
function findNul(value: unknown, path: string, depth = 0): string | null {
  if (typeof value === 'string') return value.includes('\u0000') ? path : null;
  if (depth > 32 || value === null || typeof value !== 'object') return null;
  for (const [k, v] of Object.entries(value)) {
    const hit = findNul(v, `${path}.${k}`, depth + 1);
    if (hit) return hit;
  }
  return null;
}

/** Errors Fastify answers before routing (bad percent-encoding, over-long parameters). */
export function frameworkErrorHandler(err: FastifyError, req: FastifyRequest, reply: FastifyReply): void {
  const status = typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 400;
  // An id that cannot be decoded or is too long names no resource.
  const p = err.code === 'FST_ERR_BAD_URL' || err.code === 'FST_ERR_MAX_PARAM_LENGTH' ? problem(404, 'resource not found') : problem(status, 'malformed request');
  req.log.info({ code: err.code }, 'request refused before routing');
  void sendProblem(reply, p);
}

export function registerProblemHandlers(app: FastifyInstance): void {
  app.addHook('preValidation', async (req) => {
    const hit = findNul(req.body, 'body') ?? findNul(req.query, 'querystring');
    if (hit) throw new Invalid('text must not contain NUL characters', [{ path: hit, message: 'must not contain NUL (\\u0000) characters' }]);
  });
  app.setErrorHandler((err, req, reply) => {
    let mapped: ReturnType<typeof toProblem>;
    try {
      mapped = toProblem(err, req);
    } catch (mapErr) {
      // The mapper itself must never leak a message: fall back to a bare 500.
      req.log.error({ err, mapErr }, 'error while mapping an error');
      mapped = { problem: problem(500, 'an unexpected error occurred; it has been logged') };
    }
    if (mapped.headers) void reply.headers(mapped.headers);
    return sendProblem(reply, mapped.problem);
  });
  app.setNotFoundHandler((req, reply) => sendProblem(reply, problem(404, `no route ${req.method} ${req.url.split('?')[0]}`)));
}
