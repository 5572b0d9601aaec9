import { createHash } from 'node:crypto';
import { pipeline, Transform, type Readable, type TransformCallback } from 'node:stream';
import { ComponentError } from './types.js';

/** The sha256 (hex) and size of every byte a restore consumed from its artifact stream. */
export interface ArtifactDigest {
  sha256: string;
  bytes: number;
}

/**
 * Told the digest of the whole artifact once the driver has consumed it, before the point of no
 * return (the postgres COMMIT). Throwing (or rejecting) refuses the restore.
 */
export type VerifyArtifact = (got: ArtifactDigest) => void | Promise<void>;

/** The bytes applied are not the bytes that were backed up (and checked earlier). */
export class ArtifactChangedError extends ComponentError {
  override name = 'ArtifactChangedError';
}

export interface HashedArtifact {
  /** The artifact's bytes, unchanged; an error of the artifact errors this stream. */
  stream: Readable;
  /**
   * Hands `verify` the digest of everything that went through `stream`; throws if the stream
   * has not ended: bytes nobody read were not verified.
   */
  check(): Promise<void>;
}

/**
 * Hashes an artifact as the driver consumes it, so what is checked is exactly what is applied.
 * Without `verify` (tools, benchmarks) the stream is passed through untouched and unhashed.
 */
export function hashArtifact(artifact: Readable, verify: VerifyArtifact | undefined): HashedArtifact {
  if (!verify) return { stream: artifact, check: async () => {} };
  const hash = createHash('sha256');
  let bytes = 0;
  let ended = false;
  const meter = new Transform({
    readableHighWaterMark: 1 << 20,
    writableHighWaterMark: 1 << 20,
    transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
      hash.update(chunk);
      bytes += chunk.length;
      callback(null, chunk);
    },
    flush(callback: TransformCallback) {
      ended = true;
      callback();
    },
  });
  // Destroying `meter` (a consumer giving up) destroys the artifact too, and vice versa.
  pipeline(artifact, meter, () => {});
  let digest: ArtifactDigest | undefined;
  return {
    stream: meter,
    async check() {
      if (!ended) throw new ArtifactChangedError('the artifact was not read to its end; nothing was restored');
      digest ??= { sha256: hash.digest('hex'), bytes };
      await verify(digest);
    },
  };
}
