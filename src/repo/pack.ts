/*
 * Pack objects: many sealed chunks in one stored object, so a store holds few large objects.
 *
 *   [blob 0][blob 1]...[blob n-1][trailer][trailer length: u32 BE][magic "BKPACK01"]
 *
 * The trailer is sealObject(dataKey, 'pack-trailer', JSON {format, entries: [[id, offset, length]...]}),
 * offsets relative to the start of the pack. The last PACK_FOOTER_BYTES give the trailer's length,
 * so recovery reads a pack's index from its tail alone (footer, then the trailer range) without
 * downloading its blobs. A pack's id is the sha256 of its whole body: a flipped bit anywhere is
 * found by hashing, and verifyPack then says which chunk (or the trailer) it hit.
 */
import { createHash } from 'node:crypto';
import { openChunk, openObject, sealObject } from './seal.js';
import { IntegrityError, type ChunkId, type TenantKeys } from './types.js';

export interface PackEntry {
  id: ChunkId;
  /** Offset of the sealed blob inside the pack. */
  offset: number;
  /** Length of the sealed blob. */
  length: number;
  /** Plaintext length of the chunk, when the writer gave it (recovery restores it from here). */
  rawLength?: number;
}

export interface PackProblem {
  /** What is damaged: the pack as a whole (hash), its footer, its trailer, or one chunk. */
  where: 'pack' | 'footer' | 'trailer' | 'chunk';
  /** The chunk, when `where` is 'chunk'. */
  id?: ChunkId;
  message: string;
}

const MAGIC = Buffer.from('BKPACK01', 'ascii');
export const PACK_FOOTER_BYTES = 4 + MAGIC.length;
const TRAILER_PURPOSE = 'pack-trailer';
const TRAILER_FORMAT = 'bk-pack/v1';
const CHUNK_ID = /^[0-9a-f]{64}$/;

export class PackBuilder {
  #blobs: Buffer[] = [];
  #entries: PackEntry[] = [];
  #bytes = 0;
  /** Where blobs are copied as they come (then `#blobs` stays empty), when the caller gave one. */
  #into: Buffer | null;

  /**
   * `into`: a buffer of the caller's that the pack is built in (each blob copied in as it is
   * added, so the caller's blobs, often views of larger buffers, are not held); the body `finish`
   * answers is then a view of it while the pack fits, and the caller may reuse it once the body
   * is no longer needed. Without it, blobs are kept as given and concatenated by `finish`.
   */
  constructor(into?: Buffer) {
    this.#into = into ?? null;
  }

  add(id: ChunkId, blob: Buffer, rawLength?: number): void {
    if (!CHUNK_ID.test(id)) throw new TypeError('not a chunk id');
    this.#entries.push({ id, offset: this.#bytes, length: blob.length, ...(rawLength !== undefined && { rawLength }) });
    if (this.#into && this.#bytes + blob.length <= this.#into.length) blob.copy(this.#into, this.#bytes);
    else {
      if (this.#into) {
        // outgrown: what was copied so far becomes the first blob
        this.#blobs.push(Buffer.from(this.#into.subarray(0, this.#bytes)));
        this.#into = null;
      }
      this.#blobs.push(blob);
    }
    this.#bytes += blob.length;
  }

  /** The caller's buffer the pack is built in (null when none was given or the pack outgrew it). */
  get buffer(): Buffer | null {
    return this.#into;
  }

  /** Bytes of the blobs added so far (the trailer and footer come on top). */
  get bytes(): number {
    return this.#bytes;
  }

  get count(): number {
    return this.#entries.length;
  }

  finish(dataKey: Buffer): { packId: string; body: Buffer; entries: PackEntry[] } {
    const entries = this.#entries;
    const json = JSON.stringify({ format: TRAILER_FORMAT, entries: entries.map((e) => (e.rawLength === undefined ? [e.id, e.offset, e.length] : [e.id, e.offset, e.length, e.rawLength])) });
    const trailer = sealObject(dataKey, TRAILER_PURPOSE, Buffer.from(json));
    const footer = Buffer.alloc(PACK_FOOTER_BYTES);
    footer.writeUInt32BE(trailer.length, 0);
    MAGIC.copy(footer, 4);
    let body: Buffer;
    const into = this.#into;
    if (into && this.#bytes + trailer.length + footer.length <= into.length) {
      trailer.copy(into, this.#bytes);
      footer.copy(into, this.#bytes + trailer.length);
      body = into.subarray(0, this.#bytes + trailer.length + footer.length);
    } else {
      body = Buffer.concat([...(into ? [into.subarray(0, this.#bytes)] : []), ...this.#blobs, trailer, footer]);
    }
    this.#into = null;
    this.#blobs = [];
    this.#entries = [];
    this.#bytes = 0;
    return { packId: packIdOf(body), body, entries };
  }
}

/** The content address of a pack body. */
export function packIdOf(body: Buffer): string {
  return createHash('sha256').update(body).digest('hex');
}

/** The footer at the end of `tail` (the last bytes of a pack, at least PACK_FOOTER_BYTES). */
export function parsePackFooter(tail: Buffer): { trailerLength: number } {
  if (tail.length < PACK_FOOTER_BYTES) throw new IntegrityError(`pack footer truncated (${tail.length} bytes, ${PACK_FOOTER_BYTES} needed)`);
  const footer = tail.subarray(tail.length - PACK_FOOTER_BYTES);
  if (!footer.subarray(4).equals(MAGIC)) throw new IntegrityError('pack footer: magic BKPACK01 missing (not a pack, or truncated)');
  return { trailerLength: footer.readUInt32BE(0) };
}

/** Where the trailer is in a pack of `packSize` bytes, from its footer: [start, end). */
export function packTrailerRange(packSize: number, footer: { trailerLength: number }): { start: number; end: number } {
  const end = packSize - PACK_FOOTER_BYTES;
  const start = end - footer.trailerLength;
  if (start < 0) throw new IntegrityError(`pack trailer length ${footer.trailerLength} exceeds the pack (${packSize} bytes)`);
  return { start, end };
}

/**
 * The entries of a pack from its trailer. `bytes` is the whole body, or only its last bytes (at
 * least footer + trailer) with `packSize` the full size, so the entries can be checked to tile
 * the pack's blob area exactly.
 */
export function readPackTrailer(dataKey: Buffer, bytes: Buffer, packSize: number = bytes.length): PackEntry[] {
  if (bytes.length > packSize) throw new TypeError('more bytes than the pack size');
  const footer = parsePackFooter(bytes);
  const range = packTrailerRange(packSize, footer);
  const tailStart = packSize - bytes.length;
  if (range.start < tailStart) {
    throw new IntegrityError(`pack tail too short: the trailer starts ${packSize - range.start} bytes from the end, ${bytes.length} given`);
  }
  const plain = openObject(dataKey, TRAILER_PURPOSE, bytes.subarray(range.start - tailStart, range.end - tailStart));
  let parsed: unknown;
  try {
    parsed = JSON.parse(plain.toString('utf8'));
  } catch {
    throw new IntegrityError('pack trailer: not JSON');
  }
  const p = parsed as { format?: unknown; entries?: unknown };
  if (p === null || typeof p !== 'object' || p.format !== TRAILER_FORMAT || !Array.isArray(p.entries)) {
    throw new IntegrityError('pack trailer: unknown format');
  }
  const entries: PackEntry[] = [];
  let next = 0;
  for (const e of p.entries as unknown[]) {
    if (!Array.isArray(e) || (e.length !== 3 && e.length !== 4)) throw new IntegrityError('pack trailer: malformed entry');
    const [id, offset, length, rawLength] = e as [unknown, unknown, unknown, unknown];
    if (typeof id !== 'string' || !CHUNK_ID.test(id) || offset !== next || !Number.isSafeInteger(length) || (length as number) < 0) {
      throw new IntegrityError('pack trailer: entries do not tile the pack');
    }
    if (rawLength !== undefined && (!Number.isSafeInteger(rawLength) || (rawLength as number) < 0)) throw new IntegrityError('pack trailer: malformed entry');
    entries.push({ id, offset, length: length as number, ...(rawLength !== undefined && { rawLength: rawLength as number }) });
    next = offset + (length as number);
  }
  if (next !== range.start) throw new IntegrityError(`pack trailer: entries end at ${next}, the trailer starts at ${range.start}`);
  return entries;
}

/**
 * Every problem of a pack body: its hash against `expectedId`, its footer and trailer, and each
 * chunk (decrypted and MAC-checked). Empty when the pack is intact.
 */
export async function verifyPack(keys: TenantKeys, body: Buffer, expectedId?: string): Promise<PackProblem[]> {
  const problems: PackProblem[] = [];
  if (expectedId !== undefined) {
    const actual = packIdOf(body);
    if (actual !== expectedId) problems.push({ where: 'pack', message: `sha256 of the pack is ${actual}, ${expectedId} expected` });
  }
  let entries: PackEntry[];
  try {
    parsePackFooter(body);
  } catch (err) {
    problems.push({ where: 'footer', message: (err as Error).message });
    return problems;
  }
  try {
    entries = readPackTrailer(keys.dataKey, body);
  } catch (err) {
    if (!(err instanceof IntegrityError)) throw err;
    problems.push({ where: 'trailer', message: err.message });
    return problems;
  }
  const opened = await Promise.all(
    entries.map((e) =>
      openChunk(keys, e.id, body.subarray(e.offset, e.offset + e.length)).then(
        () => null,
        (err: unknown) => {
          if (!(err instanceof IntegrityError)) throw err;
          return { where: 'chunk', id: e.id, message: err.message } satisfies PackProblem;
        },
      ),
    ),
  );
  for (const p of opened) if (p) problems.push(p);
  return problems;
}
