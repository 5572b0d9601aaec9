import type { FastifyReply, FastifyRequest } from 'fastify';
import type { App } from '../../http/types.js';
import { json, problemResponse } from '../../http/schemas.js';
import { OAuthError, type Credentials, type OAuthService } from './oauth.service.js';
import { noStore, oauthErrorSchema, tokenRequestBody, tokenResponseSchema } from './oauth.schemas.js';

const FORM = 'application/x-www-form-urlencoded';

/** A form body as an object; a parameter sent twice becomes an array, which validation refuses (RFC 6749 section 3.2). */
function parseForm(text: string): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of new URLSearchParams(text)) {
    const had = out[k];
    out[k] = had === undefined ? v : [...(Array.isArray(had) ? had : [had]), v];
  }
  return out;
}

/** Authorization: Basic base64(urlencoded(id) ":" urlencoded(secret)) (RFC 6749 section 2.3.1); undefined when absent. */
function basicCredentials(req: FastifyRequest): Credentials | undefined {
  const h = req.headers.authorization;
  if (typeof h !== 'string' || !/^Basic\s/i.test(h)) return undefined;
  const decoded = Buffer.from(h.replace(/^Basic\s+/i, '').trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) throw new OAuthError('invalid_client', 'malformed HTTP Basic credentials');
  const formDecode = (part: string) => decodeURIComponent(part.replace(/\+/g, ' '));
  try {
    return { clientId: formDecode(decoded.slice(0, colon)), clientSecret: formDecode(decoded.slice(colon + 1)) };
  } catch {
    throw new OAuthError('invalid_client', 'malformed HTTP Basic credentials');
  }
}

function sendOAuthError(reply: FastifyReply, err: OAuthError) {
  const status = err.code === 'invalid_client' ? 401 : 400;
  // RFC 6749 section 5.2: a client that tried Basic must be told the scheme; the others are told too
  // (Basic is the method the RFC prefers), so that every 401 carries it.
  if (status === 401) void reply.header('www-authenticate', 'Basic realm="backups", charset="UTF-8"');
  return reply.code(status).type('application/json').send({ error: err.code, error_description: err.message });
}

export function oauthRoutes(app: App, deps: { service: OAuthService }) {
  // Its own scope: the form parser (and accepting any body, to answer RFC errors rather than
  // a 415) applies to the token endpoint only; every other route stays JSON-only.
  void app.register(async (scope: App) => {
    scope.addContentTypeParser(FORM, { parseAs: 'string' }, (_req, body, done) => done(null, parseForm(body as string)));
    scope.addContentTypeParser('*', { parseAs: 'string' }, (_req, _body, done) => done(null, undefined));

    scope.post('/oauth/token', {
      attachValidation: true,
      schema: {
        operationId: 'issueToken',
        tags: ['oauth'],
        summary: 'Exchange client credentials for an access token (OAuth2 client credentials grant)',
        description:
          'Credentials by HTTP Basic (client_id:client_secret) or as client_id and client_secret in the body, not both. Errors follow RFC 6749 section 5.2: invalid_client (401), invalid_request, invalid_scope, unsupported_grant_type (400).',
        consumes: [FORM],
        security: [{ basicAuth: [] }, {}],
        body: tokenRequestBody,
        response: {
          200: noStore(json(tokenResponseSchema, 'the access token'), { pragma: true }),
          400: noStore(json(oauthErrorSchema, 'invalid_request, invalid_scope or unsupported_grant_type (RFC 6749 section 5.2)'), { pragma: true }),
          401: noStore(json(oauthErrorSchema, 'invalid_client: unknown client, wrong secret or no client authentication', ['WWW-Authenticate']), { pragma: true }),
          503: problemResponse('the database is unavailable; try again after Retry-After', ['Retry-After']),
        },
      },
      handler: async (req, reply) => {
        // Token responses, errors included, are never cached (RFC 6749 section 5.1).
        void reply.header('cache-control', 'no-store').header('pragma', 'no-cache');
        try {
          const fromHeader = basicCredentials(req);
          const type = String(req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
          if (type !== FORM) throw new OAuthError('invalid_request', `the token request must be ${FORM}`);
          if (req.validationError) throw new OAuthError('invalid_request', `invalid parameters: ${req.validationError.message.slice(0, 200)}`);
          const body = req.body;
          const inBody = body.client_id !== undefined || body.client_secret !== undefined;
          if (fromHeader && inBody) throw new OAuthError('invalid_request', 'use one client authentication method: HTTP Basic or client_id/client_secret in the body, not both');
          const credentials = fromHeader ?? (inBody ? { clientId: body.client_id ?? '', clientSecret: body.client_secret ?? '' } : null);
          return await deps.service.issue({ grantType: body.grant_type, scope: body.scope, credentials });
        } catch (err) {
          if (err instanceof OAuthError) return sendOAuthError(reply, err);
          throw err;
        }
      },
    });
  });
}
