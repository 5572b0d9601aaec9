import { z } from 'zod';
import { roleSchema } from '../api-keys/api-keys.schemas.js';

// Not strict: RFC 6749 section 3.2 has the server ignore parameters it does not know.
export const tokenRequestBody = z
  .object({
    grant_type: z.string().min(1).describe('client_credentials, the only grant this server supports'),
    client_id: z.string().max(200).optional().describe('with client_secret, instead of HTTP Basic'),
    client_secret: z.string().max(200).optional(),
    scope: z.string().max(200).optional().describe('a role name (viewer, operator, admin) not above the client\'s role; omitted: the client\'s role'),
  });

export const tokenResponseSchema = z
  .object({
    access_token: z.string().describe('a signed JWT; send it as Authorization: Bearer <access_token>'),
    token_type: z.literal('Bearer'),
    expires_in: z.number().int().describe('seconds until it expires (OAUTH_TOKEN_TTL_S)'),
    scope: roleSchema.describe('the role the token carries'),
  })
  .meta({ id: 'TokenResponse' });

export const oauthErrorSchema = z
  .object({
    error: z.enum(['invalid_request', 'invalid_client', 'invalid_scope', 'unsupported_grant_type']),
    error_description: z.string(),
  })
  .meta({ id: 'OAuthError', description: 'RFC 6749 section 5.2 error response (application/json)' });

/** Answers carrying a secret or a token are never stored by a cache (RFC 6749 section 5.1). */
const NO_STORE_HEADERS = {
  'Cache-Control': { type: 'string', enum: ['no-store'], description: 'the answer carries a credential: never cache it' },
};
const PRAGMA = { Pragma: { type: 'string', enum: ['no-cache'], description: 'for HTTP/1.0 caches (RFC 6749 section 5.1)' } };

export function noStore<R extends { headers?: object }>(r: R, opts: { pragma?: boolean } = {}) {
  return { ...r, headers: { ...r.headers, ...NO_STORE_HEADERS, ...(opts.pragma && PRAGMA) } };
}
