import type pg from 'pg';
import type { ArtifactStore } from '../storage/types.js';
import { blockCuts, DEFAULT_CHUNKING, type ChunkerOptions } from './chunker.js';
import { packKey } from './layout.js';
import { PackBuilder } from './pack.js';
import { Semaphore } from '../lib/semaphore.js';
import { lookupChunks, registerPack, type RefHolder } from './refs.js';
import type { BlockTask, SealPool, StreamBlock } from './seal-pool.js';
import { SEAL_OVERHEAD } from './seal-core.mjs';
import type { FileJob, FileResult } from './file-core.mjs';
import type { ChunkId, ChunkSink, StoredFile, StreamRef, TenantKeys } from './types.js';

export const DEFAULT_PACK_TARGET_BYTES = 16 * 1024 * 1024;

export interface WriterOptions {
  pool: pg.Pool;
  store: ArtifactStore;
  seal: SealPool;
  keys: TenantKeys;
  tenantId: string;
  /** The backup whose references are recorded; null for a repack (no references) or a WAL file's writer. */
  backupId: string | null;
  /** A stored WAL file (wal_segments row) whose references are recorded instead of a backup's. */
  walSegmentId?: string;
  /** For usage attribution of the chunks this writer stores first. */
  clusterId: string | null;
  packTargetBytes?: number;
  /** Packs uploading at once. */
  uploads?: number;
  /** storeFiles calls on the seal pool at once (default FILE_CALLS). */
  fileCalls?: number;
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
const LOOKUP_BATCH = 2048;
/** ... and a stream waits while the chunks queued for lookup and sealing hold this many bytes. */
const QUEUE_BYTES = 8 * 1024 * 1024;
/** Chunks go to the seal pool in groups of about this many plaintext bytes. */
const SEAL_GROUP_BYTES = 4 * 1024 * 1024;
/** A stream goes to the pool in blocks of this many bytes (or twice the largest chunk, if more). */
const STREAM_BLOCK_BYTES = 8 * 1024 * 1024;
/** Blocks (with their outputs) of one stream at most: one filling here, two on the threads, one being looked up. */
const STREAM_SLOTS = 4;
/** A stream's blocks are sealed along with their hashing while at least this share of the chunks looked up so far was new. */
const SEAL_AHEAD_SHARE = 0.5;

/**
 * A stream's block and its output, in shared memory (writer.ts writeStream): free once its task
 * answered, its unfinished chunk was copied into the next block, and its chunks were looked up
 * (and the new ones copied into a pack).
 */
interface Slot {
  block: Buffer;
  output: Buffer;
  holds: number;
}

/** Free slots kept for the next stream of any writer (a WAL file, a manifest, the next component): made once, not per stream; at most IDLE_SLOTS (48 MiB) stay. */
const IDLE_SLOTS = 2;
const idleSlots: Slot[] = [];

function takeIdleSlot(size: number, outputBytes: number): Slot | undefined {
  const i = idleSlots.findIndex((s) => s.block.length === size && s.output.length === outputBytes);
  return i >= 0 ? idleSlots.splice(i, 1)[0] : undefined;
}

function keepIdleSlot(s: Slot): void {
  if (idleSlots.length < IDLE_SLOTS) idleSlots.push(s);
}

/** A chunk waiting for its lookup: its plaintext (to seal if new), or its blob already sealed, or neither (a hint: it must be held already). */
interface Queued {
  id: ChunkId;
  plain: Buffer | null;
  blob: Buffer | null;
  rawLength: number;
  /** Set by storeFiles: told once this chunk's lookup is done. */
  ticket?: Ticket;
}

/** The chunks of one storeFiles call: resolves, once each has been looked up, with the hinted ids the repository did not hold. */
interface Ticket {
  remaining: number;
  missing: Set<ChunkId>;
  resolve: (missing: Set<ChunkId>) => void;
  reject: (err: unknown) => void;
}

const queuedSize = (q: Queued) => q.plain?.length ?? q.blob?.length ?? 0;

/** A middle segment of a file read by the pool; at least twice the largest chunk (file-core.mjs). */
const FILE_SEGMENT_BYTES = 8 * 1024 * 1024;
/** storeFiles calls from the pool's answer to the end of their lookups, at once: one per thread of a two-core machine, and one whose answer is being looked up and packed. */
const FILE_CALLS = 3;
/** A batch of files read by one pool task stops taking new files after this many bytes. */
const FILE_BATCH_BYTES = 4 * 1024 * 1024;
/** A pack's blobs may go this far past its target; a blob that would go further starts the next pack. */
const PACK_SLACK_BYTES = 1024 * 1024;
/** Room in a pack buffer for the trailer (about 100 bytes an entry); a bigger one is concatenated. */
const PACK_TRAILER_ROOM = 512 * 1024;

/**
 * The write side of a tenant's repository for one backup (or one repack): chunks streams, looks
 * the chunks up in PostgreSQL in batches (recording this backup's references to those found, see
 * refs.ts), seals the rest on the pool's threads, fills packs of about `packTargetBytes` and
 * uploads them with bounded parallelism, registering each pack with its chunks and references
 * once it is durable. Memory stays bounded, and reused rather than made anew: a files call's
 * answer buffer (FILE_CALLS of them, handed back to the pool), the lookup queue (8 MiB), one seal
 * group (4 MiB), and the pack buffers (one filling, `uploads` uploading).
 */
export function createRepoWriter(opts: WriterOptions): RepoWriter {
  const holder: RefHolder = opts.backupId !== null ? { backupId: opts.backupId } : opts.walSegmentId ? { walSegmentId: opts.walSegmentId } : null;
  const target = opts.packTargetBytes ?? DEFAULT_PACK_TARGET_BYTES;
  const maxUploads = opts.uploads ?? 2;
  const chunking = opts.chunking ?? DEFAULT_CHUNKING;
  let failure: unknown = null;
  let queued: Queued[] = [];
  let queuedBytes = 0;
  /** Ids handed to the pack being filled or to packs uploading: not registered yet, but ours. */
  const pending = new Set<ChunkId>();
  /**
   * Packs are built in buffers of `packBufferBytes` reused from pack to pack (one filling, up to
   * `maxUploads` uploading): no pack-sized garbage per pack, and a pack holds no views of the
   * pool's answers, which can then be freed as soon as their chunks are copied in.
   */
  const packBlobBytes = target + Math.min(PACK_SLACK_BYTES, chunking.maxSize + SEAL_OVERHEAD);
  const packBufferBytes = packBlobBytes + PACK_TRAILER_ROOM;
  const spareBuffers: Buffer[] = [];
  const newBuilder = () => new PackBuilder(spareBuffers.pop() ?? Buffer.allocUnsafeSlow(packBufferBytes));
  let builder = newBuilder();
  const uploads = new Set<Promise<void>>();
  let draining: Promise<void> | null = null;
  const waiters: (() => void)[] = [];
  const stats = { chunks: 0, newChunks: 0, packs: 0 };
  let storedBytes = 0;
  /** Chunks with data looked up so far, and how many of them were new: whether sealing ahead pays (writeStream). */
  let lookedUp = 0;
  let lookedUpNew = 0;
  const sealAhead = () => lookedUp > 0 && lookedUpNew >= lookedUp * SEAL_AHEAD_SHARE;

  const check = () => {
    if (failure) throw failure;
    opts.signal?.throwIfAborted();
  };
  const fileCalls = new Semaphore(opts.fileCalls ?? FILE_CALLS);
  /** Tickets of storeFiles calls waiting for their lookups: rejected if the writer fails. */
  const tickets = new Set<Ticket>();
  const wake = () => {
    for (const w of waiters.splice(0)) w();
  };
  const fail = (err: unknown) => {
    failure ??= err;
    for (const t of tickets) t.reject(failure);
    tickets.clear();
    wake();
  };

  async function upload(packed: ReturnType<PackBuilder['finish']>): Promise<void> {
    await opts.store.putBuffer(packKey(opts.tenantId, packed.packId), packed.body, { sha256: packed.packId });
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
      holder,
    );
    stats.packs++;
    for (const e of packed.entries) pending.delete(e.id);
  }

  async function finishPack(): Promise<void> {
    if (builder.count === 0) return;
    while (uploads.size >= maxUploads) await Promise.race(uploads);
    check();
    const buffer = builder.buffer;
    const packed = builder.finish(opts.keys.dataKey);
    builder = newBuilder();
    const p = upload(packed).then(
      () => {
        // the store is done with the body: the buffer takes the next pack
        if (buffer && spareBuffers.length < maxUploads) spareBuffers.push(buffer);
      },
      fail,
    );
    const tracked = p.finally(() => uploads.delete(tracked));
    uploads.add(tracked);
  }

  /** Looks up and seals what is queued, batch by batch, until the queue is empty. */
  async function drain(): Promise<void> {
    while (queued.length > 0 && !failure) {
      const batch = queued.splice(0, LOOKUP_BATCH);
      const found = await lookupChunks(opts.pool, opts.tenantId, holder, batch.map((q) => q.id));
      const fresh: Queued[] = [];
      for (const q of batch) {
        if (q.plain || q.blob) lookedUp++;
        if (found.has(q.id) || pending.has(q.id)) continue;
        if (!q.plain && !q.blob) {
          q.ticket?.missing.add(q.id); // a hint the repository does not hold (any more)
          continue;
        }
        pending.add(q.id);
        lookedUpNew++;
        fresh.push(q);
      }
      for (let i = 0; i < fresh.length; ) {
        // seal in groups of about 4 MiB so a pack can be cut between them and memory stays small
        let j = i;
        let bytes = 0;
        while (j < fresh.length && bytes < Math.min(SEAL_GROUP_BYTES, target)) bytes += queuedSize(fresh[j++]!);
        const group = fresh.slice(i, j);
        const toSeal = group.filter((q) => !q.blob);
        const sealed = toSeal.length > 0 ? await opts.seal.seal(opts.keys, toSeal.map((q) => ({ id: q.id, plain: q.plain! }))) : [];
        let k = 0;
        for (const q of group) {
          const blob = q.blob ?? sealed[k++]!;
          // a blob that would overflow the pack's buffer starts the next pack
          if (builder.count > 0 && builder.bytes + blob.length > packBlobBytes) await finishPack();
          builder.add(q.id, blob, q.rawLength);
          storedBytes += blob.length;
          stats.newChunks++;
          // cut at the chunk that fills the pack, not at the end of the group
          if (builder.bytes >= target) await finishPack();
        }
        i = j;
      }
      for (const q of batch) {
        queuedBytes -= queuedSize(q);
        const t = q.ticket;
        if (t && --t.remaining === 0) {
          tickets.delete(t);
          t.resolve(t.missing);
        }
      }
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

  /**
   * Queues chunks for lookup and starts it at once (a lookup already running takes them on):
   * every caller holds something until its chunks are looked up (a storeFiles call its place, a
   * stream block its slot), so waiting for the queue to grow could wait forever: a stream of new
   * chunks that sealed to a few KiB each (a pgbench dump) never grew it enough, and once its
   * slots were all held it waited on itself (test/repo-stream.test.ts).
   */
  async function enqueue(items: Queued[]): Promise<void> {
    for (const q of items) {
      queued.push(q);
      queuedBytes += queuedSize(q);
    }
    kick();
    while (queuedBytes >= QUEUE_BYTES && !failure) {
      kick();
      await new Promise<void>((resolve) => waiters.push(resolve));
    }
    check();
  }

  /** Buffers of answers done with (see FileBatchOptions.reuse). */
  const spareOutputs: ArrayBuffer[] = [];

  /** storeFiles under its fileCalls place: the pool's work, then the lookups of its chunks. */
  async function storeFilesHeld(jobs: FileJob[]): Promise<StoredFile[]> {
    const results = await opts.seal.files(opts.keys, jobs, { chunking, segmentBytes: Math.max(FILE_SEGMENT_BYTES, 2 * chunking.maxSize), budgetBytes: FILE_BATCH_BYTES, reuse: spareOutputs.pop() });
    const stored = await lookUpFiles(results);
    // every new chunk of it is now copied into a pack: its buffer holds the next call's blobs
    if (results.output && spareOutputs.length < FILE_CALLS) spareOutputs.push(results.output);
    return stored;
  }

  async function lookUpFiles(results: FileResult[]): Promise<StoredFile[]> {
    check();
    const items: Queued[] = [];
    for (const r of results) {
      if (r.kind !== 'data') continue;
      for (const c of r.chunks) items.push({ id: c.id, plain: c.plain, blob: c.blob, rawLength: c.length });
      stats.chunks += r.chunks.length;
    }
    let missing = new Set<ChunkId>();
    if (items.length > 0) {
      const done = new Promise<Set<ChunkId>>((resolve, reject) => {
        const ticket: Ticket = { remaining: items.length, missing, resolve, reject };
        tickets.add(ticket);
        for (const q of items) q.ticket = ticket;
      });
      done.catch(() => {}); // a failure is thrown by enqueue or awaited below
      await enqueue(items);
      missing = await done;
    }
    return results.map((r): StoredFile => {
      if (r.kind !== 'data') return r;
      const chunks = r.chunks.map((c) => c.id);
      return { kind: 'data', stat: r.stat, chunks, bytes: r.chunks.reduce((a, c) => a + c.length, 0), next: r.next, missing: chunks.some((id) => missing.has(id)) };
    });
  }

  /** A pool without `block`: the block cut on this thread, its chunks hashed with `hash` (views of the block, copied to the pool). */
  function localBlock(b: StreamBlock): BlockTask {
    const lengths = blockCuts(b.block, b.start, b.end, b.last, chunking);
    const plain: Buffer[] = [];
    let at = b.start;
    for (const n of lengths) plain.push(b.block.subarray(at, (at += n)));
    return { cut: Promise.resolve({ lengths }), result: opts.seal.hash(opts.keys.macKey, plain).then((ids) => ({ ids, plain, blobs: null })) };
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
      // The source is copied into blocks of shared memory (each byte once, but for the chunk in
      // progress at a block's end), each handed to the pool as one task and read there in place:
      // the thread cuts the block into chunks, answers the cut at once, then computes the ids
      // and, while this writer's chunks have mostly been new (a first backup), seals them too,
      // into the block's shared output, so a new chunk costs no second round trip nor copy. This
      // thread only copies and packs, and no memory is transferred into its heap (see
      // stream-worker.mjs).
      //
      // A block begins with `room` bytes for the previous block's unfinished chunk (under
      // maxSize), copied there once that block's cut is known, so a block is sent only after the
      // previous one was cut (cuts are sequential; hashing and sealing are not). Meanwhile this
      // loop fills the next block: the source (pg_dump, a Redis master, mariadb-dump) is not left
      // waiting on a full pipe while a thread works. Results are enqueued in block order.
      const room = chunking.maxSize;
      const size = room + Math.max(STREAM_BLOCK_BYTES, 2 * chunking.maxSize);
      const outputBytes = size + (Math.ceil(size / chunking.minSize) + 1) * SEAL_OVERHEAD;
      const run = (b: StreamBlock): BlockTask => (opts.seal.block ? opts.seal.block(opts.keys, b, { seal: sealAhead(), chunking }) : localBlock(b));
      /** At most STREAM_SLOTS slots, taken from the idle ones or made as needed: a stream waits for a free one. */
      const free: Slot[] = [];
      /** Slots this stream took (from the idle ones or made): at most STREAM_SLOTS. */
      let owned = 0;
      let finished = false;
      const acquire = async (): Promise<Slot> => {
        for (;;) {
          check();
          const mine = free.pop();
          if (mine) return mine;
          if (owned < STREAM_SLOTS) {
            owned++;
            return takeIdleSlot(size, outputBytes) ?? { block: Buffer.from(new SharedArrayBuffer(size)), output: Buffer.from(new SharedArrayBuffer(outputBytes)), holds: 0 };
          }
          await new Promise<void>((resolve) => waiters.push(resolve));
        }
      };
      const release = (s: Slot) => {
        if (--s.holds === 0) {
          if (finished) keepIdleSlot(s);
          else free.push(s);
          wake();
        }
      };
      let slot = await acquire();
      let fill = room;
      /** The previous block's unfinished chunk, once its cut is known: bytes [from, to) of its slot. */
      let carry: Promise<{ slot: Slot; from: number; to: number } | null> = Promise.resolve(null);
      /** Blocks sent and not yet enqueued, oldest first. */
      let previous: Promise<void> = Promise.resolve();
      const pendingBlocks = new Set<Promise<void>>();
      /**
       * Sends the block filled so far, once the previous block's cut is known (its unfinished
       * chunk is then copied in front), without waiting for that: this loop goes on filling the
       * next slot, and waits only when none is free.
       */
      const send = async (last: boolean): Promise<void> => {
        const mine = slot;
        const end = fill;
        const prevCarry = carry;
        mine.holds = last ? 1 : 2; // its task, and the copy of its unfinished chunk into the next block
        const sent = (async () => {
          const tail = await prevCarry;
          check();
          const start = room - (tail ? tail.to - tail.from : 0);
          if (tail) {
            tail.slot.block.copy(mine.block, start, tail.from, tail.to);
            release(tail.slot);
          }
          if (start === end) return null; // the stream ended at a chunk's end: nothing to send
          return { start, task: run({ block: mine.block, output: mine.output, start, end, last }) };
        })();
        carry = sent.then(async (x) => {
          if (!x) return null;
          const c = await x.task.cut;
          let from = x.start;
          for (const n of c.lengths) from += n;
          bytes += from - x.start;
          stats.chunks += c.lengths.length;
          return last ? null : { slot: mine, from, to: end };
        });
        carry.catch(() => {}); // awaited by the next send or below
        const before = previous;
        const done = (async () => {
          const x = await sent;
          if (!x) {
            mine.holds = 0;
            free.push(mine);
            return;
          }
          const [r, c] = await Promise.all([x.task.result, x.task.cut]);
          await before;
          ids.push(...r.ids);
          const items: Queued[] = r.ids.map((id, i) => ({ id, plain: r.plain?.[i] ?? null, blob: r.blobs?.[i] ?? null, rawLength: c.lengths[i]! }));
          if (items.length > 0) {
            // the slot is held until every chunk of it was looked up (and the new ones packed)
            mine.holds++;
            const ticket: Ticket = { remaining: items.length, missing: new Set(), resolve: () => release(mine), reject: () => {} };
            tickets.add(ticket);
            for (const q of items) q.ticket = ticket;
          }
          release(mine); // the task
          await enqueue(items);
        })();
        done.catch(fail); // a block that failed fails the writer: nothing waits on a slot that never comes free
        previous = done;
        pendingBlocks.add(done);
        void done.then(
          () => pendingBlocks.delete(done),
          () => pendingBlocks.delete(done),
        );
        if (!last) {
          slot = await acquire();
          fill = room;
        }
      };
      try {
        for await (const piece of source) {
          check();
          for (let at = 0; at < piece.length; ) {
            const n = Math.min(piece.length - at, size - fill);
            piece.copy(slot.block, fill, at, at + n);
            fill += n;
            at += n;
            if (fill === size) await send(false);
          }
        }
        await send(true);
        await previous;
      } finally {
        // Whatever happened to the source, the blocks sent have settled before this returns:
        // nothing is enqueued behind a caller that already gave up on the stream.
        await Promise.allSettled([carry, ...pendingBlocks]);
        // the slots free now serve the next stream (of any writer); the others once released
        finished = true;
        for (const f of free.splice(0)) keepIdleSlot(f);
      }
      check();
      return { chunks: ids, bytes };
    },
    async storeFiles(jobs: FileJob[]): Promise<StoredFile[]> {
      check();
      // A call holds its place until its chunks are looked up (and the new ones copied into a
      // pack): the sealed answers held on this thread are at most FILE_CALLS calls' worth.
      await fileCalls.acquire();
      try {
        return await storeFilesHeld(jobs);
      } finally {
        fileCalls.release();
      }
    },
    async reuse(files: ChunkId[][]): Promise<boolean[]> {
      check();
      const all = files.flat();
      const found = await lookupChunks(opts.pool, opts.tenantId, holder, all);
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
