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
