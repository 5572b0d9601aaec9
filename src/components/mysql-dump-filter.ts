import { Transform, type TransformCallback } from 'node:stream';

/**
 * mariadb-dump writes a trigger's CREATE as the tenant wrote it, so `CREATE TRIGGER shop.tr
 * BEFORE INSERT ON shop.orders ...` stays qualified in the dump (checked with 10.11). Loaded
 * into the restore's scratch database that statement would create the trigger on the LIVE
 * target's table (changing it before the point of no return) or fail because it exists there.
 * This filter, applied to what the restore feeds the client, drops the database qualifiers of
 * the trigger's own name and of its table (the body is left as written) so that the trigger
 * lands in the database being loaded. Everything else passes through byte for byte; a line is
 * held back only while it may still be a trigger header (at most 64 KiB).
 */

const MARK = Buffer.from('/*!50003 CREATE*/ ', 'latin1');
const MAX_HEADER = 64 * 1024;

const IDENT = '(?:`(?:[^`]|``)+`|[0-9A-Za-z_$\\x80-\\xff]+)';
const TRIGGER_HEADER = new RegExp(
  '^(\\/\\*!50003 CREATE\\*\\/ (?:\\/\\*!50017 DEFINER=(?:[^*]|\\*(?!\\/))*\\*\\/ )?\\/\\*!50003 TRIGGER\\s+(?:IF\\s+NOT\\s+EXISTS\\s+)?)' +
    `(?:${IDENT}\\s*\\.\\s*)?(${IDENT})` +
    '(\\s+(?:BEFORE|AFTER)\\s+(?:INSERT|UPDATE|DELETE)\\s+ON\\s+)' +
    `(?:${IDENT}\\s*\\.\\s*)?(${IDENT})`,
  'i',
);

/** The trigger header of one dump line without database qualifiers; other lines unchanged. Works on latin1 so bytes map 1:1. */
export function unqualifyTriggerLine(line: Buffer): Buffer {
  const text = line.toString('latin1');
  const rewritten = text.replace(TRIGGER_HEADER, '$1$2$3$4');
  return rewritten === text ? line : Buffer.from(rewritten, 'latin1');
}

export function triggerQualifierFilter(): Transform {
  // The start of the current line while it may be a trigger header; null while passing the rest of a line through.
  let line: Buffer | null = Buffer.alloc(0);
  return new Transform({
    readableHighWaterMark: 1 << 20,
    writableHighWaterMark: 1 << 20,
    transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
      const out: Buffer[] = [];
      let pos = 0;
      while (pos < chunk.length) {
        const nl = chunk.indexOf(10, pos);
        const end = nl < 0 ? chunk.length : nl + 1;
        if (line === null) {
          out.push(chunk.subarray(pos, end));
          if (nl >= 0) line = Buffer.alloc(0);
          pos = end;
          continue;
        }
        line = line.length === 0 ? chunk.subarray(pos, end) : Buffer.concat([line, chunk.subarray(pos, end)]);
        pos = end;
        const n = Math.min(line.length, MARK.length);
        if (!line.subarray(0, n).equals(MARK.subarray(0, n))) {
          out.push(line);
          line = nl >= 0 ? Buffer.alloc(0) : null;
        } else if (nl >= 0) {
          out.push(unqualifyTriggerLine(line));
          line = Buffer.alloc(0);
        } else if (line.length > MAX_HEADER) {
          out.push(unqualifyTriggerLine(line));
          line = null;
        }
      }
      if (out.length === 0) callback();
      else callback(null, out.length === 1 ? out[0] : Buffer.concat(out));
    },
    flush(callback: TransformCallback) {
      callback(null, line && line.length > 0 ? unqualifyTriggerLine(line) : undefined);
    },
  });
}
