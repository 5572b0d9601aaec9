/*
 * A chunk's id and sealed form, sealed whole objects, and the wrapping of tenant keys.
 * The chunk and object formats are implemented once, in seal-core.mjs (shared with the worker
 * threads of seal-pool.ts); the layouts are documented there. This module adds the typed errors.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import * as core from './seal-core.mjs';
import { IntegrityError, WrongKeyError, type ChunkId, type TenantKeys } from './types.js';

export { SEAL_OVERHEAD } from './seal-core.mjs';

/** An error of seal-core (named, not typed, so that it crosses threads) as the class of types.ts. */
export function typedError(err: unknown): unknown {
  if (err instanceof Error && !(err instanceof IntegrityError) && err.name === 'IntegrityError') return new IntegrityError(err.message);
  return err;
}

export function generateTenantKeys(): TenantKeys {
  return { dataKey: randomBytes(32), macKey: randomBytes(32) };
}

export function chunkId(macKey: Buffer, plain: Uint8Array): ChunkId {
  return core.chunkId(macKey, plain);
}

export function sealChunk(keys: TenantKeys, id: ChunkId, plain: Buffer): Promise<Buffer> {
  return core.sealChunk(keys, id, plain);
}

/** The plaintext of a chunk, decrypted and checked against its id; IntegrityError otherwise. */
export async function openChunk(keys: TenantKeys, id: ChunkId, blob: Buffer): Promise<Buffer> {
  try {
    return await core.openChunk(keys, id, blob);
  } catch (err) {
    throw typedError(err);
  }
}

/** A small whole object (manifest root, snapshot record, pack trailer), bound to `purpose`. */
export function sealObject(dataKey: Buffer, purpose: string, plain: Buffer): Buffer {
  return core.sealObject(dataKey, purpose, plain);
}

export function openObject(dataKey: Buffer, purpose: string, blob: Buffer): Buffer {
  try {
    return core.openObject(dataKey, purpose, blob);
  } catch (err) {
    throw typedError(err);
  }
}

/*
 * Wrapped tenant keys: `bkkeys:v1:` + base64(nonce(12) || AES-256-GCM(dataKey || macKey) || tag(16)),
 * key = ENCRYPTION_KEY, AAD = `bkkeys:v1` (a later version cannot be opened as this one).
 */
const WRAP_VERSION = 'bkkeys:v1';
const WRAP_PREFIX = `${WRAP_VERSION}:`;
const WRAPPED_BYTES = 12 + 64 + 16;

function checkMasterKey(masterKey: Buffer): void {
  if (!Buffer.isBuffer(masterKey) || masterKey.length !== 32) throw new TypeError('the master key must be 32 bytes');
}

export function wrapTenantKeys(keys: TenantKeys, masterKey: Buffer): string {
  checkMasterKey(masterKey);
  if (keys.dataKey.length !== 32 || keys.macKey.length !== 32) throw new TypeError('tenant keys must be 32 bytes each');
  const nonce = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', masterKey, nonce);
  cipher.setAAD(Buffer.from(WRAP_VERSION));
  const ct = Buffer.concat([cipher.update(keys.dataKey), cipher.update(keys.macKey), cipher.final()]);
  return WRAP_PREFIX + Buffer.concat([nonce, ct, cipher.getAuthTag()]).toString('base64');
}

/** WrongKeyError when `masterKey` did not wrap this value; a plain Error when it is malformed. */
export function unwrapTenantKeys(wrapped: string, masterKey: Buffer): TenantKeys {
  checkMasterKey(masterKey);
  if (typeof wrapped !== 'string' || !wrapped.startsWith(WRAP_PREFIX)) throw new Error(`wrapped tenant keys: not a ${WRAP_VERSION} value`);
  const b64 = wrapped.slice(WRAP_PREFIX.length);
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) throw new Error('wrapped tenant keys: not base64');
  const raw = Buffer.from(b64, 'base64');
  if (raw.length !== WRAPPED_BYTES) throw new Error(`wrapped tenant keys: ${raw.length} bytes, ${WRAPPED_BYTES} expected`);
  const decipher = createDecipheriv('aes-256-gcm', masterKey, raw.subarray(0, 12), { authTagLength: 16 });
  decipher.setAAD(Buffer.from(WRAP_VERSION));
  decipher.setAuthTag(raw.subarray(raw.length - 16));
  let plain: Buffer;
  try {
    plain = Buffer.concat([decipher.update(raw.subarray(12, raw.length - 16)), decipher.final()]);
  } catch {
    throw new WrongKeyError('the master key does not unwrap these tenant keys');
  }
  return { dataKey: Buffer.from(plain.subarray(0, 32)), macKey: Buffer.from(plain.subarray(32, 64)) };
}

/** A short non-secret fingerprint of a master key, to tell which key wrapped what. */
export function masterKeyId(masterKey: Buffer): string {
  checkMasterKey(masterKey);
  return createHmac('sha256', masterKey).update('bk-master-key-id').digest('hex').slice(0, 16);
}
