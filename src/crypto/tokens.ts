import { createHash, randomBytes } from 'node:crypto';

// Tokens carry 256 random bits, so a fast hash is enough (no need for a slow KDF): only the
// sha256 is stored, and the visible prefix lets operators recognise a key in lists and logs.
const TOKEN_PREFIX = 'bk_';

/** A new random token (API keys' `bk_` unless told another visible prefix), its display prefix and its sha256. */
export function generateToken(tokenPrefix = TOKEN_PREFIX): { token: string; prefix: string; hash: string } {
  const token = tokenPrefix + randomBytes(32).toString('base64url');
  return { token, prefix: token.slice(0, 10), hash: hashToken(token) };
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}
