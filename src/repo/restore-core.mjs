/*
 * Writing restored files from sealed chunks, in plain JavaScript for the seal pool's worker
 * threads (seal-worker.mjs, op 'restore'). Types: restore-core.d.mts. tree-restore.ts decides
 * what to write and where (always a new path inside its temp directory); reader.ts locates the
 * chunks and names the pack files (file stores only: the packs are read with synchronous
 * range reads, a pack's descriptor kept open for the whole task).
 *
 * A job is one file, or one range of a large file:
 *   - `create`: the file is created O_EXCL | O_NOFOLLOW (mode 0600 until `finish`); otherwise it
 *     is opened O_WRONLY | O_NOFOLLOW to go on at `offset`.
 *   - each chunk is read from its pack, opened (AES-GCM, zstd, MAC: seal-core.mjs openChunk),
 *     its plaintext length checked against the one recorded, and written at its place;
 *   - `finish`: the file must now hold exactly `size` bytes; then owner (as root), mode and times.
 * Chunks are opened a few at a time ahead of the write (decompression runs on libuv's pool).
 * Any problem rejects the task with an Error whose name is kept (IntegrityError for damaged
 * data): the caller then writes the same files by its slower path, which says precisely what is
 * wrong and can read a pack's secondary copy.
 */
import { closeSync, constants, fchmodSync, fchownSync, futimesSync, openSync, readSync, writeSync } from 'node:fs';
import { openChunk } from './seal-core.mjs';

const CREATE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
const APPEND = constants.O_WRONLY | constants.O_NOFOLLOW;
const PACK = constants.O_RDONLY | constants.O_NOFOLLOW;
/** Chunks opened ahead of the one being written. */
const AHEAD = 2;

function integrityError(message) {
  const err = new Error(message);
  err.name = 'IntegrityError';
  return err;
}

/**
 * One read buffer for every chunk of a call: openChunk authenticates and decrypts a blob before
 * it first waits (seal-core.mjs), so the blob's bytes are not needed once it has been called.
 */
let scratch = null;

function readRange(fd, length, position, what) {
  if (!scratch || scratch.length < length) scratch = Buffer.allocUnsafeSlow(Math.max(length, 4 * 1024 * 1024 + 64));
  const buf = scratch.subarray(0, length);
  let got = 0;
  while (got < length) {
    const n = readSync(fd, buf, got, length - got, position + got);
    if (n === 0) throw integrityError(`${what}: the pack ends before the chunk does`);
    got += n;
  }
  return buf;
}

function writeFully(fd, buf, position) {
  let off = 0;
  while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off, position + off);
}

/**
 * @param jobs see restore-core.d.mts RestoreJob
 * @param keys { dataKey, macKey }
 * @param opts { asRoot, now (seconds) }
 * @returns bytes written
 */
export async function restoreFiles(jobs, keys, opts) {
  const packs = new Map();
  const packFd = (file) => {
    let fd = packs.get(file);
    if (fd === undefined) {
      fd = openSync(file, PACK);
      packs.set(file, fd);
    }
    return fd;
  };
  let written = 0;
  try {
    for (const job of jobs) {
      const fd = openSync(job.abs, job.create ? CREATE : APPEND, 0o600);
      try {
        let position = job.offset;
        const opening = [];
        const start = (i) => {
          const c = job.chunks[i];
          const blob = readRange(packFd(c.pack), c.length, c.offset, `chunk ${c.id.slice(0, 12)}`);
          const opened = openChunk(keys, c.id, blob);
          opened.catch(() => {}); // awaited in order below; one left behind by a failure must not go unhandled
          return opened;
        };
        for (let i = 0; i < Math.min(AHEAD, job.chunks.length); i++) opening.push(start(i));
        for (let i = 0; i < job.chunks.length; i++) {
          const plain = await opening[i];
          opening[i] = null;
          if (i + AHEAD < job.chunks.length) opening.push(start(i + AHEAD));
          const c = job.chunks[i];
          if (c.rawLength >= 0 && plain.length !== c.rawLength) throw integrityError(`chunk ${c.id.slice(0, 12)}: ${plain.length} bytes, ${c.rawLength} recorded`);
          if (position + plain.length > job.size) throw integrityError(`file ${job.path}: the stored data is longer than its size (${job.size} bytes)`);
          writeFully(fd, plain, position);
          position += plain.length;
          written += plain.length;
        }
        if (job.finish) {
          if (position !== job.size) throw integrityError(`file ${job.path}: the stored data holds ${position} bytes, its size is ${job.size}`);
          if (opts.asRoot) fchownSync(fd, job.uid, job.gid); // before chmod: chown clears setuid/setgid
          fchmodSync(fd, job.mode);
          futimesSync(fd, opts.now, job.mtime);
        }
      } finally {
        closeSync(fd);
      }
    }
  } finally {
    for (const fd of packs.values()) {
      try {
        closeSync(fd);
      } catch {
        // a read-only descriptor
      }
    }
  }
  return written;
}
