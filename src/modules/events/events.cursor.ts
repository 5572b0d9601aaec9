import { Invalid } from '../../errors.js';

/**
 * Keyset cursor over events' `seq` (newest first): base64url of the decimal seq. Only cursors this
 * API could have produced decode: canonical base64url of a positive bigint, so a garbled,
 * re-padded or hand-made cursor answers 422 rather than paging from somewhere arbitrary.
 */
const MAX_SEQ = 9223372036854775807n;
const DIGITS = /^[1-9][0-9]{0,18}$/;
const BASE64URL = /^[A-Za-z0-9_-]{1,32}$/;

export function encodeEventCursor(seq: bigint): string {
  return Buffer.from(seq.toString(), 'utf8').toString('base64url');
}

export function decodeEventCursor(s: string): bigint {
  if (BASE64URL.test(s)) {
    const text = Buffer.from(s, 'base64url').toString('utf8');
    if (DIGITS.test(text)) {
      const seq = BigInt(text);
      if (seq <= MAX_SEQ && encodeEventCursor(seq) === s) return seq;
    }
  }
  throw new Invalid('invalid cursor', [{ path: 'cursor', message: 'not a cursor returned by this API' }]);
}
