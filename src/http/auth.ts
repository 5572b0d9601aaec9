import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest, onRequestAsyncHookHandler } from 'fastify';
import { Forbidden, Unauthorized } from '../errors.js';
import type { ApiKeyRepo } from '../modules/api-keys/api-keys.repo.js';
import { hashToken } from '../crypto/tokens.js';
import type { RecentCredentials } from './rate-limit.js';
import { looksLikeJwt } from '../modules/oauth/access-tokens.js';

export type Role = 'viewer' | 'operator' | 'admin';
export const ROLE_RANK: Record<Role, number> = { viewer: 1, operator: 2, admin: 3 };

/**
 * A tenant credential is an API key or an OAuth2 access token of an API client (`credential`);
 * both act alike everywhere, so routes only see `kind: 'key'`. For a client, `keyId` is its id.
 */
export type Principal = { kind: 'platform' } | { kind: 'key'; tenantId: string; keyId: string; role: Role; credential: 'api_key' | 'api_client' };
export type Access = 'platform' | Role;

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
}

function sha(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

export interface AuthDeps {
  adminToken: string | undefined;
  apiKeys: Pick<ApiKeyRepo, 'findActiveByHash' | 'touch'>;
  /** Verifies an OAuth2 access token (a JWT) and that its client still exists; throws Unauthorized. */
  accessTokens?: { resolve(token: string): Promise<{ tenantId: string; clientId: string; role: Role }> };
  now: () => Date;
  /** Told of every token that authenticates (and of every one that fails), for the rate limiter's buckets. */
  recent?: RecentCredentials;
}

/** The bearer token of the request, or null. */
export function bearerToken(req: FastifyRequest): string | null {
  const header = req.headers.authorization;
  const m = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  return m?.[1] ?? null;
}

/** Resolves the bearer token; a missing, unknown, revoked or expired token is 401. */
export async function resolvePrincipal(req: FastifyRequest, deps: AuthDeps): Promise<Principal> {
  const token = bearerToken(req);
  if (!token) throw new Unauthorized('missing bearer token (Authorization: Bearer <token>)');
  if (deps.adminToken && timingSafeEqual(sha(token), sha(deps.adminToken))) {
    deps.recent?.remember(hashToken(token), 'platform');
    return { kind: 'platform' };
  }
  // API keys are `bk_...`; a token of three dot-separated base64url segments is a JWT.
  if (deps.accessTokens && looksLikeJwt(token)) {
    const hash = hashToken(token);
    const client = await deps.accessTokens.resolve(token).catch((err: unknown) => {
      deps.recent?.forget(hash);
      throw err;
    });
    deps.recent?.remember(hash, `client:${client.clientId}`);
    return { kind: 'key', tenantId: client.tenantId, keyId: client.clientId, role: client.role, credential: 'api_client' };
  }
  if (token.length > 200) throw new Unauthorized('invalid or expired token');
  const hash = hashToken(token);
  const key = await deps.apiKeys.findActiveByHash(hash, deps.now());
  if (!key) {
    deps.recent?.forget(hash);
    throw new Unauthorized('invalid or expired token');
  }
  deps.recent?.remember(hash, `key:${key.id}`);
  // Awaited: the repo writes at most once a minute per key (otherwise this resolves at once), and
  // a request made right after the first use then sees last_used_at (a flaky test under load
  // showed the fire-and-forget write landing after the next read). A failed write is only logged.
  await deps.apiKeys.touch(key.id, deps.now()).catch((err: unknown) => req.log.warn({ err }, 'could not record key use'));
  return { kind: 'key', tenantId: key.tenantId, keyId: key.id, role: key.role, credential: 'api_key' };
}

export function createGuard(deps: AuthDeps) {
  return function guard(access: Access): onRequestAsyncHookHandler {
    return async (req) => {
      if (access === 'platform' && !deps.adminToken) throw new Forbidden('tenant management is disabled: ADMIN_TOKEN is not configured');
      const principal = await resolvePrincipal(req, deps);
      req.principal = principal;
      if (access === 'platform') {
        if (principal.kind !== 'platform') throw new Forbidden('this operation needs the platform operator token');
        return;
      }
      if (principal.kind !== 'key') throw new Forbidden('the platform token only manages tenants; use a tenant API key');
      if (ROLE_RANK[principal.role] < ROLE_RANK[access]) throw new Forbidden(`this operation needs the ${access} role (${principal.credential === 'api_client' ? 'the token' : 'the key'} has ${principal.role})`);
    };
  };
}
export type Guard = ReturnType<typeof createGuard>;

/** The tenant of the authenticated key (routes behind a role guard only). */
export function tenantOf(req: FastifyRequest): { tenantId: string; keyId: string; role: Role } {
  const p = req.principal;
  if (!p || p.kind !== 'key') throw new Forbidden('a tenant API key is required');
  return { tenantId: p.tenantId, keyId: p.keyId, role: p.role };
}
