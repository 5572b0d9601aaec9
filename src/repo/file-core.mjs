/*
 * Reading, chunking, hashing and sealing regular files, in plain JavaScript so that the seal
 * pool's worker threads run it (seal-worker.mjs, op 'files') and tests can run it in-thread
 * (memory-repo.test-helper.ts). Types: file-core.d.mts. tree-backup.ts decides what to ask;
 * this module only does the work of one batch of jobs, with synchronous file system calls (on a
 * worker thread they block nothing but that thread, and they cost a fraction of the promise
 * round trips of fs/promises: a small file is lstat + open + fstat + read + fstat + close).
 *
 * A job is one file from `start`:
 *   - start 0: lstat (not following links). Not a regular file any more -> 'other' (the caller
 *     looks again). Same size, mtime_ns, ctime_ns and inode as `prev` -> 'unchanged' (not read).
 *     Otherwise the file is opened (O_NOFOLLOW | O_NONBLOCK) and fstat must still match the lstat.
 *   - start > 0 (a continuation): `expect` (the stat of the first segment) must still match.
 * The file is read from `start` for up to `segmentBytes`; the chunks that end inside what was
 * read are hashed (and sealed), and `next` tells where the next segment starts (the end of the
 * last whole chunk), or is null at the end of the file. FastCDC restarts its hash at each chunk,
 * so chunking from a chunk boundary gives the same chunks as one pass over the whole file.
 * At the end of the file, one byte more than the size is asked for and fstat is compared again:
 * a file that grew, shrank or was written meanwhile answers 'changed'.
 *
 * A batch stops taking new files once it has read `budgetBytes`: the rest answer 'deferred'; so
 * does a file whose read would take the batch past `readLimit` (when given; not the first read).
 * Chunks whose id is in the job's `hints` (the chunks of the file's previous version, which the
 * repository most likely holds) are not sealed: their blob is null and the caller checks that
 * the repository holds them.
 */
import { closeSync, constants, fstatSync, lstatSync, openSync, readSync } from 'node:fs';
import { cutPoint } from './chunker-core.mjs';

const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

/** The manifest's view of an lstat/fstat with bigint fields (tree-backup.ts uses it too). */
export function statOf(st) {
  return {
    mode: Number(st.mode & 0o7777n),
    uid: Number(st.uid),
    gid: Number(st.gid),
    mtime_ns: st.mtimeNs.toString(),
    ctime_ns: st.ctimeNs.toString(),
    ino: st.ino.toString(),
    dev: st.dev.toString(),
    size: Number(st.size),
  };
}

const sameFile = (st, expect) =>
  st.isFile() && st.ino.toString() === expect.ino && st.dev.toString() === expect.dev && Number(st.size) === expect.size && st.mtimeNs.toString() === expect.mtime_ns;

function codeOf(err) {
  return err && typeof err === 'object' && typeof err.code === 'string' ? err.code : 'EIO';
}

/** Reads `length` bytes at `position` into `buf` (short only at the end of the file). */
function readFully(fd, buf, length, position) {
  let got = 0;
  while (got < length) {
    const n = readSync(fd, buf, got, length - got, position + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}

/**
 * @param jobs see file-core.d.mts FileJob
 * @param opts { hash(buf) -> id, seal(id, plain) -> Promise<Buffer> | null (keep plaintext),
 *   chunking, segmentBytes, budgetBytes }
 */
export async function processFiles(jobs, opts) {
  const { hash, seal, chunking, segmentBytes, budgetBytes } = opts;
  // Reads go into one buffer of the caller's when given (reused from batch to batch: a worker then
  // makes no garbage of its reads), from its start on; a read past its end gets a buffer of its own.
  // With `readLimit`, a file whose read would take the batch past it is deferred (unless it is
  // the first read: a segment always goes), so the buffers of a batch need only hold that much.
  const limit = opts.readLimit ?? Infinity;
  const arena = opts.arena ?? null;
  let used = 0;
  const room = (n) => used === 0 || used + n <= limit;
  const buffer = (n) => {
    const at = used;
    used += n;
    if (!arena || used > arena.length) return Buffer.allocUnsafe(n); // small files come from Node's pool slab
    return arena.subarray(at, used);
  };
  const results = [];
  // Seals of the whole batch run together: one small file's zstd call (~115 us on libuv's pool,
  // mostly its set-up) then overlaps with the others' (~37 us each when several are under way).
  const sealing = [];
  let spent = 0;
  for (const job of jobs) {
    if (spent >= budgetBytes) {
      results.push({ kind: 'deferred' });
      continue;
    }
    results.push(processOne(job, { hash, seal, chunking, segmentBytes, buffer, room }, (n) => (spent += n), sealing));
  }
  await Promise.all(sealing);
  return results;
}

function processOne(job, opts, spend, sealing) {
  const start = job.start ?? 0;
  let stat;
  if (start === 0) {
    let st;
    try {
      st = lstatSync(job.abs, { bigint: true });
    } catch (err) {
      return { kind: 'error', code: codeOf(err) };
    }
    if (!st.isFile()) return { kind: 'other' };
    stat = statOf(st);
    const p = job.prev;
    if (p && p.size === stat.size && p.mtime_ns === stat.mtime_ns && p.ctime_ns === stat.ctime_ns && p.ino === stat.ino) return { kind: 'unchanged', stat };
    if (stat.size === 0) return { kind: 'data', stat, chunks: [], next: null };
  } else {
    stat = job.expect;
  }
  let fd;
  try {
    fd = openSync(job.abs, OPEN_FLAGS);
  } catch (err) {
    const code = codeOf(err);
    // replaced by a link (ELOOP) or removed since lstat
    return code === 'ELOOP' || code === 'ENOENT' ? { kind: 'changed' } : { kind: 'error', code };
  }
  try {
    if (!sameFile(fstatSync(fd, { bigint: true }), stat)) return { kind: 'changed' };
    const left = stat.size - start;
    const last = left <= opts.segmentBytes;
    // at the end, one byte more than expected: a file that grew is noticed here
    const want = last ? left + 1 : opts.segmentBytes;
    if (!opts.room(Math.max(1, want))) return { kind: 'deferred' };
    const buf = opts.buffer(Math.max(1, want));
    let got;
    try {
      got = readFully(fd, buf, want, start);
    } catch (err) {
      return { kind: 'error', code: codeOf(err) };
    }
    spend(got);
    if (last ? got !== left : got !== want) return { kind: 'changed' };
    const data = buf.subarray(0, got);
    const hints = job.hints && job.hints.length > 0 ? new Set(job.hints) : null;
    const chunks = [];
    let pos = 0;
    const max = opts.chunking.maxSize;
    // In a middle segment, a chunk is cut only where at least maxSize bytes follow (or the cut
    // comes sooner): the last partial chunk is left to the next segment.
    while (pos < got && (last || got - pos >= max)) {
      const cut = cutPoint(data, pos, got, opts.chunking);
      const plain = data.subarray(pos, cut);
      const id = opts.hash(plain);
      const chunk = { id, length: plain.length, blob: null, plain: null };
      if (!hints || !hints.has(id)) {
        if (opts.seal) sealing.push(opts.seal(id, plain).then((b) => (chunk.blob = b)));
        else chunk.plain = Buffer.from(plain);
      }
      chunks.push(chunk);
      pos = cut;
    }
    if (last && !sameFile(fstatSync(fd, { bigint: true }), stat)) return { kind: 'changed' };
    return { kind: 'data', stat, chunks, next: last ? null : start + pos };
  } finally {
    try {
      closeSync(fd);
    } catch {
      // closing a read-only descriptor loses nothing
    }
  }
}
