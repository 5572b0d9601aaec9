import { z } from 'zod';
import { roleSchema } from '../api-keys/api-keys.schemas.js';

// Not strict: RFC 6749 section 3.2 has the server ignore parameters it does not know.
export const tokenRequestBody = z
  .object({
    grant_type: z.string().min(1).describe('client_credentials, the only grant this server supports'),
    client_id: z.string().max(200).optional().describe('with client_secret, instead of HTTP Basic'),
    client_secret: z.string().max(200).optional(),
    scope: z.string().max(200).optional().describe('a role name (viewer, operator, admin) not above the client\'s role; omitted: the client\'s role'),
  })
  .meta({ id: 'TokenRequest' });

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
