import { hkdfSync, randomUUID } from 'node:crypto';
import { SignJWT, errors, jwtVerify } from 'jose';
import { z } from 'zod';
import { Unauthorized } from '../../errors.js';
import type { Role } from '../../http/auth.js';
import { roleSchema } from '../api-keys/api-keys.schemas.js';

export const ISSUER = 'backup-service';
export const AUDIENCE = 'backup-service-api';
// RFC 9068 media type of JWT access tokens: a token of another kind (an ID token, say) signed
// with the same key is never taken for an access token.
const TYP = 'at+jwt';
const SIGNING_LABEL = 'backup-service oauth2 access-token signing key v1';

/**
 * HS256 with a key derived from ENCRYPTION_KEY by HKDF under a label of its own, rather than a
 * dedicated secret: every API instance must verify the tokens any other instance issued, and
 * ENCRYPTION_KEY is already the one secret all processes are required to share (config.ts), so
 * no new setting can be forgotten or differ between instances. The label keeps the MAC key
 * independent of the AES key that seals stored secrets (no key used by two algorithms).
 * Rotating ENCRYPTION_KEY invalidates live tokens; they last minutes, and clients ask again.
 */
export function deriveSigningKey(encryptionKey: Buffer): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', encryptionKey, Buffer.alloc(0), SIGNING_LABEL, 32));
}

export interface AccessTokenClaims {
  clientId: string;
  tenantId: string;
  scope: Role;
}

const claimsSchema = z.object({
  sub: z.uuid(),
  tenant: z.uuid(),
  scope: roleSchema,
});

/** Tells a JWT (three base64url segments) from an API key (`bk_...`) by its shape alone. */
export function looksLikeJwt(token: string): boolean {
  return token.length <= 4096 && /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token);
}

export function createAccessTokens(deps: { key: Uint8Array; ttlSeconds: number; now: () => Date }) {
  const { key, ttlSeconds, now } = deps;
  return {
    ttlSeconds,
    async sign(c: AccessTokenClaims): Promise<string> {
      const iat = Math.floor(now().getTime() / 1000);
      return new SignJWT({ tenant: c.tenantId, scope: c.scope, client_id: c.clientId })
        .setProtectedHeader({ alg: 'HS256', typ: TYP })
        .setIssuer(ISSUER)
        .setAudience(AUDIENCE)
        .setSubject(c.clientId)
        .setIssuedAt(iat)
        .setExpirationTime(iat + ttlSeconds)
        .setJti(randomUUID())
        .sign(key);
    },
    /** The token's claims; a bad signature, wrong issuer/audience/type or an expired token is 401. */
    async verify(token: string): Promise<AccessTokenClaims> {
      try {
        const { payload } = await jwtVerify(token, key, {
          algorithms: ['HS256'],
          issuer: ISSUER,
          audience: AUDIENCE,
          typ: TYP,
          currentDate: now(),
          requiredClaims: ['exp', 'iat', 'jti', 'sub'],
        });
        const c = claimsSchema.safeParse(payload);
        if (!c.success) throw new Unauthorized('invalid or expired token');
        return { clientId: c.data.sub, tenantId: c.data.tenant, scope: c.data.scope };
      } catch (err) {
        if (err instanceof errors.JWTExpired) throw new Unauthorized('access token expired; request a new one from POST /oauth/token');
        if (err instanceof Unauthorized) throw err;
        throw new Unauthorized('invalid or expired token');
      }
    },
  };
}
export type AccessTokens = ReturnType<typeof createAccessTokens>;
