/**
 * Incremental reader of tar headers (ustar, GNU long names, pax) that never looks at file
 * contents, so it can watch a multi-GB archive stream go by at memory speed.
 */

export interface ScannedEntry {
  /** typeflag character, e.g. '0' file, '2' symlink, '5' directory */
  type: string;
  path: string;
  linkpath: string;
}

const BLOCK = 512;
const MAX_META_BYTES = 1 << 20;
const META_TYPES = new Set(['L', 'K', 'x', 'g']);

export class TarScanError extends Error {
  override name = 'TarScanError';
}

function cString(buf: Buffer, start: number, length: number): string {
  const field = buf.subarray(start, start + length);
  const end = field.indexOf(0);
  return field.subarray(0, end === -1 ? field.length : end).toString('utf8');
}

function numeric(buf: Buffer, start: number, length: number): number {
  const field = buf.subarray(start, start + length);
  if ((field[0] ?? 0) & 0x80) {
    // GNU base-256 for values that do not fit in octal
    let value = (field[0] ?? 0) & 0x7f;
    for (let i = 1; i < field.length; i++) value = value * 256 + (field[i] ?? 0);
    return value;
  }
  const text = field.toString('latin1').replace(/[\0 ]+$/g, '').trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new TarScanError('invalid numeric field in tar header');
  return parseInt(text, 8);
}

function checksumMatches(header: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : (header[i] ?? 0);
  return sum === numeric(header, 148, 8);
}

/** pax records: "<len> <key>=<value>\n" */
function parsePax(buf: Buffer): Map<string, string> {
  const records = new Map<string, string>();
  let pos = 0;
  while (pos < buf.length) {
    const space = buf.indexOf(0x20, pos);
    if (space === -1) break;
    const length = parseInt(buf.subarray(pos, space).toString('latin1'), 10);
    if (!Number.isFinite(length) || length <= 0 || pos + length > buf.length) throw new TarScanError('malformed pax header');
    const record = buf.subarray(space + 1, pos + length - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (eq > 0) records.set(record.slice(0, eq), record.slice(eq + 1));
    pos += length;
  }
  return records;
}

export class TarHeaderScanner {
  #header = Buffer.alloc(BLOCK);
  #headerFill = 0;
  /** body bytes (including padding) still to skip */
  #skip = 0;
  #meta: { type: string; size: number; chunks: Buffer[]; got: number } | undefined;
  #longPath: string | undefined;
  #longLink: string | undefined;
  #pax = new Map<string, string>();
  #ended = false;

  constructor(private readonly onEntry: (entry: ScannedEntry) => void) {}

  /** True once the end-of-archive block was seen. */
  get ended(): boolean {
    return this.#ended;
  }

  write(chunk: Buffer): void {
    let offset = 0;
    while (offset < chunk.length && !this.#ended) {
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, chunk.length - offset);
        if (this.#meta && this.#meta.got < this.#meta.size) {
          const take = Math.min(n, this.#meta.size - this.#meta.got);
          this.#meta.chunks.push(Buffer.from(chunk.subarray(offset, offset + take)));
          this.#meta.got += take;
        }
        offset += n;
        this.#skip -= n;
        if (this.#skip === 0 && this.#meta) this.#finishMeta();
        continue;
      }
      const n = Math.min(BLOCK - this.#headerFill, chunk.length - offset);
      chunk.copy(this.#header, this.#headerFill, offset, offset + n);
      this.#headerFill += n;
      offset += n;
      if (this.#headerFill === BLOCK) {
        this.#headerFill = 0;
        this.#onHeader(this.#header);
      }
    }
  }

  #onHeader(header: Buffer): void {
    if (header.every((b) => b === 0)) {
      this.#ended = true;
      return;
    }
    if (!checksumMatches(header)) throw new TarScanError('tar header checksum mismatch');
    const type = String.fromCharCode(header[156] || 0x30);
    const size = numeric(header, 124, 12);
    this.#skip = Math.ceil(size / BLOCK) * BLOCK;
    if (META_TYPES.has(type)) {
      if (size > MAX_META_BYTES) throw new TarScanError('tar metadata entry too large');
      this.#meta = { type, size, chunks: [], got: 0 };
      if (this.#skip === 0) this.#finishMeta();
      return;
    }
    const magic = header.subarray(257, 263).toString('latin1');
    let name = cString(header, 0, 100);
    if (magic === 'ustar\0') {
      const prefix = cString(header, 345, 155);
      if (prefix) name = `${prefix}/${name}`;
    }
    const entry: ScannedEntry = {
      type,
      path: this.#longPath ?? this.#pax.get('path') ?? name,
      linkpath: this.#longLink ?? this.#pax.get('linkpath') ?? cString(header, 157, 100),
    };
    this.#longPath = undefined;
    this.#longLink = undefined;
    this.#pax = new Map();
    this.onEntry(entry);
  }

  #finishMeta(): void {
    const meta = this.#meta;
    this.#meta = undefined;
    if (!meta) return;
    const body = Buffer.concat(meta.chunks);
    switch (meta.type) {
      case 'L':
        this.#longPath = cString(body, 0, body.length);
        break;
      case 'K':
        this.#longLink = cString(body, 0, body.length);
        break;
      case 'x':
        for (const [key, value] of parsePax(body)) this.#pax.set(key, value);
        break;
      default:
        break; // global pax headers carry nothing we check
    }
  }
}
