import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { IntegrityError, type ChunkId, type ChunkSink, type ChunkSource, type StreamRef } from './types.js';

/**
 * An in-memory ChunkSink + ChunkSource for tests: chunk ids are sha256 hex of the plaintext,
 * streams are cut into fixed chunks of `chunkSize` (64 KiB by default). It counts what it is
 * asked, and can corrupt or lose a chunk, or answer reuse as a test wants.
 */
export class MemoryRepo implements ChunkSink, ChunkSource {
  readonly chunks = new Map<ChunkId, Buffer>();
  readonly chunkSize: number;
  /** Calls of writeStream, reuse (and the files passed to it), read. */
  writeStreamCalls = 0;
  reuseCalls = 0;
  reusedFiles = 0;
  readCalls = 0;
  /** Bytes that went through writeStream. */
  bytesWritten = 0;
  /** When set, decides reuse per file instead of "every chunk is held". */
  reuseAnswer: ((files: ChunkId[][]) => boolean[]) | undefined;
  /** Delay (ms) before each chunk a read pushes, to let tests abort or race. */
  readDelayMs = 0;

  constructor(opts: { chunkSize?: number } = {}) {
    this.chunkSize = opts.chunkSize ?? 64 * 1024;
  }

  static id(data: Buffer): ChunkId {
    return createHash('sha256').update(data).digest('hex');
  }

  private store(data: Buffer): ChunkId {
    const id = MemoryRepo.id(data);
    if (!this.chunks.has(id)) this.chunks.set(id, Buffer.from(data));
    return id;
  }

  async writeStream(source: AsyncIterable<Buffer>): Promise<StreamRef> {
    this.writeStreamCalls++;
    const ids: ChunkId[] = [];
    let bytes = 0;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    for await (const piece of source) {
      const buf = Buffer.isBuffer(piece) ? piece : Buffer.from(piece);
      bytes += buf.length;
      pending.push(buf);
      pendingBytes += buf.length;
      while (pendingBytes >= this.chunkSize) {
        const all = Buffer.concat(pending);
        ids.push(this.store(all.subarray(0, this.chunkSize)));
        const rest = all.subarray(this.chunkSize);
        pending = rest.length > 0 ? [rest] : [];
        pendingBytes = rest.length;
      }
    }
    if (pendingBytes > 0) ids.push(this.store(Buffer.concat(pending)));
    this.bytesWritten += bytes;
    return { chunks: ids, bytes };
  }

  async reuse(files: ChunkId[][]): Promise<boolean[]> {
    this.reuseCalls++;
    this.reusedFiles += files.length;
    if (this.reuseAnswer) return this.reuseAnswer(files);
    return files.map((ids) => ids.every((id) => this.chunks.has(id)));
  }

  read(chunks: ChunkId[]): Readable {
    this.readCalls++;
    const repo = this;
    const list = [...chunks];
    async function* gen(): AsyncGenerator<Buffer> {
      for (const id of list) {
        if (repo.readDelayMs > 0) await new Promise((r) => setTimeout(r, repo.readDelayMs));
        const data = repo.chunks.get(id);
        if (!data) throw new IntegrityError(`chunk ${id} is missing`);
        if (MemoryRepo.id(data) !== id) throw new IntegrityError(`chunk ${id} does not match its id`);
        yield Buffer.from(data);
      }
    }
    return Readable.from(gen(), { objectMode: false });
  }

  /** Flips a bit of a stored chunk (so reading it fails its check). */
  corrupt(id: ChunkId): void {
    const data = this.chunks.get(id);
    if (!data) throw new Error(`no chunk ${id}`);
    const copy = Buffer.from(data.length > 0 ? data : Buffer.from([0]));
    copy[0] = (copy[0] as number) ^ 1;
    this.chunks.set(id, copy);
  }

  /** Loses a chunk. */
  delete(id: ChunkId): void {
    this.chunks.delete(id);
  }

  resetCounters(): void {
    this.writeStreamCalls = 0;
    this.reuseCalls = 0;
    this.reusedFiles = 0;
    this.readCalls = 0;
    this.bytesWritten = 0;
  }
}
