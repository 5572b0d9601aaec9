import path from 'node:path';
import { IntegrityError, type ChunkId, type DirEntry, type EntryType, type ManifestHeader, type StreamManifestHeader, type StreamRef } from './types.js';

/*
 * Component manifests: JSON lines, UTF-8, every line ended by '\n', no empty line.
 *
 *   {"format":"bk-manifest/v1","type":"directory"}
 *   {"path":"a","type":"directory","mode":493,...}
 *   {"path":"a/b.txt","type":"file",...,"chunks":["<64 hex>",...]}
 *
 * A directory manifest lists its entries in path order (`comparePaths`), the component root not
 * included. A stream manifest (a postgres dump) is its header, `bytes` included, then lines
 * `{"chunks":[...]}` of 1 to 1000 ids each, in stream order.
 *
 * The encoder writes keys in one fixed order, so equal entries give equal bytes (the caller
 * hashes them: the artifact's `sha256`). The decoders take nothing on trust: any line that is not
 * exactly what the encoder would write about a valid tree (types, ranges, path rules, order,
 * parents) fails the decode with an IntegrityError that names the line.
 */

export const MANIFEST_FORMAT = 'bk-manifest/v1' as const;

/** At most this many chunk ids per line of a stream manifest. */
export const STREAM_LINE_CHUNKS = 1000;

/**
 * Longest line a decoder accepts (a file's entry carries all its chunk ids, ~67 bytes each: with
 * ~1 MiB chunks this is a file of ~2 TiB). Bounds the memory one hostile line can take.
 */
export const MAX_LINE_BYTES = 128 * 1024 * 1024;

/** What the encoder batches lines into. */
const OUTPUT_BYTES = 64 * 1024;

const CHUNK_ID = /^[0-9a-f]{64}$/;
const NS = /^(0|-?[1-9][0-9]*)$/;
const UINT_STRING = /^(0|[1-9][0-9]*)$/;
const ENTRY_TYPES: ReadonlySet<string> = new Set<EntryType>(['file', 'directory', 'symlink']);
const ENTRY_KEYS: ReadonlySet<string> = new Set(['path', 'type', 'mode', 'uid', 'gid', 'mtime_ns', 'ctime_ns', 'ino', 'size', 'link_target', 'chunks']);
const MAX_ID = 2 ** 32 - 1;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
/** NAME_MAX of Linux, in bytes. */
const MAX_SEGMENT_BYTES = 255;

/** Maps UTF-16 code units so that comparing them orders strings by code point (= UTF-8 byte order). */
function codePointOrderUnit(u: number): number {
  if (u >= 0xe000) return u - 0x800; // above the surrogates: below them once they move up
  if (u >= 0xd800) return u + 0x2000; // surrogates stand for code points above U+FFFF
  return u;
}

/** Compares two path segments by code point (the order of their UTF-8 bytes, locale-free). */
export function compareSegments(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return codePointOrderUnit(x) - codePointOrderUnit(y);
  }
  return a.length - b.length;
}

/**
 * The path order of manifests: the segment arrays compared lexicographically, each segment by
 * code point (UTF-8 byte order). So a directory comes right before its contents, and all of them
 * before the next sibling: `a` < `a/b` < `a/z` < `a.txt` (`a/b` against `a.txt` compares the
 * segments `a` and `a.txt` first, and `a` is a prefix of `a.txt`); plain string order would put
 * `a.txt` between `a` and `a/b`, because '.' (0x2e) sorts before '/' (0x2f).
 * This is also the order of a depth-first walk that visits each directory's names sorted by
 * `compareSegments`. Negative, zero or positive like every comparator.
 */
export function comparePaths(a: string, b: string): number {
  // One pass, no split (this runs for every entry of every manifest written or read): up to the
  // first code unit where they differ the two paths have the same segments; there, the end of a
  // path or of a segment ('/') sorts before any character (a segment that is a prefix of the
  // other's comes first, and so does a path with fewer segments), the end before '/' (an entry
  // before what lies below it), and characters by code point.
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    if (x === SLASH) return -1;
    if (y === SLASH) return 1;
    return codePointOrderUnit(x) - codePointOrderUnit(y);
  }
  return a.length - b.length;
}

const SLASH = 0x2f;

/** True when `p` is `dir` itself or below it (relative manifest paths). */
export function isSameOrInside(dir: string, p: string): boolean {
  return p === dir || p.startsWith(`${dir}/`);
}

/** Problem with a manifest path, or null: relative posix, no empty, `.` or `..` segment, no NUL, segments of at most 255 bytes. */
export function manifestPathProblem(p: unknown): string | null {
  if (typeof p !== 'string') return 'path is not a string';
  if (p.length === 0) return 'path is empty';
  if (p.includes('\0')) return 'path contains a NUL byte';
  if (p.startsWith('/')) return 'path is absolute';
  for (const segment of p.split('/')) {
    if (segment === '') return 'path has an empty segment';
    if (segment === '.' || segment === '..') return `path has a '${segment}' segment`;
    if (Buffer.byteLength(segment) > MAX_SEGMENT_BYTES) return 'path has a segment longer than 255 bytes';
  }
  if (LONE_SURROGATE.test(p)) return 'path is not valid Unicode';
  return null;
}

const isUint = (v: unknown, max: number) => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;

/** Problem with one entry taken alone (not its place in the manifest), or null. */
export function entryProblem(e: unknown): string | null {
  if (typeof e !== 'object' || e === null || Array.isArray(e)) return 'not an object';
  const o = e as Record<string, unknown>;
  // A field set to undefined (only possible in memory, never in JSON) counts as absent.
  for (const key of Object.keys(o)) if (!ENTRY_KEYS.has(key) && o[key] !== undefined) return `unknown field ${JSON.stringify(key)}`;
  const pathProblem = manifestPathProblem(o.path);
  if (pathProblem) return pathProblem;
  if (typeof o.type !== 'string' || !ENTRY_TYPES.has(o.type)) return 'type is not file, directory or symlink';
  if (!isUint(o.mode, 0o7777)) return 'mode is not an integer in 0..0o7777';
  if (!isUint(o.uid, MAX_ID)) return 'uid is not a 32-bit unsigned integer';
  if (!isUint(o.gid, MAX_ID)) return 'gid is not a 32-bit unsigned integer';
  if (typeof o.mtime_ns !== 'string' || !NS.test(o.mtime_ns)) return 'mtime_ns is not a decimal string';
  if (typeof o.ctime_ns !== 'string' || !NS.test(o.ctime_ns)) return 'ctime_ns is not a decimal string';
  if (typeof o.ino !== 'string' || !UINT_STRING.test(o.ino)) return 'ino is not a decimal string';
  if (!isUint(o.size, Number.MAX_SAFE_INTEGER)) return 'size is not a non-negative integer';
  if (o.type === 'symlink') {
    if (typeof o.link_target !== 'string' || o.link_target === '') return 'symlink without a link_target';
    if (o.link_target.includes('\0')) return 'link_target contains a NUL byte';
    if (LONE_SURROGATE.test(o.link_target)) return 'link_target is not valid Unicode';
  } else if (o.link_target !== undefined) return 'link_target on an entry that is not a symlink';
  if (o.type === 'file') {
    if (!Array.isArray(o.chunks)) return 'file without chunks';
    for (const id of o.chunks) if (typeof id !== 'string' || !CHUNK_ID.test(id)) return 'chunks holds something that is not a chunk id';
    if ((o.size === 0) !== (o.chunks.length === 0)) return o.size === 0 ? 'empty file with chunks' : 'non-empty file without chunks';
  } else {
    if (o.chunks !== undefined) return 'chunks on an entry that is not a file';
    if (o.size !== 0) return 'size is not 0 on an entry that is not a file';
  }
  return null;
}

/**
 * Checks a sequence of entries as a manifest, one at a time, in O(depth) memory: each entry valid
 * alone, paths strictly increasing in path order, the parent of each entry a directory entry met
 * earlier (so nothing lies below a symlink or a file). Throws IntegrityError naming `where`.
 */
export class ManifestValidator {
  private last: string | undefined;
  /** The directory entries that are ancestors of the last entry, outermost first. */
  private readonly dirs: string[] = [];

  /** Returns the entry, typed; `where` names it in messages (e.g. "manifest line 3"). */
  check(e: unknown, where: string): DirEntry {
    const problem = entryProblem(e);
    if (problem) throw new IntegrityError(`${where}: ${problem}`);
    const entry = e as DirEntry;
    if (this.last !== undefined && comparePaths(this.last, entry.path) >= 0) {
      throw new IntegrityError(`${where}: ${JSON.stringify(entry.path)} is not after ${JSON.stringify(this.last)} in path order`);
    }
    while (this.dirs.length > 0 && !isSameOrInside(this.dirs[this.dirs.length - 1] as string, entry.path)) this.dirs.pop();
    const parent = path.posix.dirname(entry.path);
    if (parent !== '.' && this.dirs[this.dirs.length - 1] !== parent) {
      throw new IntegrityError(`${where}: the parent of ${JSON.stringify(entry.path)} is not a directory entry before it`);
    }
    if (entry.type === 'directory') this.dirs.push(entry.path);
    this.last = entry.path;
    return entry;
  }
}

/** One entry as a JSON line, keys in a fixed order (what makes equal manifests equal bytes). */
export function entryLine(e: DirEntry): string {
  const o: Record<string, unknown> = {
    path: e.path,
    type: e.type,
    mode: e.mode,
    uid: e.uid,
    gid: e.gid,
    mtime_ns: e.mtime_ns,
    ctime_ns: e.ctime_ns,
    ino: e.ino,
    size: e.size,
  };
  if (e.type === 'symlink') o.link_target = e.link_target;
  if (e.type === 'file') o.chunks = e.chunks ?? [];
  return `${JSON.stringify(o)}\n`;
}

async function* batched(lines: AsyncIterable<string> | Iterable<string>): AsyncGenerator<Buffer> {
  let parts: string[] = [];
  let size = 0;
  for await (const line of lines) {
    parts.push(line);
    size += line.length;
    if (size >= OUTPUT_BYTES) {
      yield Buffer.from(parts.join(''));
      parts = [];
      size = 0;
    }
  }
  if (parts.length > 0) yield Buffer.from(parts.join(''));
}

/**
 * The bytes of a directory manifest: the header line, then one line per entry. The entries are
 * checked as the decoder checks them (order, parents, fields), so a manifest this writes always
 * decodes; a bad entry makes the generator throw IntegrityError ("entry N").
 */
export function encodeManifest(header: ManifestHeader, entries: AsyncIterable<DirEntry> | Iterable<DirEntry>): AsyncGenerator<Buffer> {
  if (header.format !== MANIFEST_FORMAT || header.type !== 'directory') throw new IntegrityError('not a directory manifest header');
  async function* lines(): AsyncGenerator<string> {
    yield `${JSON.stringify({ format: MANIFEST_FORMAT, type: 'directory' })}\n`;
    const validator = new ManifestValidator();
    let n = 0;
    for await (const entry of entries) {
      n++;
      yield entryLine(validator.check(entry, `entry ${n}`));
    }
  }
  return batched(lines());
}

/** The lines of a manifest as strings, numbered from 1; strict about framing and UTF-8. */
async function* readLines(bytes: AsyncIterable<Buffer | Uint8Array | string>): AsyncGenerator<{ no: number; text: string }> {
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let no = 0;
  const take = (piece: Buffer): { no: number; text: string } => {
    pending.push(piece);
    const line = pending.length === 1 ? (pending[0] as Buffer) : Buffer.concat(pending);
    pending = [];
    pendingBytes = 0;
    no++;
    if (line.length === 0) throw new IntegrityError(`manifest line ${no}: empty line`);
    let text: string;
    try {
      text = decoder.decode(line);
    } catch {
      throw new IntegrityError(`manifest line ${no}: not valid UTF-8`);
    }
    return { no, text };
  };
  for await (const raw of bytes) {
    let buf = typeof raw === 'string' ? Buffer.from(raw) : Buffer.isBuffer(raw) ? raw : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
    for (let nl = buf.indexOf(10); nl !== -1; nl = buf.indexOf(10)) {
      if (pendingBytes + nl > MAX_LINE_BYTES) throw new IntegrityError(`manifest line ${no + 1}: longer than ${MAX_LINE_BYTES} bytes`);
      const out = take(buf.subarray(0, nl));
      buf = buf.subarray(nl + 1);
      yield out;
    }
    if (buf.length > 0) {
      pendingBytes += buf.length;
      if (pendingBytes > MAX_LINE_BYTES) throw new IntegrityError(`manifest line ${no + 1}: longer than ${MAX_LINE_BYTES} bytes`);
      pending.push(Buffer.from(buf)); // a copy: the source may reuse its buffer
    }
  }
  if (pendingBytes > 0) throw new IntegrityError(`manifest line ${no + 1}: the manifest does not end with a newline (truncated?)`);
}

function parseLine(line: { no: number; text: string }): unknown {
  try {
    return JSON.parse(line.text);
  } catch {
    throw new IntegrityError(`manifest line ${line.no}: not valid JSON`);
  }
}

function checkHeader(value: unknown, type: 'directory' | 'stream'): ManifestHeader {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new IntegrityError('manifest line 1: the header is not an object');
  const o = value as Record<string, unknown>;
  if (o.format !== MANIFEST_FORMAT) throw new IntegrityError(`manifest line 1: unknown manifest format ${JSON.stringify(o.format)}`);
  if (o.type !== type) throw new IntegrityError(`manifest line 1: a ${String(o.type)} manifest where a ${type} manifest was expected`);
  const allowed = type === 'stream' ? ['format', 'type', 'bytes'] : ['format', 'type'];
  for (const key of Object.keys(o)) if (!allowed.includes(key)) throw new IntegrityError(`manifest line 1: unknown header field ${JSON.stringify(key)}`);
  if (type === 'stream' && !isUint(o.bytes, Number.MAX_SAFE_INTEGER)) throw new IntegrityError('manifest line 1: bytes is not a non-negative integer');
  return type === 'stream' ? { format: MANIFEST_FORMAT, type, bytes: o.bytes as number } as StreamManifestHeader : { format: MANIFEST_FORMAT, type };
}

/**
 * Reads a directory manifest's header, then hands back its entries as a lazy stream: each line is
 * checked (ManifestValidator) before its entry is yielded, so a consumer acts on nothing that
 * follows a bad line. Throws (or the generator throws) IntegrityError "manifest line N: ...";
 * an empty input, a missing final newline, an empty line, bad UTF-8 or JSON all count.
 */
export async function openManifest(bytes: AsyncIterable<Buffer | Uint8Array | string>): Promise<{ header: ManifestHeader; entries: AsyncGenerator<DirEntry> }> {
  const lines = readLines(bytes);
  const first = await lines.next();
  if (first.done) throw new IntegrityError('manifest line 1: the manifest is empty');
  const header = checkHeader(parseLine(first.value), 'directory');
  async function* entries(): AsyncGenerator<DirEntry> {
    const validator = new ManifestValidator();
    try {
      for await (const line of { [Symbol.asyncIterator]: () => lines }) {
        yield validator.check(parseLine(line), `manifest line ${line.no}`);
      }
    } finally {
      await lines.return(undefined);
    }
  }
  return { header, entries: entries() };
}

/** The entries of a directory manifest, header checked first (see openManifest). */
export async function* decodeManifest(bytes: AsyncIterable<Buffer | Uint8Array | string>): AsyncGenerator<DirEntry> {
  const { entries } = await openManifest(bytes);
  yield* entries;
}

/** Reads a whole directory manifest into memory: for tests and small trees only. */
export async function decodeManifestToArray(bytes: AsyncIterable<Buffer | Uint8Array | string>): Promise<DirEntry[]> {
  const out: DirEntry[] = [];
  for await (const entry of decodeManifest(bytes)) out.push(entry);
  return out;
}

/** The bytes of a stream manifest: header with `bytes`, then lines of at most 1000 chunk ids. */
export async function* encodeStreamManifest(ref: StreamRef): AsyncGenerator<Buffer> {
  const problem = streamRefProblem(ref);
  if (problem) throw new IntegrityError(`stream manifest: ${problem}`);
  const lines: string[] = [`${JSON.stringify({ format: MANIFEST_FORMAT, type: 'stream', bytes: ref.bytes })}\n`];
  for (let i = 0; i < ref.chunks.length; i += STREAM_LINE_CHUNKS) {
    lines.push(`${JSON.stringify({ chunks: ref.chunks.slice(i, i + STREAM_LINE_CHUNKS) })}\n`);
  }
  yield* batched(lines);
}

function streamRefProblem(ref: StreamRef): string | null {
  if (!isUint(ref.bytes, Number.MAX_SAFE_INTEGER)) return 'bytes is not a non-negative integer';
  if (!Array.isArray(ref.chunks)) return 'chunks is not an array';
  for (const id of ref.chunks) if (typeof id !== 'string' || !CHUNK_ID.test(id)) return 'chunks holds something that is not a chunk id';
  if ((ref.bytes === 0) !== (ref.chunks.length === 0)) return ref.bytes === 0 ? 'an empty stream with chunks' : 'a non-empty stream without chunks';
  return null;
}

/** Reads a stream manifest back into its StreamRef (the chunk list is held in memory: ~67 bytes per chunk). */
export async function decodeStreamManifest(bytes: AsyncIterable<Buffer | Uint8Array | string>): Promise<StreamRef> {
  const lines = readLines(bytes);
  const first = await lines.next();
  if (first.done) throw new IntegrityError('manifest line 1: the manifest is empty');
  const header = checkHeader(parseLine(first.value), 'stream') as StreamManifestHeader;
  const chunks: ChunkId[] = [];
  for await (const line of { [Symbol.asyncIterator]: () => lines }) {
    const value = parseLine(line);
    const where = `manifest line ${line.no}`;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new IntegrityError(`${where}: not an object`);
    const o = value as Record<string, unknown>;
    if (Object.keys(o).length !== 1 || !Array.isArray(o.chunks)) throw new IntegrityError(`${where}: expected exactly {"chunks":[...]}`);
    if (o.chunks.length === 0 || o.chunks.length > STREAM_LINE_CHUNKS) throw new IntegrityError(`${where}: a line holds 1 to ${STREAM_LINE_CHUNKS} chunk ids`);
    for (const id of o.chunks) {
      if (typeof id !== 'string' || !CHUNK_ID.test(id)) throw new IntegrityError(`${where}: chunks holds something that is not a chunk id`);
      chunks.push(id);
    }
  }
  const ref = { chunks, bytes: header.bytes };
  const problem = streamRefProblem(ref);
  if (problem) throw new IntegrityError(`stream manifest: ${problem}`);
  return ref;
}
