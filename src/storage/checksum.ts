import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import type { PutResult } from './types.js';

/** Pass-through that hashes and counts the bytes flowing through it, so nothing is ever buffered whole. */
export class Sha256Meter extends Transform {
  #hash: Hash = createHash('sha256');
  #bytes = 0;
  #digest: string | undefined;

  constructor(private readonly onProgress?: (bytesSoFar: number) => void) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#hash.update(chunk);
    this.#bytes += chunk.length;
    try {
      this.onProgress?.(this.#bytes);
    } catch {
      // a progress reporter must never break the data path
    }
    callback(null, chunk);
  }

  /** Only valid once the stream has finished. */
  result(): PutResult {
    this.#digest ??= this.#hash.digest('hex');
    return { bytes: this.#bytes, sha256: this.#digest };
  }
}

export async function sha256OfStream(readable: NodeJS.ReadableStream | AsyncIterable<Buffer | string>): Promise<PutResult> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of readable as AsyncIterable<Buffer | string>) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    hash.update(buf);
    bytes += buf.length;
  }
  return { bytes, sha256: hash.digest('hex') };
}
