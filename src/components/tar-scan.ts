/**
 * Incremental reader of tar headers (ustar, GNU long names, pax) that never looks at file
 * contents, so it can watch a multi-GB archive stream go by at memory speed.
 *
 * When it also forwards the stream (restores), whatever it lets through is extracted by GNU tar,
 * so it must frame entries exactly as GNU tar does; anything where the two could disagree is an
 * error rather than a guess (see the `TarScanError`s below).
 */

export interface ScannedEntry {
  /** typeflag character, e.g. '0' file, '2' symlink, '5' directory */
  type: string;
  path: string;
  linkpath: string;
  /** bytes of content after the header (pax `size` wins over the header field, as in GNU tar) */
  size: number;
}

const BLOCK = 512;
const MAX_META_BYTES = 1 << 20;
const META_TYPES = new Set(['L', 'K', 'x', 'g']);
/** Meta blocks held back while waiting for the header they describe. */
const MAX_HELD_BYTES = 4 << 20;
const ZERO_BLOCK = Buffer.alloc(BLOCK);

export class TarScanError extends Error {
  override name = 'TarScanError';
}

function cString(buf: Buffer, start: number, length: number): string {
  const field = buf.subarray(start, start + length);
  const end = field.indexOf(0);
  return field.subarray(0, end === -1 ? field.length : end).toString('utf8');
}

const isSpace = (b: number | undefined) => b === 0x20 || (b !== undefined && b >= 0x09 && b <= 0x0d);
const isOctal = (b: number | undefined) => b !== undefined && b >= 0x30 && b <= 0x37;

/**
 * A numeric header field, read as GNU tar's from_header() reads it (C locale): a field it would
 * refuse is refused here too, because tar then skips ahead looking for a header, possibly inside
 * file contents we let through unvetted. A few of its lenient forms are refused as well.
 */
function numeric(buf: Buffer, start: number, length: number, octalOnly = false): number {
  const field = buf.subarray(start, start + length);
  const invalid = () => new TarScanError('invalid numeric field in tar header');
  if (field[0] === 0x80 && !octalOnly) {
    // GNU base-256 for values that do not fit in octal (0xff would start a negative one)
    let value = 0;
    for (let i = 1; i < field.length; i++) value = value * 256 + (field[i] ?? 0);
    if (value > Number.MAX_SAFE_INTEGER) throw invalid();
    return value;
  }
  if (field.every((b) => b === 0)) return 0;
  let i = 0;
  while (i < field.length && isSpace(field[i])) i++;
  if (!isOctal(field[i])) throw invalid();
  let value = 0;
  for (; i < field.length && isOctal(field[i]); i++) value = value * 8 + (field[i] as number) - 0x30;
  // after the digits: the end of the field, a NUL or white space; tar ignores whatever follows
  if (i < field.length && field[i] !== 0 && !isSpace(field[i])) throw invalid();
  return value;
}

function checksumMatches(header: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : (header[i] ?? 0);
  return sum === numeric(header, 148, 8, true);
}

/** pax records: "<len> <key>=<value>\n". Strict: GNU tar stops decoding at a malformed record. */
function parsePax(buf: Buffer): Map<string, string> {
  const records = new Map<string, string>();
  let pos = 0;
  while (pos < buf.length) {
    const space = buf.indexOf(0x20, pos);
    const lengthText = space === -1 ? '' : buf.subarray(pos, space).toString('latin1');
    const length = Number(lengthText);
    if (!/^[1-9][0-9]{0,7}$/.test(lengthText) || pos + length > buf.length || space + 1 >= pos + length || buf[pos + length - 1] !== 0x0a) {
      throw new TarScanError('malformed pax header');
    }
    const record = buf.subarray(space + 1, pos + length - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (eq <= 0) throw new TarScanError('malformed pax header');
    records.set(record.slice(0, eq), record.slice(eq + 1));
    pos += length;
  }
  return records;
}

/** pax keys that change where GNU tar thinks entries start, or what they are called. */
function framingKey(key: string): boolean {
  return key === 'path' || key === 'linkpath' || key === 'size' || key.startsWith('GNU.sparse.');
}

export class TarHeaderScanner {
  #header = Buffer.alloc(BLOCK);
  #headerFill = 0;
  /** body bytes (including padding) still to skip */
  #skip = 0;
  #meta: { type: string; size: number; chunks: Buffer[] } | undefined;
  #longPath: string | undefined;
  #longLink: string | undefined;
  #pax: Map<string, string> | undefined;
  #ended = false;
  /** Raw meta blocks of the coming entry, forwarded or dropped with it. */
  #held: Buffer[] = [];
  #heldBytes = 0;
  #forwardBody = false;

  /**
   * `onEntry` may throw to reject the archive. With `forward`, the scanner also passes the
   * stream on, without the entries for which `onEntry` returned false and without anything after
   * the end-of-archive marker; an entry's header reaches `forward` only after `onEntry` returned.
   */
  constructor(
    private readonly onEntry: (entry: ScannedEntry) => boolean | void,
    private readonly forward?: (bytes: Buffer) => void,
  ) {}

  /** True once the end-of-archive block was seen. */
  get ended(): boolean {
    return this.#ended;
  }

  write(chunk: Buffer): void {
    let offset = 0;
    while (offset < chunk.length && !this.#ended) {
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, chunk.length - offset);
        if (this.#meta) {
          this.#meta.chunks.push(Buffer.from(chunk.subarray(offset, offset + n)));
          this.#hold(chunk.subarray(offset, offset + n));
        } else if (this.#forwardBody) {
          this.forward?.(chunk.subarray(offset, offset + n));
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
        // Forwarded headers are slices of the input where possible, so consecutive pieces can be merged.
        const raw = !this.forward ? this.#header : n === BLOCK ? chunk.subarray(offset - BLOCK, offset) : Buffer.from(this.#header);
        this.#onHeader(this.#header, raw);
      }
    }
  }

  #hold(bytes: Buffer): void {
    if (!this.forward) return;
    this.#heldBytes += bytes.length;
    if (this.#heldBytes > MAX_HELD_BYTES) throw new TarScanError('too much tar metadata before an entry');
    this.#held.push(bytes);
  }

  #onHeader(header: Buffer, raw: Buffer): void {
    if (header.every((b) => b === 0)) {
      // GNU tar stops at the first zero block too; the second one is only for form.
      this.#ended = true;
      this.forward?.(raw);
      this.forward?.(ZERO_BLOCK);
      return;
    }
    if (!checksumMatches(header)) throw new TarScanError('tar header checksum mismatch');
    const type = String.fromCharCode(header[156] || 0x30);
    const headerSize = numeric(header, 124, 12);
    if (META_TYPES.has(type)) {
      if (headerSize > MAX_META_BYTES) throw new TarScanError('tar metadata entry too large');
      this.#hold(raw);
      this.#skip = Math.ceil(headerSize / BLOCK) * BLOCK;
      this.#meta = { type, size: headerSize, chunks: [] };
      if (this.#skip === 0) this.#finishMeta();
      return;
    }
    const paxSize = this.#pax?.get('size');
    if (paxSize !== undefined && !/^[0-9]{1,15}$/.test(paxSize)) throw new TarScanError('invalid size in pax header');
    const size = paxSize !== undefined ? Number(paxSize) : headerSize;
    this.#skip = Math.ceil(size / BLOCK) * BLOCK;
    const magic = header.subarray(257, 263).toString('latin1');
    let name = cString(header, 0, 100);
    if (magic === 'ustar\0') {
      const prefix = cString(header, 345, 155);
      if (prefix) name = `${prefix}/${name}`;
    }
    // Same precedence as GNU tar: pax over GNU long names over the header fields.
    const entry: ScannedEntry = {
      type,
      path: this.#pax?.get('path') ?? this.#longPath ?? name,
      linkpath: this.#pax?.get('linkpath') ?? this.#longLink ?? cString(header, 157, 100),
      size,
    };
    this.#longPath = undefined;
    this.#longLink = undefined;
    this.#pax = undefined;
    const held = this.#held;
    this.#held = [];
    this.#heldBytes = 0;
    this.#forwardBody = this.onEntry(entry) !== false;
    if (!this.#forwardBody || !this.forward) return;
    for (const bytes of held) this.forward(bytes);
    this.forward(raw);
  }

  #finishMeta(): void {
    const meta = this.#meta;
    this.#meta = undefined;
    if (!meta) return;
    const padded = Buffer.concat(meta.chunks);
    const body = padded.subarray(0, meta.size);
    // A second header of a kind replaces the first in GNU tar (a second pax header entirely), so refuse rather than guess.
    const duplicate = () => new TarScanError('repeated tar metadata entry');
    switch (meta.type) {
      // GNU tar reads long names as C strings over the padded blocks, not just `size` bytes.
      case 'L':
        if (this.#longPath !== undefined) throw duplicate();
        this.#longPath = cString(padded, 0, padded.length);
        break;
      case 'K':
        if (this.#longLink !== undefined) throw duplicate();
        this.#longLink = cString(padded, 0, padded.length);
        break;
      case 'x':
        if (this.#pax !== undefined) throw duplicate();
        this.#pax = parsePax(body);
        if ([...this.#pax.keys()].some((key) => key.startsWith('GNU.sparse.'))) throw new TarScanError('sparse files are not supported');
        break;
      default:
        // Global pax headers apply to every later entry in GNU tar; none may rename or resize.
        if ([...parsePax(body).keys()].some(framingKey)) throw new TarScanError('unsupported global pax header');
        break;
    }
  }
}
