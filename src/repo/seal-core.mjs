/*
 * The sealed formats of the repository, in plain JavaScript so that seal.ts (main thread, typed
 * by seal-core.d.mts) and seal-worker.mjs (worker threads, which load no TypeScript) share one
 * implementation. Errors are plain Errors whose `name` is 'IntegrityError'; seal.ts and
 * seal-pool.ts turn them into the IntegrityError class of types.ts.
 *
 * Chunk blob (format v1):
 *
 *   offset  size  field
 *   0       1     format byte: 0x10 = v1 raw payload, 0x11 = v1 zstd-compressed payload
 *   1       12    nonce: random 96 bits, fresh for every blob
 *   13      n     AES-256-GCM ciphertext of the payload (the plaintext, or its zstd frame)
 *   13+n    16    GCM tag
 *
 *   key = the tenant's dataKey; AAD = format byte || ASCII chunk id (64 hex). The id in the AAD
 *   means a blob cannot be passed off as another chunk, and the format byte in it means the
 *   raw/compressed flag cannot be flipped. After decryption (and decompression) the HMAC of the
 *   plaintext under macKey must equal the id.
 *
 * Object blob (format v1; manifests, snapshot records, pack trailers):
 *
 *   0       1     format byte: 0x21
 *   1       12    nonce
 *   13      n     AES-256-GCM ciphertext
 *   13+n    16    GCM tag
 *
 *   AAD = format byte || UTF-8 purpose (e.g. `snapshot:<id>`, `pack-trailer`). The format bytes
 *   of chunks and objects differ, so neither opens as the other.
 *
 * Random 96-bit nonces: the GCM bound of 2^32 messages per key is ~4 PiB of 1 MiB chunks per
 * tenant, far beyond any tenant's repository.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createRequire } from 'node:module';
import { compress, decompress } from '@mongodb-js/zstd';

export const CHUNK_RAW = 0x10;
export const CHUNK_ZSTD = 0x11;
export const OBJECT_V1 = 0x21;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
/** Bytes a sealed blob adds to its payload: format byte, nonce, tag. */
export const SEAL_OVERHEAD = 1 + NONCE_BYTES + TAG_BYTES;
/** zstd level of chunks. (@mongodb-js/zstd 1.2.2 ignores the level argument; its default is 3.) */
const ZSTD_LEVEL = 3;
const CHUNK_ID = /^[0-9a-f]{64}$/;

function integrityError(message) {
  const err = new Error(message);
  err.name = 'IntegrityError';
  return err;
}

function checkKey(key, what) {
  if (!Buffer.isBuffer(key) || key.length !== 32) throw new TypeError(`${what} must be a 32-byte Buffer`);
}

function checkId(id) {
  if (typeof id !== 'string' || !CHUNK_ID.test(id)) throw new TypeError('not a chunk id (64 lowercase hex)');
}

/** The id of a chunk: HMAC-SHA-256 of its plaintext under the tenant's MAC key, hex. */
export function chunkId(macKey, plain) {
  checkKey(macKey, 'macKey');
  return createHmac('sha256', macKey).update(plain).digest('hex');
}

function aad(format, label) {
  const l = Buffer.from(label, 'utf8');
  const out = Buffer.allocUnsafe(1 + l.length);
  out[0] = format;
  l.copy(out, 1);
  return out;
}

function gcmSeal(key, format, label, payload) {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(aad(format, label));
  const out = Buffer.allocUnsafeSlow(SEAL_OVERHEAD + payload.length);
  out[0] = format;
  nonce.copy(out, 1);
  const ct = cipher.update(payload);
  ct.copy(out, 1 + NONCE_BYTES);
  const fin = cipher.final();
  fin.copy(out, 1 + NONCE_BYTES + ct.length);
  cipher.getAuthTag().copy(out, out.length - TAG_BYTES);
  return out;
}

/** The payload, or null when the tag does not verify. */
function gcmOpen(key, format, label, blob) {
  const decipher = createDecipheriv('aes-256-gcm', key, blob.subarray(1, 1 + NONCE_BYTES), { authTagLength: TAG_BYTES });
  decipher.setAAD(aad(format, label));
  decipher.setAuthTag(blob.subarray(blob.length - TAG_BYTES));
  const body = blob.subarray(1 + NONCE_BYTES, blob.length - TAG_BYTES);
  try {
    const head = decipher.update(body);
    const tail = decipher.final();
    return tail.length === 0 ? head : Buffer.concat([head, tail]);
  } catch {
    return null;
  }
}

/**
 * A chunk blob as the pieces it is made of, [head (format byte, nonce), ciphertext..., tag], for
 * a caller that copies them into a buffer of its own anyway (seal-worker.mjs): no whole blob is
 * made in between.
 */
function gcmSealParts(key, format, label, payload) {
  const head = Buffer.allocUnsafe(1 + NONCE_BYTES);
  head[0] = format;
  randomBytes(NONCE_BYTES).copy(head, 1);
  const cipher = createCipheriv('aes-256-gcm', key, head.subarray(1));
  cipher.setAAD(aad(format, label));
  const ct = cipher.update(payload);
  const fin = cipher.final();
  return fin.length === 0 ? [head, ct, cipher.getAuthTag()] : [head, ct, fin, cipher.getAuthTag()];
}

async function chunkPayload(plain) {
  if (plain.length > 0) {
    const packed = await compress(plain, ZSTD_LEVEL);
    if (packed.length < plain.length) return { format: CHUNK_ZSTD, payload: packed };
  }
  return { format: CHUNK_RAW, payload: plain };
}

/** sealChunk's blob as pieces to concatenate (see gcmSealParts). */
export async function sealChunkParts(keys, id, plain) {
  checkKey(keys.dataKey, 'dataKey');
  checkId(id);
  const { format, payload } = await chunkPayload(plain);
  return gcmSealParts(keys.dataKey, format, id, payload);
}

/**
 * zstd level of stream chunks (database dumps, RDB snapshots: writer.ts writeStream). Measured on
 * this machine, 1 MiB chunks: a mariadb-dump --hex-blob 8.5 ms/MB at level 3 against 2.2 at
 * level 1, to 24.4% and 23.0% of its size; a Redis RDB 5.0 against 2.0 ms/MB, 83.6% and 84.5%.
 */
export const STREAM_ZSTD_LEVEL = 1;
/** The package's native binding, whose compress honours the level (its JS wrapper, 1.2.2, drops it). */
const zstdNative = createRequire(import.meta.url)('@mongodb-js/zstd/bindings.js');

async function compressAt(plain, level) {
  if (level === ZSTD_LEVEL) return compress(plain);
  try {
    return await zstdNative.compress(plain, level);
  } catch (e) {
    throw new Error(`zstd: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** zstd at `level` (stored raw when that is not smaller), then AES-256-GCM under dataKey with the id as AAD. */
export async function sealChunk(keys, id, plain, level = ZSTD_LEVEL) {
  checkKey(keys.dataKey, 'dataKey');
  checkId(id);
  let format = CHUNK_RAW;
  let payload = plain;
  if (plain.length > 0) {
    const packed = await compressAt(plain, level);
    if (packed.length < plain.length) {
      format = CHUNK_ZSTD;
      payload = packed;
    }
  }
  return gcmSeal(keys.dataKey, format, id, payload);
}

/**
 * The verified plaintext of a chunk blob; IntegrityError saying what failed otherwise. The blob is
 * read only before the first wait (restore-core.mjs reuses its read buffer once this is called).
 */
export async function openChunk(keys, id, blob) {
  checkKey(keys.dataKey, 'dataKey');
  checkKey(keys.macKey, 'macKey');
  checkId(id);
  if (blob.length < SEAL_OVERHEAD) throw integrityError(`chunk ${id}: blob truncated (${blob.length} bytes, at least ${SEAL_OVERHEAD} needed)`);
  const format = blob[0];
  if (format !== CHUNK_RAW && format !== CHUNK_ZSTD) throw integrityError(`chunk ${id}: unknown format byte 0x${format.toString(16).padStart(2, '0')}`);
  const payload = gcmOpen(keys.dataKey, format, id, blob);
  if (payload === null) {
    throw integrityError(`chunk ${id}: authentication failed (blob altered or truncated, another chunk's blob, or another data key)`);
  }
  let plain = payload;
  if (format === CHUNK_ZSTD) {
    try {
      plain = await decompress(payload);
    } catch (err) {
      throw integrityError(`chunk ${id}: decompression failed (${err instanceof Error ? err.message : String(err)})`);
    }
  }
  const mac = createHmac('sha256', keys.macKey).update(plain).digest();
  if (!timingSafeEqual(mac, Buffer.from(id, 'hex'))) throw integrityError(`chunk ${id}: MAC of the plaintext does not match the id (another MAC key?)`);
  return plain;
}

/** A small whole object sealed under dataKey, bound to `purpose`. */
export function sealObject(dataKey, purpose, plain) {
  checkKey(dataKey, 'dataKey');
  return gcmSeal(dataKey, OBJECT_V1, purpose, plain);
}

export function openObject(dataKey, purpose, blob) {
  checkKey(dataKey, 'dataKey');
  if (blob.length < SEAL_OVERHEAD) throw integrityError(`object ${purpose}: blob truncated (${blob.length} bytes)`);
  if (blob[0] !== OBJECT_V1) throw integrityError(`object ${purpose}: unknown format byte 0x${blob[0].toString(16).padStart(2, '0')}`);
  const plain = gcmOpen(dataKey, OBJECT_V1, purpose, blob);
  if (plain === null) throw integrityError(`object ${purpose}: authentication failed (altered, truncated, another purpose, or another data key)`);
  return plain;
}
