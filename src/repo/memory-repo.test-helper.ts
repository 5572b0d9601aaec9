import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { ChunkerOptions } from './chunker.js';
import { processFiles } from './file-core.mjs';
import { IntegrityError, type ChunkId, type ChunkSink, type ChunkSource, type FileJob, type StoredFile, type StreamRef } from './types.js';

/** MemoryRepo with storeFiles: file-core.mjs run on this thread, with these sizes. */
export interface MemoryFilesOptions {
  chunking: ChunkerOptions;
  segmentBytes: number;
  budgetBytes: number;
}

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

  /** Calls of storeFiles, and the files it read (a 'data' answer from the start of a file). */
  storeFilesCalls = 0;
  filesRead = 0;
  /** Only with `files`: the sink's optional fast path (tree-backup.ts uses it when present). */
  readonly storeFiles?: (jobs: FileJob[]) => Promise<StoredFile[]>;

  constructor(opts: { chunkSize?: number; files?: MemoryFilesOptions } = {}) {
    this.chunkSize = opts.chunkSize ?? 64 * 1024;
    const files = opts.files;
    if (files) this.storeFiles = (jobs) => this.storeFilesInThread(jobs, files);
  }

  private async storeFilesInThread(jobs: FileJob[], o: MemoryFilesOptions): Promise<StoredFile[]> {
    this.storeFilesCalls++;
    const results = await processFiles(jobs, { hash: (b) => MemoryRepo.id(b), seal: null, chunking: o.chunking, segmentBytes: o.segmentBytes, budgetBytes: o.budgetBytes });
    return results.map((r, i): StoredFile => {
      if (r.kind !== 'data') return r;
      if ((jobs[i]?.start ?? 0) === 0 && r.stat.size > 0) this.filesRead++;
      let missing = false;
      let bytes = 0;
      for (const c of r.chunks) {
        bytes += c.length;
        if (c.plain) {
          if (!this.chunks.has(c.id)) this.chunks.set(c.id, Buffer.from(c.plain));
        } else if (!this.chunks.has(c.id)) missing = true; // a hint we do not hold
      }
      this.bytesWritten += bytes;
      return { kind: 'data', stat: r.stat, chunks: r.chunks.map((c) => c.id), bytes, next: r.next, missing };
    });
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
      const buf = Buffer.from(piece); // a copy: the source may reuse the piece's memory once the next is asked for (ChunkSink.writeStream)
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
    this.storeFilesCalls = 0;
    this.filesRead = 0;
  }
}

/* ---- helpers for the tree tests ---- */

export interface SnapshotEntry {
  path: string;
  type: 'file' | 'directory' | 'symlink' | 'other';
  mode: number;
  uid: number;
  gid: number;
  mtimeNs: bigint;
  data?: string; // sha256 of a file's bytes
  size?: number;
  link?: string;
}

/** Every entry below `root` (not root itself), in a stable order, with what a restore must keep. */
export async function snapshotTree(root: string): Promise<SnapshotEntry[]> {
  const { lstat, readdir, readFile, readlink } = await import('node:fs/promises');
  const path = await import('node:path');
  const out: SnapshotEntry[] = [];
  const walk = async (dir: string, rel: string): Promise<void> => {
    const names = (await readdir(dir)).sort();
    for (const name of names) {
      const abs = path.join(dir, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = await lstat(abs, { bigint: true });
      const e: SnapshotEntry = {
        path: r,
        type: st.isFile() ? 'file' : st.isDirectory() ? 'directory' : st.isSymbolicLink() ? 'symlink' : 'other',
        mode: st.isSymbolicLink() ? 0 : Number(st.mode & 0o7777n),
        uid: Number(st.uid),
        gid: Number(st.gid),
        mtimeNs: st.mtimeNs,
      };
      if (st.isFile()) {
        e.data = createHash('sha256').update(await readFile(abs)).digest('hex');
        e.size = Number(st.size);
      }
      if (st.isSymbolicLink()) e.link = await readlink(abs);
      out.push(e);
      if (st.isDirectory()) await walk(abs, r);
    }
  };
  await walk(root, '');
  return out;
}

/**
 * Asserts two snapshots are equal, mtimes within `toleranceNs` (utimes takes a double: a restore
 * keeps mtimes to well under a microsecond). Symlink mtimes are compared too.
 */
export function expectSameTree(actual: SnapshotEntry[], expected: SnapshotEntry[], toleranceNs = 1000n): void {
  const strip = (s: SnapshotEntry[]) => s.map(({ mtimeNs: _m, ...rest }) => rest);
  const a = strip(actual);
  const b = strip(expected);
  if (JSON.stringify(a) !== JSON.stringify(b)) {
    throw new Error(`trees differ:\n${JSON.stringify(a, null, 1)}\n---- expected ----\n${JSON.stringify(b, null, 1)}`);
  }
  actual.forEach((e, i) => {
    const want = (expected[i] as SnapshotEntry).mtimeNs;
    const diff = e.mtimeNs > want ? e.mtimeNs - want : want - e.mtimeNs;
    if (diff > toleranceNs) throw new Error(`mtime of ${e.path} differs by ${diff} ns (${e.mtimeNs} vs ${want})`);
  });
}

export async function collectAll<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

export async function* fromArray<T>(items: T[]): AsyncGenerator<T> {
  yield* items;
}
