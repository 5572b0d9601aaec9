/*
 * The CPU work of seal.ts (HMAC ids, AES-GCM, and the waiting on zstd) on worker threads, so a
 * backup's hashing and sealing does not stall the event loop that serves HTTP and uploads.
 *
 * A call is split into batches of about `batchBytes(total)` so each thread gets a share of it;
 * a batch's inputs are copied into one ArrayBuffer that is transferred (the callers keep their
 * buffers: the writer still needs the plaintext lengths, and a chunk is often a view of a larger
 * read buffer, which structured cloning would copy whole). Results come back the same way and
 * are views of one ArrayBuffer per batch. Calls smaller than INLINE_BYTES run on this thread:
 * a round trip to a worker costs more than they do.
 *
 * zstd runs on libuv's thread pool (process-wide, UV_THREADPOOL_SIZE, default 4), not on these
 * threads: on machines with more than 4 cores raise UV_THREADPOOL_SIZE at process start.
 */
import { availableParallelism } from 'node:os';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { Piscina } from 'piscina';
import type { ChunkerOptions } from './chunker.js';
import type { FileJob, FileResult } from './file-core.mjs';
import type { RestoreJob } from './restore-core.mjs';
import { chunkId, openChunk, sealChunk } from './seal.js';
import { niceThreadPool } from './thread-priority.mjs';
import { IntegrityError, type ChunkId, type TenantKeys } from './types.js';

export interface SealPool {
  /** Ids of the chunks (HMAC), computed off the main thread for big chunks; small ones inline. */
  hash(macKey: Buffer, chunks: Buffer[]): Promise<ChunkId[]>;
  seal(keys: TenantKeys, items: { id: ChunkId; plain: Buffer }[]): Promise<Buffer[]>;
  /** Verified plaintexts; the first damaged chunk rejects the call with an IntegrityError. */
  open(keys: TenantKeys, items: { id: ChunkId; blob: Buffer }[]): Promise<Buffer[]>;
  /**
   * One block of a stream (`block[start, end)`, from a chunk boundary) on a worker thread
   * (stream-worker.mjs), read in place: `block` (and `output`) are views of SharedArrayBuffers.
   * `cut` settles first, with the chunk lengths; `result` then with the chunk ids and, with
   * `seal`, every chunk sealed into `output` (`blobs`, views of it), else the chunks' plaintexts
   * (`plain`, views of the block). The caller leaves the block's bytes [start, end) as they are
   * until `result` settles, and the output's until it is done with the blobs. Optional (a
   * wrapper of a pool may lack it): the writer then cuts on its own thread and hashes the chunks
   * with `hash`.
   */
  block?(keys: TenantKeys, block: StreamBlock, opts: { seal: boolean; chunking: ChunkerOptions }): BlockTask;
  /** Reads, chunks, hashes and seals files on a worker thread (file-core.mjs: one batch of jobs). */
  files(keys: TenantKeys, jobs: FileJob[], opts: FileBatchOptions): Promise<FileResults>;
  /** Writes restored files from chunks in local pack files on a worker thread (restore-core.mjs); answers the bytes written. */
  restore(keys: TenantKeys, jobs: RestoreJob[], opts: { asRoot: boolean; now: number }): Promise<number>;
  close(): Promise<void>;
}

/** Chunks below this are hashed on the calling thread (HMAC of 64 KiB ≈ the cost of a worker round trip). */
export const INLINE_HASH_BYTES = 64 * 1024;
/** seal/open calls carrying less than this in total run on the calling thread. */
export const INLINE_BYTES = 64 * 1024;
const MIN_BATCH_BYTES = 1024 * 1024;
const STREAM_WORKER = new URL('./stream-worker.mjs', import.meta.url).href;
const MAX_BATCH_BYTES = 4 * 1024 * 1024;

/** A stream's next bytes, `block[start, end)`, from a chunk boundary; with `last` the stream ends at `end`. */
export interface StreamBlock {
  block: Buffer;
  /** Room for the blobs when sealing: at least the block's bytes plus SEAL_OVERHEAD per chunk. */
  output: Buffer;
  start: number;
  end: number;
  last: boolean;
}

export interface BlockCut {
  lengths: number[];
}

export interface BlockTask {
  cut: Promise<BlockCut>;
  result: Promise<BlockResult>;
}

export interface BlockResult {
  ids: ChunkId[];
  /** Without `seal`: each chunk's plaintext, a view of the block. */
  plain: Buffer[] | null;
  /** With `seal`: each chunk's blob, a view of the output. */
  blobs: Buffer[] | null;
}

export interface FileBatchOptions {
  chunking: ChunkerOptions;
  segmentBytes: number;
  budgetBytes: number;
  /**
   * The `output` of an earlier answer whose blobs are no longer used: transferred to the thread
   * (detached here) to hold this call's blobs if it is large enough, so answers make no garbage.
   */
  reuse?: ArrayBuffer;
}

/** The results of a files call; their blobs are views of `output`, which the caller may hand back as `reuse` once it is done with them. */
export type FileResults = FileResult[] & { output?: ArrayBuffer };

type Op = 'hash' | 'seal' | 'open';
type WireFileResult = Exclude<FileResult, { kind: 'data' }> | (Omit<Extract<FileResult, { kind: 'data' }>, 'chunks'> & { chunks: { id: string; length: number; blobLength: number }[] });
interface TaskResult {
  /** Op 'files': each chunk's blob is `blobLength` bytes of `output` (-1: none). */
  results?: WireFileResult[];
  ids?: ChunkId[];
  written?: number;
  output?: ArrayBuffer;
  lengths?: number[];
  error?: { name: string; message: string };
}

function ownCopy(key: Buffer): Uint8Array {
  return new Uint8Array(key); // a 32-byte ArrayBuffer of its own, not Node's 8 KiB pool slab
}

function remoteError(e: { name: string; message: string }): Error {
  if (e.name === 'IntegrityError') return new IntegrityError(e.message);
  const err = e.name === 'TypeError' ? new TypeError(e.message) : new Error(e.message);
  if (err.name !== e.name) err.name = e.name;
  return err;
}

function views(output: ArrayBufferLike, lengths: number[], from = 0): Buffer[] {
  const out: Buffer[] = [];
  let at = from;
  for (const n of lengths) {
    out.push(Buffer.from(output, at, n));
    at += n;
  }
  return out;
}

/** Whether libuv's thread pool was niced (by the first pool made with a nice value). */
let threadPoolNiced = false;

export interface SealPoolOptions {
  threads?: number;
  /**
   * Nice value (0-19) of the pool's threads and of libuv's thread pool (thread-priority.mjs):
   * below the event loop and a source on the same host. 0 (the default here; the service passes
   * SEAL_NICE) leaves every thread as it is.
   */
  nice?: number;
}

export function createSealPool(opts: SealPoolOptions = {}): SealPool {
  const threads = Math.max(1, opts.threads ?? availableParallelism());
  const nice = opts.nice ?? 0;
  // libuv's pool is the process's: niced once, by the first pool that asks (it cannot be un-niced)
  if (nice > 0 && !threadPoolNiced) {
    threadPoolNiced = true;
    void niceThreadPool(nice);
  }
  const piscina = new Piscina({
    filename: new URL('./seal-worker.mjs', import.meta.url).href,
    workerData: { nice },
    minThreads: 0,
    maxThreads: threads,
    // kept a while so consecutive batches reuse warm threads; idle workers are unref'd by piscina
    idleTimeout: 30_000,
  });
  let closed = false;
  // A worker that fails to start (its module cannot load) leaves queued tasks pending forever and
  // is reported only as an 'error' event: the pool is then broken for good, and says so.
  let broken: Error | undefined;
  const inFlight = new Set<(err: Error) => void>();
  piscina.on('error', (err: unknown) => {
    broken = new Error(`seal pool worker failed: ${err instanceof Error ? err.message : String(err)}`);
    for (const fail of inFlight) fail(broken);
  });

  function batchBytes(total: number): number {
    return Math.min(MAX_BATCH_BYTES, Math.max(MIN_BATCH_BYTES, Math.ceil(total / threads)));
  }

  /** Index ranges [start, end) of `sizes`, each about `batchBytes` of input. */
  function batches(sizes: number[]): [number, number][] {
    const total = sizes.reduce((a, b) => a + b, 0);
    const target = batchBytes(total);
    const out: [number, number][] = [];
    let start = 0;
    let bytes = 0;
    for (let i = 0; i < sizes.length; i++) {
      bytes += sizes[i]!;
      if (bytes >= target) {
        out.push([start, i + 1]);
        start = i + 1;
        bytes = 0;
      }
    }
    if (start < sizes.length) out.push([start, sizes.length]);
    return out;
  }

  async function run(op: Op, keys: { dataKey?: Buffer; macKey?: Buffer }, ids: ChunkId[] | undefined, inputs: Buffer[]): Promise<TaskResult> {
    if (closed) throw new Error('seal pool closed');
    if (broken) throw broken;
    let total = 0;
    for (const b of inputs) total += b.length;
    const input = new ArrayBuffer(total);
    const view = new Uint8Array(input);
    const lengths: number[] = [];
    let at = 0;
    for (const b of inputs) {
      view.set(b, at);
      at += b.length;
      lengths.push(b.length);
    }
    const task = {
      op,
      ids,
      input,
      lengths,
      dataKey: keys.dataKey ? ownCopy(keys.dataKey) : undefined,
      macKey: keys.macKey ? ownCopy(keys.macKey) : undefined,
    };
    return submit(task, [input]);
  }

  async function submit(task: object, transferList: (ArrayBuffer | MessagePort)[], filename?: string): Promise<TaskResult> {
    if (closed) throw new Error('seal pool closed');
    if (broken) throw broken;
    const abort = new AbortController();
    const result = await new Promise<TaskResult>((resolve, reject) => {
      const fail = (err: Error) => {
        abort.abort(err);
        reject(err);
      };
      inFlight.add(fail);
      (piscina.run(task, { transferList, signal: abort.signal, ...(filename && { filename }) }) as Promise<TaskResult>)
        .then(resolve, reject)
        .finally(() => inFlight.delete(fail));
    });
    if (result.error) throw remoteError(result.error);
    return result;
  }

  async function perBatch<T>(sizes: number[], runBatch: (start: number, end: number) => Promise<T[]>): Promise<T[]> {
    const parts = await Promise.all(batches(sizes).map(([s, e]) => runBatch(s, e)));
    return parts.flat();
  }

  return {
    async hash(macKey, chunks) {
      const ids: ChunkId[] = new Array(chunks.length);
      const big: number[] = [];
      chunks.forEach((c, i) => {
        if (c.length < INLINE_HASH_BYTES) ids[i] = chunkId(macKey, c);
        else big.push(i);
      });
      if (big.length > 0) {
        const remote = await perBatch(
          big.map((i) => chunks[i]!.length),
          async (s, e) => (await run('hash', { macKey }, undefined, big.slice(s, e).map((i) => chunks[i]!))).ids!,
        );
        big.forEach((i, k) => (ids[i] = remote[k]!));
      }
      return ids;
    },

    async seal(keys, items) {
      const total = items.reduce((a, it) => a + it.plain.length, 0);
      if (total < INLINE_BYTES) return Promise.all(items.map((it) => sealChunk(keys, it.id, it.plain)));
      return perBatch(
        items.map((it) => it.plain.length),
        async (s, e) => {
          const part = items.slice(s, e);
          const r = await run('seal', keys, part.map((it) => it.id), part.map((it) => it.plain));
          return views(r.output!, r.lengths!);
        },
      );
    },

    async open(keys, items) {
      const total = items.reduce((a, it) => a + it.blob.length, 0);
      if (total < INLINE_BYTES) return Promise.all(items.map((it) => openChunk(keys, it.id, it.blob)));
      return perBatch(
        items.map((it) => it.blob.length),
        async (s, e) => {
          const part = items.slice(s, e);
          const r = await run('open', keys, part.map((it) => it.id), part.map((it) => it.blob));
          return views(r.output!, r.lengths!);
        },
      );
    },

    block(keys, b, opts) {
      if (!(b.block.buffer instanceof SharedArrayBuffer) || !(b.output.buffer instanceof SharedArrayBuffer)) {
        throw new TypeError('a stream block and its output must be views of SharedArrayBuffers');
      }
      const { port1, port2 } = new MessageChannel();
      let cutSettled = false;
      let failCut: (err: unknown) => void = () => {};
      const cut = new Promise<BlockCut>((resolve, reject) => {
        failCut = reject;
        port1.once('message', (m: { lengths?: number[]; error?: { name: string; message: string } }) => {
          cutSettled = true;
          port1.close();
          if (m.error) reject(remoteError(m.error));
          else resolve({ lengths: m.lengths! });
        });
      });
      const task = {
        block: b.block.buffer,
        blockOffset: b.block.byteOffset,
        output: b.output.buffer,
        outputOffset: b.output.byteOffset,
        start: b.start,
        end: b.end,
        last: b.last,
        chunking: { minSize: opts.chunking.minSize, avgSize: opts.chunking.avgSize, maxSize: opts.chunking.maxSize },
        port: port2,
        macKey: ownCopy(keys.macKey),
        seal: opts.seal,
        ...(opts.seal && { dataKey: ownCopy(keys.dataKey) }),
      };
      const answer = submit(task, [port2], STREAM_WORKER).catch((err: unknown) => {
        // a task that failed before its cut was posted (a broken or closed pool) fails the cut too
        if (!cutSettled) {
          cutSettled = true;
          port1.close();
          failCut(err);
        }
        throw err;
      });
      const result = Promise.all([answer, cut]).then(([a, c]): BlockResult => {
        const r = a as TaskResult & { blobLengths?: number[] };
        if (opts.seal) return { ids: r.ids!, plain: null, blobs: views(b.output.buffer, r.blobLengths!, b.output.byteOffset) };
        return { ids: r.ids!, plain: views(b.block.buffer, c.lengths, b.block.byteOffset + b.start), blobs: null };
      });
      cut.catch(() => {});
      result.catch(() => {});
      return { cut, result };
    },

    async files(keys, jobs, opts) {
      const reuse = opts.reuse && opts.reuse.byteLength > 0 ? opts.reuse : undefined; // 0: detached
      const r = await submit({ op: 'files', jobs, ...opts, reuse, dataKey: ownCopy(keys.dataKey), macKey: ownCopy(keys.macKey) }, reuse ? [reuse] : []);
      const output = r.output!;
      let at = 0;
      const results: FileResults = r.results!.map((res): FileResult => {
        if (res.kind !== 'data') return res;
        const chunks = res.chunks.map((c) => {
          let blob: Buffer | null = null;
          if (c.blobLength >= 0) {
            blob = Buffer.from(output, at, c.blobLength);
            at += c.blobLength;
          }
          return { id: c.id, length: c.length, blob, plain: null };
        });
        return { ...res, chunks };
      });
      results.output = output;
      return results;
    },

    async restore(keys, jobs, opts) {
      const r = await submit({ op: 'restore', jobs, opts, dataKey: ownCopy(keys.dataKey), macKey: ownCopy(keys.macKey) }, []);
      return r.written!;
    },

    async close() {
      if (closed) return;
      closed = true;
      await piscina.close();
    },
  };
}

let shared: SealPool | undefined;

/**
 * The process's pool, created on first use (with the options of that call); its idle workers do not
 * keep the process alive, so it need not be closed. Closing it is allowed: the next call creates a
 * new one.
 */
export function sharedSealPool(opts: SealPoolOptions = {}): SealPool {
  if (!shared) {
    const pool = createSealPool(opts);
    const own: SealPool = {
      ...pool,
      close: () => {
        if (shared === own) shared = undefined;
        return pool.close();
      },
    };
    shared = own;
  }
  return shared;
}
