import { timingSafeEqual } from 'node:crypto';
import { generateToken, hashToken } from '../../crypto/tokens.js';

// Like API keys: 256 random bits, so a fast sha256 is enough and only it is stored. The prefix
// tells a client secret from an API key at a glance (in a leaked file, a secret scanner).
const SECRET_PREFIX = 'bkcs_';

export function generateSecret(): { secret: string; hash: string } {
  const { token, hash } = generateToken(SECRET_PREFIX);
  return { secret: token, hash };
}

/** Constant-time comparison of a presented secret with a stored hash. */
export function secretMatches(secret: string, storedHash: string): boolean {
  const a = Buffer.from(hashToken(secret), 'hex');
  const b = Buffer.from(storedHash, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}
