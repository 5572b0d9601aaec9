import type { Readable } from 'node:stream';

export interface PutResult {
  bytes: number;
  /** Lowercase hex SHA-256 of the stored bytes. */
  sha256: string;
}

export interface PutOptions {
  /** Called after every chunk with the number of bytes stored so far; throttle on the caller's side. */
  onProgress?: (bytesSoFar: number) => void;
  signal?: AbortSignal;
}

export interface PutBufferOptions {
  /** The body's sha256 (hex), when the caller has it already (a pack's id is its sha256): not computed again. */
  sha256?: string;
}

export interface ArtifactStore {
  /** e.g. `file:///abs/path` */
  readonly url: string;
  /** Stores the stream under `key`; the key is visible only once every byte is durable. Rejects, leaving nothing behind, if the body errors. */
  put(key: string, body: NodeJS.ReadableStream | Readable, opts?: PutOptions): Promise<PutResult>;
  /** Throws ArtifactNotFoundError if the key does not exist. */
  get(key: string): Promise<Readable>;
  exists(key: string): Promise<boolean>;
  /** Idempotent. */
  delete(key: string): Promise<void>;
  /** Idempotent; removes every key under `prefix`, which must end with '/'. */
  deletePrefix(prefix: string): Promise<void>;
  /** URL shown in the API, e.g. `file:///abs/path/key`. */
  locationOf(key: string): string;
  /** Stores on a local file system only: the file of `key` (which may not exist), for readers on other threads. */
  localPath?(key: string): string;

  /**
   * Bytes [start, end) of the object, all of them: `end - start` bytes or an error, never fewer.
   * Throws ArtifactNotFoundError if the key does not exist, RangeNotSatisfiableError if the object
   * is shorter than `end`, and RangeError (before any I/O) unless 0 <= start <= end are safe integers.
   */
  getRange(key: string, start: number, end: number): Promise<Buffer>;
  /** Byte size of the object. Throws ArtifactNotFoundError if the key does not exist. */
  size(key: string): Promise<number>;
  /**
   * Every object whose key starts with `prefix` ('' for all, else ending with '/'), in no
   * guaranteed order, streamed (pages on S3, one directory entry at a time on files). Objects whose
   * names are not valid keys (the file store's temp files, foreign objects) are not listed.
   * Keys put or deleted while the listing runs may or may not appear.
   */
  list(prefix: string): AsyncIterable<ListedArtifact>;
  /**
   * Stores `body` under `key` with the durability of `put`, in one request on S3 (no multipart,
   * whatever the size up to S3's 5 GiB single-PUT limit): for packs and small objects.
   */
  putBuffer(key: string, body: Buffer, opts?: PutBufferOptions): Promise<PutResult>;
  /**
   * Removes what writes killed mid-way left under `prefix` ('' or ending with '/') and that has
   * not changed since `olderThan`: the file store's `.*.partial` temp files, S3's incomplete
   * multipart uploads. A write still in progress keeps touching its temp, so it is not taken;
   * one stalled past the cutoff fails its rename instead of completing. Answers how many.
   */
  sweepTemps(prefix: string, olderThan: Date): Promise<number>;
}

export interface ListedArtifact {
  /** Relative to the store, as given to `get`. */
  key: string;
  bytes: number;
  modifiedAt: Date;
}

export class ArtifactNotFoundError extends Error {
  override readonly name = 'ArtifactNotFoundError';
  constructor(readonly key: string) {
    super(`artifact not found: ${key}`);
  }
}

export class InvalidArtifactKeyError extends Error {
  override readonly name = 'InvalidArtifactKeyError';
  constructor(readonly key: string, reason: string) {
    super(`invalid artifact key ${JSON.stringify(key)}: ${reason}`);
  }
}

/** The object is shorter than the end of the range asked for (or than its start). */
export class RangeNotSatisfiableError extends Error {
  override readonly name = 'RangeNotSatisfiableError';
  constructor(
    readonly key: string,
    readonly start: number,
    readonly end: number,
    /** The object's size when the store learnt it. */
    readonly size?: number,
  ) {
    super(`range [${start}, ${end}) not satisfiable for artifact ${key}${size === undefined ? '' : ` of ${size} bytes`}`);
  }
}

/** Throws a RangeError unless 0 <= start <= end are safe integers (checked before any I/O). */
export function checkByteRange(start: number, end: number): void {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw new RangeError(`invalid byte range [${String(start)}, ${String(end)})`);
  }
}
