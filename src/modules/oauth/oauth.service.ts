import { Unauthorized } from '../../errors.js';
import { ROLE_RANK, type Role } from '../../http/auth.js';
import type { ApiClientRepo } from '../api-clients/api-clients.repo.js';
import { secretMatches } from '../api-clients/client-secrets.js';
import type { AccessTokens } from './access-tokens.js';

/** The RFC 6749 section 5.2 error codes this server answers. */
export type OAuthErrorCode = 'invalid_request' | 'invalid_client' | 'invalid_scope' | 'unsupported_grant_type';

export class OAuthError extends Error {
  constructor(
    readonly code: OAuthErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export interface Credentials {
  clientId: string;
  clientSecret: string;
}

export interface TokenRequest {
  grantType: string;
  scope: string | undefined;
  /** From the Authorization: Basic header, or from the body (client_id, client_secret); never both. */
  credentials: Credentials | null;
}

const ROLES = Object.keys(ROLE_RANK) as Role[];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Scopes are role names; roles nest (admin > operator > viewer), so a list of them grants the
 * highest one asked for. No scope grants the client's role; one above it is invalid_scope.
 */
function grantedScope(requested: string | undefined, role: Role): Role {
  const names = (requested ?? '').split(' ').filter(Boolean);
  if (names.length === 0) return role;
  const unknown = names.find((n) => !(ROLES as string[]).includes(n));
  if (unknown !== undefined) throw new OAuthError('invalid_scope', `unknown scope "${unknown.slice(0, 50)}" (scopes are the role names ${ROLES.join(', ')})`);
  const asked = (names as Role[]).reduce((a, b) => (ROLE_RANK[b] > ROLE_RANK[a] ? b : a));
  if (ROLE_RANK[asked] > ROLE_RANK[role]) throw new OAuthError('invalid_scope', `scope "${asked}" is above this client's role (${role})`);
  return asked;
}

export function createOAuthService(deps: { clients: ApiClientRepo; tokens: AccessTokens; now: () => Date; log?: { warn(o: object, m: string): void } }) {
  const { clients, tokens, now } = deps;
  return {
    /** The client credentials grant (RFC 6749 section 4.4). */
    async issue(req: TokenRequest) {
      if (req.grantType !== 'client_credentials') throw new OAuthError('unsupported_grant_type', 'only grant_type=client_credentials is supported');
      if (!req.credentials) throw new OAuthError('invalid_client', 'client authentication is required (HTTP Basic, or client_id and client_secret in the body)');
      const { clientId, clientSecret } = req.credentials;
      const client = UUID.test(clientId) ? await clients.findForAuthentication(clientId) : null;
      // Unknown client and wrong secret answer the same, so client ids cannot be probed.
      if (!client || !secretMatches(clientSecret, client.secretHash)) throw new OAuthError('invalid_client', 'unknown client or wrong secret');
      const scope = grantedScope(req.scope, client.role);
      const accessToken = await tokens.sign({ clientId: client.id, tenantId: client.tenantId, scope });
      // Awaited (one UPDATE per token, rare next to requests) so last_used_at is there on the next read; a failure is only logged.
      await clients.touch(client.id, now()).catch((err: unknown) => deps.log?.warn({ err }, 'could not record client use'));
      return { access_token: accessToken, token_type: 'Bearer' as const, expires_in: tokens.ttlSeconds, scope };
    },
    /**
     * The principal of an access token: its signature and expiry, then the client row on every
     * request (no cache), so a deleted client's tokens stop at once. The role is the token's
     * scope, never more than the client's role.
     */
    async resolve(token: string): Promise<{ tenantId: string; clientId: string; role: Role }> {
      const claims = await tokens.verify(token);
      const role = await clients.activeRole(claims.tenantId, claims.clientId);
      if (!role) throw new Unauthorized('invalid or revoked token: its API client was deleted');
      return { tenantId: claims.tenantId, clientId: claims.clientId, role: ROLE_RANK[claims.scope] <= ROLE_RANK[role] ? claims.scope : role };
    },
  };
}
export type OAuthService = ReturnType<typeof createOAuthService>;
