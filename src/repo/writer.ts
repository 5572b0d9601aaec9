import type pg from 'pg';
import type { ArtifactStore } from '../storage/types.js';
import { chunkStream, DEFAULT_CHUNKING, type ChunkerOptions } from './chunker.js';
import { packKey } from './layout.js';
import { PackBuilder } from './pack.js';
import { registerPack, reuseChunks } from './refs.js';
import type { SealPool } from './seal-pool.js';
import type { ChunkId, ChunkSink, StreamRef, TenantKeys } from './types.js';

export const DEFAULT_PACK_TARGET_BYTES = 16 * 1024 * 1024;

export interface WriterOptions {
  pool: pg.Pool;
  store: ArtifactStore;
  seal: SealPool;
  keys: TenantKeys;
  tenantId: string;
  /** The backup whose references are recorded; null for a repack (no references). */
  backupId: string | null;
  /** For usage attribution of the chunks this writer stores first. */
  clusterId: string | null;
  packTargetBytes?: number;
  /** Packs uploading at once. */
  uploads?: number;
  chunking?: ChunkerOptions;
  signal?: AbortSignal;
}

export interface RepoWriter extends ChunkSink {
  /** Uploads the last pack and waits for every upload and registration: after it, every chunk handed in is durable and referenced. */
  flush(): Promise<void>;
  /** Sealed bytes this writer added to the store (new chunks only). */
  readonly storedBytes: number;
  readonly stats: { chunks: number; newChunks: number; packs: number };
}

/** Chunks are looked up in PostgreSQL in batches of at most this many ... */
const LOOKUP_BATCH = 512;
/** ... and a stream waits while the chunks queued for lookup and sealing hold this many bytes. */
const QUEUE_BYTES = 8 * 1024 * 1024;
/** Chunks go to the seal pool in groups of about this many plaintext bytes. */
const SEAL_GROUP_BYTES = 4 * 1024 * 1024;
/** Hashing goes to the pool in batches of about this many bytes. */
const HASH_BATCH_BYTES = 4 * 1024 * 1024;

interface Queued {
  id: ChunkId;
  plain: Buffer;
}

/**
 * The write side of a tenant's repository for one backup (or one repack): chunks streams, looks
 * the chunks up in PostgreSQL in batches (recording this backup's references to those found, see
 * refs.ts), seals the rest on the pool's threads, fills packs of about `packTargetBytes` and
 * uploads them with bounded parallelism, registering each pack with its chunks and references
 * once it is durable. Memory stays bounded: the lookup queue (8 MiB), one seal group (4 MiB), one pack being filled and
 * `uploads` packs in flight.
 */
export function createRepoWriter(opts: WriterOptions): RepoWriter {
  const target = opts.packTargetBytes ?? DEFAULT_PACK_TARGET_BYTES;
  const maxUploads = opts.uploads ?? 2;
  const chunking = opts.chunking ?? DEFAULT_CHUNKING;
  let failure: unknown = null;
  let queued: Queued[] = [];
  let queuedBytes = 0;
  /** Ids handed to the pack being filled or to packs uploading: not registered yet, but ours. */
  const pending = new Set<ChunkId>();
  let builder = new PackBuilder();
  const uploads = new Set<Promise<void>>();
  let draining: Promise<void> | null = null;
  const waiters: (() => void)[] = [];
  const stats = { chunks: 0, newChunks: 0, packs: 0 };
  let storedBytes = 0;

  const check = () => {
    if (failure) throw failure;
    opts.signal?.throwIfAborted();
  };
  const wake = () => {
    for (const w of waiters.splice(0)) w();
  };
  const fail = (err: unknown) => {
    failure ??= err;
    wake();
  };

  async function upload(packed: ReturnType<PackBuilder['finish']>): Promise<void> {
    await opts.store.putBuffer(packKey(opts.tenantId, packed.packId), packed.body);
    await registerPack(
      opts.pool,
      {
        id: packed.packId,
        tenantId: opts.tenantId,
        bytes: packed.body.length,
        entries: packed.entries.map((e) => ({ id: e.id, offset: e.offset, length: e.length, rawLength: e.rawLength ?? -1 })),
        clusterId: opts.clusterId,
        secondaryStatus: null,
      },
      opts.backupId,
    );
    stats.packs++;
    for (const e of packed.entries) pending.delete(e.id);
  }

  async function finishPack(): Promise<void> {
    if (builder.count === 0) return;
    while (uploads.size >= maxUploads) await Promise.race(uploads);
    check();
    const packed = builder.finish(opts.keys.dataKey);
    builder = new PackBuilder();
    const p = upload(packed).catch(fail);
    const tracked = p.finally(() => uploads.delete(tracked));
    uploads.add(tracked);
  }

  /** Looks up and seals what is queued, batch by batch, until the queue is empty. */
  async function drain(): Promise<void> {
    while (queued.length > 0 && !failure) {
      const batch = queued.splice(0, LOOKUP_BATCH);
      const found = await reuseChunks(opts.pool, opts.tenantId, opts.backupId, batch.map((q) => q.id));
      const fresh: Queued[] = [];
      for (const q of batch) {
        if (found.has(q.id) || pending.has(q.id)) continue;
        pending.add(q.id);
        fresh.push(q);
      }
      for (let i = 0; i < fresh.length; ) {
        // seal in groups of about 4 MiB so a pack can be cut between them and memory stays small
        let j = i;
        let bytes = 0;
        while (j < fresh.length && bytes < Math.min(SEAL_GROUP_BYTES, target)) bytes += fresh[j++]!.plain.length;
        const group = fresh.slice(i, j);
        const blobs = await opts.seal.seal(opts.keys, group.map((q) => ({ id: q.id, plain: q.plain })));
        for (let k = 0; k < group.length; k++) {
          const q = group[k]!;
          const blob = blobs[k]!;
          builder.add(q.id, blob, q.plain.length);
          storedBytes += blob.length;
          stats.newChunks++;
          // cut at the chunk that fills the pack, not at the end of the group
          if (builder.bytes >= target) await finishPack();
        }
        i = j;
      }
      for (const q of batch) queuedBytes -= q.plain.length;
      wake();
    }
  }

  function kick(): void {
    if (draining) return;
    draining = drain()
      .catch(fail)
      .finally(() => {
        draining = null;
        if (queued.length > 0 && !failure) kick();
        else wake();
      });
  }

  async function enqueue(items: Queued[]): Promise<void> {
    for (const q of items) {
      queued.push(q);
      queuedBytes += q.plain.length;
    }
    if (queued.length >= LOOKUP_BATCH || queuedBytes >= QUEUE_BYTES / 4) kick();
    while (queuedBytes >= QUEUE_BYTES && !failure) {
      kick();
      await new Promise<void>((resolve) => waiters.push(resolve));
    }
    check();
  }

  async function hashAll(chunks: Buffer[]): Promise<ChunkId[]> {
    return opts.seal.hash(opts.keys.macKey, chunks);
  }

  return {
    get storedBytes() {
      return storedBytes;
    },
    stats,
    async writeStream(source: AsyncIterable<Buffer>): Promise<StreamRef> {
      check();
      const ids: ChunkId[] = [];
      let bytes = 0;
      let batch: Buffer[] = [];
      let batchBytes = 0;
      const flushBatch = async () => {
        if (batch.length === 0) return;
        const got = await hashAll(batch);
        ids.push(...got);
        await enqueue(batch.map((plain, i) => ({ id: got[i]!, plain })));
        batch = [];
        batchBytes = 0;
      };
      for await (const chunk of chunkStream(source, chunking)) {
        check();
        batch.push(chunk);
        batchBytes += chunk.length;
        bytes += chunk.length;
        stats.chunks++;
        if (batchBytes >= HASH_BATCH_BYTES) await flushBatch();
      }
      await flushBatch();
      return { chunks: ids, bytes };
    },
    async reuse(files: ChunkId[][]): Promise<boolean[]> {
      check();
      const all = files.flat();
      const found = await reuseChunks(opts.pool, opts.tenantId, opts.backupId, all);
      return files.map((f) => f.every((id) => found.has(id) || pending.has(id)));
    },
    async flush(): Promise<void> {
      check();
      kick();
      while ((draining || queued.length > 0) && !failure) await new Promise<void>((resolve) => waiters.push(resolve));
      check();
      await finishPack();
      await Promise.all(uploads);
      check();
    },
  };
}
