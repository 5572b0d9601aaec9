import { createHash, randomBytes } from 'node:crypto';

// Tokens carry 256 random bits, so a fast hash is enough (no need for a slow KDF): only the
// sha256 is stored, and the visible prefix lets operators recognise a key in lists and logs.
const TOKEN_PREFIX = 'bk_';

export function generateToken(): { token: string; prefix: string; hash: string } {
  const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
  return { token, prefix: token.slice(0, 10), hash: hashToken(token) };
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}
