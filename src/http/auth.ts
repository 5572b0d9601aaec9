import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest, onRequestAsyncHookHandler } from 'fastify';
import { Forbidden, Unauthorized } from '../errors.js';
import type { ApiKeyRepo } from '../modules/api-keys/api-keys.repo.js';
import { hashToken } from '../crypto/tokens.js';
import type { RecentCredentials } from './rate-limit.js';

export type Role = 'viewer' | 'operator' | 'admin';
export const ROLE_RANK: Record<Role, number> = { viewer: 1, operator: 2, admin: 3 };

export type Principal = { kind: 'platform' } | { kind: 'key'; tenantId: string; keyId: string; role: Role };
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
  if (token.length > 200) throw new Unauthorized('invalid or expired token');
  const hash = hashToken(token);
  const key = await deps.apiKeys.findActiveByHash(hash, deps.now());
  if (!key) {
    deps.recent?.forget(hash);
    throw new Unauthorized('invalid or expired token');
  }
  deps.recent?.remember(hash, `key:${key.id}`);
  deps.apiKeys.touch(key.id, deps.now()).catch((err: unknown) => req.log.warn({ err }, 'could not record key use'));
  return { kind: 'key', tenantId: key.tenantId, keyId: key.id, role: key.role };
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
      if (ROLE_RANK[principal.role] < ROLE_RANK[access]) throw new Forbidden(`this operation needs the ${access} role (key has ${principal.role})`);
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
