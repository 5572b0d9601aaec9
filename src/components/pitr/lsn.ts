/** WAL positions (LSNs) and WAL file names, as PostgreSQL writes them. */

const MAX_LSN = (1n << 64n) - 1n;

/** 'X/Y' (pg_lsn's text form) as a byte position. */
export function parseLsn(lsn: string): bigint {
  const m = /^([0-9A-F]{1,8})\/([0-9A-F]{1,8})$/i.exec(lsn);
  if (!m) throw new RangeError(`not an LSN: ${JSON.stringify(lsn)}`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

/** A byte position as 'X/Y'. */
export function formatLsn(n: bigint): string {
  if (n < 0n || n > MAX_LSN) throw new RangeError(`LSN out of range: ${n}`);
  return `${(n >> 32n).toString(16).toUpperCase()}/${(n & 0xffffffffn).toString(16).toUpperCase()}`;
}

export const DEFAULT_WAL_SEGMENT_SIZE = 16 * 1024 * 1024;

const SEGMENT = /^([0-9A-F]{8})([0-9A-F]{16})$/;

function checkSegmentSize(segSize: number | bigint): bigint {
  const n = Number(segSize);
  // initdb allows powers of two from 1 MiB to 1 GiB
  if (!Number.isInteger(n) || n < 1 << 20 || n > 1 << 30 || (n & (n - 1)) !== 0) throw new RangeError(`invalid WAL segment size ${segSize}`);
  return BigInt(n);
}

/** The name of the WAL segment file holding `lsn` on `timeline` (what pg_walfile_name() says; PostgreSQL's XLogFileName). */
export function walSegmentName(timeline: number, lsn: bigint, segSize: number | bigint = DEFAULT_WAL_SEGMENT_SIZE): string {
  const size = checkSegmentSize(segSize);
  if (!Number.isInteger(timeline) || timeline < 1 || timeline > 0xffffffff) throw new RangeError(`invalid timeline ${timeline}`);
  if (lsn < 0n || lsn > MAX_LSN) throw new RangeError(`LSN out of range: ${lsn}`);
  const segno = lsn / size;
  const perId = 0x100000000n / size;
  const hex8 = (n: bigint | number) => n.toString(16).toUpperCase().padStart(8, '0');
  return hex8(timeline) + hex8(segno / perId) + hex8(segno % perId);
}

/** A segment file name's timeline and start position; a RangeError for anything else. */
export function parseSegmentName(name: string, segSize: number | bigint = DEFAULT_WAL_SEGMENT_SIZE): { timeline: number; startLsn: bigint } {
  const m = SEGMENT.exec(name);
  if (!m) throw new RangeError(`not a WAL segment name: ${JSON.stringify(name)}`);
  const size = checkSegmentSize(segSize);
  const perId = 0x100000000n / size;
  const segno = BigInt(`0x${name.slice(8, 16)}`) * perId + BigInt(`0x${name.slice(16, 24)}`);
  return { timeline: Number.parseInt(m[1] as string, 16), startLsn: segno * size };
}
