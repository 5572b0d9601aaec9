import type { Readable } from 'node:stream';
import type { FileJob, FileResult, FileStat } from './file-core.mjs';
import type { RestoreJob } from './restore-core.mjs';

export type { FileJob, FileStat };

/*
 * The contracts between the parts of the repository (see docs/repository.md):
 *
 *   chunker.ts      bytes -> content-defined chunks (FastCDC 2016)
 *   seal.ts         a chunk's id (keyed MAC) and its sealed form (zstd, then AES-256-GCM)
 *   pack.ts         sealed chunks -> pack objects with an encrypted trailer
 *   seal-pool.ts    the CPU work of seal.ts on worker threads
 *   writer.ts       ChunkSink for one backup: dedup against PostgreSQL, packs, references
 *   reader.ts       ChunkSource: verified plaintext of chunks, by range reads, per-pack fallback
 *   manifest.ts     component manifests (JSON lines) and their path order
 *   tree-backup.ts  a directory tree -> manifest entries, reusing unchanged files' chunks
 *   tree-restore.ts manifest entries -> a directory tree (whole or `paths`), atomically
 */

/** A chunk id: lowercase hex HMAC-SHA-256 of the chunk's plaintext under the tenant's MAC key (64 chars). */
export type ChunkId = string;

/** The two secrets of a tenant's repository; random per tenant, stored wrapped by ENCRYPTION_KEY. */
export interface TenantKeys {
  /** AES-256-GCM key of chunks, pack trailers, manifests and snapshot objects (32 bytes). */
  dataKey: Buffer;
  /** HMAC-SHA-256 key that turns plaintext into chunk ids (32 bytes). */
  macKey: Buffer;
}

/** Where the stored bytes are for a stream: what `ChunkSink.writeStream` answers. */
export interface StreamRef {
  chunks: ChunkId[];
  /** Plaintext length of the stream. */
  bytes: number;
}

/** What a backup writes its data through: one per backup (see writer.ts). */
export interface ChunkSink {
  /**
   * Chunks `source`, stores every chunk the repository does not hold yet, and records that this
   * backup references every chunk of it. Resolves once each chunk is either known to the
   * repository or queued in a pack of this backup (durable at `flush()`). A sink is done with
   * each piece of `source` when it asks for the next (it copies what it keeps), so a source may
   * reuse a piece's memory from then on (spawnChunks does).
   */
  writeStream(source: AsyncIterable<Buffer>): Promise<StreamRef>;
  /**
   * Records that this backup relies on chunks an earlier backup stored (an unchanged file's chunk
   * list), batched by the caller: one entry per file. Resolves, per file, whether every chunk is
   * still in the repository; where `false`, the caller must read the file again (writeStream).
   * Reuse is recorded in PostgreSQL before this resolves, so GC cannot take the chunks after it.
   */
  reuse(files: ChunkId[][]): Promise<boolean[]>;
  /**
   * Optional, faster: reads, chunks and stores whole regular files off the calling thread, one
   * batch of jobs at a time (file-core.mjs says what a job does). A 'data' answer's chunks are
   * stored or held (as writeStream's) unless `missing`: a hinted chunk is not held, and the file
   * must be read again from its start without hints.
   */
  storeFiles?(jobs: FileJob[]): Promise<StoredFile[]>;
}

export type StoredFile =
  | { kind: 'data'; stat: FileStat; chunks: ChunkId[]; bytes: number; next: number | null; missing: boolean }
  | Exclude<FileResult, { kind: 'data' }>;

/** What a restore, a browse or an export reads data through (see reader.ts). */
export interface ChunkSource {
  /**
   * The plaintext of `chunks`, in order, as one stream. Every chunk is decrypted and its MAC
   * checked before its bytes are pushed; any problem errors the stream with an IntegrityError.
   */
  read(chunks: ChunkId[]): Readable;
  /**
   * Optional, faster (stores on a local file system): writes files, or ranges of one, from their
   * chunks off the calling thread (restore-core.mjs says what a job does). Any failure rejects;
   * the caller then removes what it wrote and goes the `read` way, which reports precisely and
   * reads a pack's secondary copy where the primary fails. Answers the bytes written.
   */
  writeFiles?(jobs: WriteFileJob[]): Promise<number>;
}

/** A restore-core.mjs job before its chunks are located. */
export interface WriteFileJob extends Omit<RestoreJob, 'chunks'> {
  chunks: ChunkId[];
}

/** Data in the store is not what was written (bit flip, truncation, missing pack, wrong key). */
export class IntegrityError extends Error {
  override name = 'IntegrityError';
}

/** The key given does not unwrap the stored tenant keys. */
export class WrongKeyError extends Error {
  override name = 'WrongKeyError';
}

export type EntryType = 'file' | 'directory' | 'symlink';

/**
 * One entry of a directory manifest. Entries are in path order (`comparePaths` in manifest.ts:
 * segment by segment, so a directory comes right before its contents); the component root is not
 * an entry. Numbers that may exceed 2^53 (ns times, inodes) are decimal strings.
 */
export interface DirEntry {
  /** Relative posix path inside the component, e.g. `a/b.txt`; never empty, `.` or with `..`. */
  path: string;
  type: EntryType;
  /** Permission bits and setuid/setgid/sticky (mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  /** Modification time, ns since the epoch. */
  mtime_ns: string;
  /** Change time and inode: only what decides reuse by the next backup; never restored. */
  ctime_ns: string;
  ino: string;
  /** Bytes of a file (0 for others). */
  size: number;
  /** A symlink's target, as stored on disk. */
  link_target?: string;
  /** A file's chunks, in order (empty for an empty file). */
  chunks?: ChunkId[];
}

/** First line of every manifest. */
export interface ManifestHeader {
  format: 'bk-manifest/v1';
  type: 'directory' | 'stream';
}

/** A stream manifest (postgres dump): the header, then lines of `{ chunks: [...] }` (at most 1000 ids each); `bytes` in the header. */
export interface StreamManifestHeader extends ManifestHeader {
  type: 'stream';
  bytes: number;
}

export interface Progress {
  bytes_done: number;
  bytes_total: number | null;
  files_done: number;
  files_total: number | null;
}
