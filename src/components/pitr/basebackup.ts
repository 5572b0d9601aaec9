import { Readable, Transform } from 'node:stream';
import { dbnameArgument, type PostgresConnection } from '../postgres-connection.js';
import { describePostgresFailure } from '../postgres-errors.js';
import { abortError, childEnv, spawnOutput, type ToolLog } from '../process.js';
import { ComponentError } from '../types.js';

export interface BaseBackupResult {
  /** Where replay of the backup starts ('X/Y'): its WAL is needed from this segment on. */
  startLsn: string;
  /** The backup is consistent once replay has reached this LSN: WAL up to here is the minimum a recovery needs. */
  endLsn: string;
  /** The timeline the backup started on. */
  timeline: number;
  /**
   * The source server's now(), read right after pg_basebackup finished: a recovery target at or
   * after it is past the backup's consistent point (an earlier one may not be reachable from it).
   */
  stopTime: Date;
}

/**
 * A physical base backup of the whole cluster, as one tar on `stream` (pg_basebackup -Ft to
 * stdout, no WAL: the WAL comes from the archive the receiver keeps). PG >= 13 puts
 * backup_manifest into that tar (as its last member), which the recovery checks the files
 * against.
 *
 * pg_basebackup -v reports the start and end points only when it fetches WAL itself (-X
 * fetch/stream); with -X none it says nothing about them, so both are read from the tar as it
 * passes: the start from backup_label, the end from the manifest's WAL-Ranges (for a source
 * older than 13, which writes no manifest, the source's current WAL position read after the
 * backup: an upper bound of the end point). `result` settles once the stream has been read to
 * its end; the stream errors (and `result` rejects) with a ComponentError on any failure.
 */
export function baseBackup(conn: PostgresConnection, opts: { signal?: AbortSignal; log?: ToolLog }): { stream: Readable; result: Promise<BaseBackupResult> } {
  const toolOpts = { env: childEnv(conn.env), redact: conn.redact, describe: describePostgresFailure, ...(opts.log && { log: opts.log }) };
  const raw = spawnOutput('pg_basebackup', ['-D', '-', '-Ft', '-X', 'none', '--checkpoint=fast', '-v', '--no-password'], { label: 'pg_basebackup', ...toolOpts });
  const scanner = new TarScanner();
  let member: string | null = null;
  let label = '';
  const manifestTail = new Tail(1 << 20);
  const observe = (chunk: Buffer) => {
    for (const ev of scanner.push(chunk)) {
      if (ev.type === 'entry') member = ev.name;
      else if (member === 'backup_label') label += ev.chunk.toString('latin1');
      else if (member === 'backup_manifest') manifestTail.push(ev.chunk);
    }
  };
  let settle!: { resolve: (r: BaseBackupResult) => void; reject: (e: Error) => void };
  const result = new Promise<BaseBackupResult>((resolve, reject) => (settle = { resolve, reject }));
  result.catch(() => {}); // the stream carries the same failure
  const stream = new Transform({
    highWaterMark: 1 << 20,
    transform(chunk: Buffer, _enc, cb) {
      try {
        observe(chunk);
        cb(null, chunk);
      } catch (err) {
        cb(err as Error);
      }
    },
    flush(cb) {
      (async () => {
        scanner.finish();
        const start = /^START WAL LOCATION: ([0-9A-F]+\/[0-9A-F]+)/m.exec(label)?.[1];
        const timeline = /^START TIMELINE: (\d+)/m.exec(label)?.[1];
        if (!start || !timeline) throw new ComponentError('pg_basebackup wrote no backup_label: not a base backup');
        const after = await sourceNow(conn, toolOpts);
        // the last range: a standby's backup may span a timeline switch
        const ends = [...manifestTail.text().matchAll(/"End-LSN"\s*:\s*"([0-9A-F]+\/[0-9A-F]+)"/gi)];
        const endLsn = ends.at(-1)?.[1] ?? after.lsn;
        return { startLsn: start, endLsn, timeline: Number(timeline), stopTime: after.now };
      })().then(
        (r) => {
          settle.resolve(r);
          cb();
        },
        (err: Error) => cb(err),
      );
    },
  });
  raw.once('error', (err) => stream.destroy(err));
  raw.pipe(stream);
  const onAbort = () => stream.destroy(abortError(opts.signal as AbortSignal));
  if (opts.signal?.aborted) onAbort();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  stream.once('close', () => {
    opts.signal?.removeEventListener('abort', onAbort);
    raw.destroy();
    settle.reject(stream.errored ?? new ComponentError('the base backup stream was closed before its end'));
  });
  return { stream, result };
}

/** The source's now() (rounded up to the millisecond, so never before the true value) and WAL position, read after the backup. */
async function sourceNow(conn: PostgresConnection, toolOpts: { env: NodeJS.ProcessEnv; redact: (s: string) => string; describe: (s: string) => string; log?: ToolLog }) {
  const sql = `SELECT extract(epoch FROM now())::numeric(20,6), CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END`;
  const out = spawnOutput('psql', ['-X', '-q', '-A', '-t', '-F', ' ', '-v', 'ON_ERROR_STOP=1', '--no-password', '-c', sql, dbnameArgument(conn.database)], { label: 'psql', ...toolOpts });
  let text = '';
  for await (const b of out) text += String(b);
  const m = /^(\d+)(?:\.(\d{1,6}))? ([0-9A-F]+\/[0-9A-F]+)$/i.exec(text.trim());
  if (!m) throw new ComponentError('could not read the source server time after the base backup');
  const micros = BigInt(m[1] as string) * 1_000_000n + BigInt((m[2] ?? '').padEnd(6, '0'));
  return { now: new Date(Number((micros + 999n) / 1000n)), lsn: (m[3] as string).toUpperCase() };
}

/** The last `max` bytes pushed. */
class Tail {
  #parts: Buffer[] = [];
  #length = 0;
  constructor(readonly max: number) {}
  push(b: Buffer) {
    this.#parts.push(Buffer.from(b));
    this.#length += b.length;
    while (this.#length - (this.#parts[0]?.length ?? 0) >= this.max) this.#length -= this.#parts.shift()?.length ?? 0;
  }
  text() {
    return Buffer.concat(this.#parts).toString('utf8');
  }
}

export type TarEvent =
  | { type: 'entry'; name: string; /** '0' file, '5' directory, '2' symlink, '1' hard link, ... */ kind: string; mode: number; size: number }
  | { type: 'data'; chunk: Buffer };

/**
 * A push parser of the ustar archives pg_basebackup writes (plus pax and GNU long names, which it
 * never writes). Unlike tar-stream it insists on the end-of-archive block, so that an archive cut
 * at a member boundary is found truncated too, and checks every header's checksum.
 */
export class TarScanner {
  #state: 'header' | 'data' | 'padding' | 'done' = 'header';
  #header = Buffer.alloc(0);
  #remaining = 0;
  #padding = 0;
  /** A pax or GNU long-name member's content, collected rather than reported. */
  #meta: { kind: string; parts: Buffer[] } | null = null;
  #longName: string | null = null;

  push(input: Buffer): TarEvent[] {
    const events: TarEvent[] = [];
    let buf = input;
    while (buf.length > 0) {
      if (this.#state === 'done') return events; // whatever follows the end blocks is ignored
      if (this.#state === 'header') {
        const need = 512 - this.#header.length;
        this.#header = Buffer.concat([this.#header, buf.subarray(0, need)]);
        buf = buf.subarray(need);
        if (this.#header.length < 512) break;
        const ev = this.#parseHeader(this.#header);
        this.#header = Buffer.alloc(0);
        if (ev) events.push(ev);
      } else if (this.#state === 'data') {
        const part = buf.subarray(0, this.#remaining);
        buf = buf.subarray(part.length);
        this.#remaining -= part.length;
        if (this.#meta) this.#meta.parts.push(Buffer.from(part));
        else if (part.length > 0) events.push({ type: 'data', chunk: part });
        if (this.#remaining === 0) this.#endMember();
      } else {
        const skip = Math.min(this.#padding, buf.length);
        buf = buf.subarray(skip);
        this.#padding -= skip;
        if (this.#padding === 0) this.#state = 'header';
      }
    }
    return events;
  }

  /** Throws unless the archive's end-of-archive block has been seen. */
  finish(): void {
    if (this.#state !== 'done') throw new ComponentError('the base backup is truncated (its tar archive has no end)');
  }

  #parseHeader(h: Buffer): TarEvent | null {
    if (h.every((b) => b === 0)) {
      this.#state = 'done';
      return null;
    }
    const field = (off: number, len: number) => {
      const s = h.subarray(off, off + len);
      const nul = s.indexOf(0);
      return s.subarray(0, nul < 0 ? len : nul).toString('utf8');
    };
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : (h[i] as number);
    if (parseInt(field(148, 8).trim(), 8) !== sum) throw new ComponentError('the base backup is not a valid tar archive (bad header checksum)');
    const size = numeric(h.subarray(124, 136));
    const kind = String.fromCharCode(h[156] || 48 /* '0' */);
    const prefix = h.subarray(257, 262).toString('latin1') === 'ustar' ? field(345, 155) : '';
    let name = prefix ? `${prefix}/${field(0, 100)}` : field(0, 100);
    this.#remaining = size;
    this.#padding = (512 - (size % 512)) % 512;
    if (kind === 'x' || kind === 'L' || kind === 'g') {
      this.#meta = { kind, parts: [] };
      this.#state = size > 0 ? 'data' : 'header';
      if (size === 0) this.#endMember();
      return null;
    }
    if (this.#longName !== null) name = this.#longName;
    this.#longName = null;
    name = name.replace(/^(\.\/)+/, '').replace(/\/+$/, '');
    this.#state = size > 0 ? 'data' : 'header';
    return { type: 'entry', name, kind, mode: numeric(h.subarray(100, 108)) & 0o7777, size };
  }

  #endMember() {
    const meta = this.#meta;
    this.#meta = null;
    if (meta) {
      const text = Buffer.concat(meta.parts).toString('utf8');
      if (meta.kind === 'L') this.#longName = text.replace(/\0+$/, '');
      if (meta.kind === 'x') {
        const path = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(text)?.[1];
        if (path !== undefined) this.#longName = path;
      }
    }
    this.#state = this.#padding > 0 ? 'padding' : 'header';
  }
}

/** A tar numeric field: octal text, or base-256 when the high bit of its first byte is set. */
function numeric(f: Buffer): number {
  if (((f[0] as number) & 0x80) !== 0) {
    let n = 0;
    for (let i = 0; i < f.length; i++) n = n * 256 + ((i === 0 ? (f[0] as number) & 0x7f : (f[i] as number)));
    return n;
  }
  const text = f.toString('latin1').replace(/\0.*$/s, '').trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new ComponentError('the base backup is not a valid tar archive (bad numeric field)');
  return parseInt(text, 8);
}
