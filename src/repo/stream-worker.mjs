/*
 * A second task module of the seal pool's threads (seal-pool.ts `block`, run with piscina's
 * per-task `filename`): one block of a stream (writer.ts writeStream) in the writer's shared
 * memory, read in place, whose bytes [start, end) are the stream's next bytes from a chunk
 * boundary. The thread
 *   1. cuts the block into chunks (FastCDC, chunker-core.mjs blockCuts) and at once posts the
 *      lengths on `port`: the writer needs them to send the next block (which begins with the
 *      bytes after the last cut), which another thread can then cut while this one goes on;
 *   2. computes the chunk ids and, when asked (`seal`: the writer expects the chunks to be new, as
 *      in a first backup), seals every chunk as well, writing the blobs one after the other into
 *      the writer's shared `output`, so a new chunk costs one round trip and no copy on the main
 *      thread. Nothing large crosses between the threads: no transferred memory for the main
 *      thread's heap to account for (each transfer in counted as fresh external memory and drove
 *      a full collection every ~14 MB of stream).
 * Answers { ids } or { ids, blobLengths }. Errors are answered as data, as in seal-worker.mjs, and
 * posted on `port` too if the cut failed.
 */
import { collectSoon as collectAfter } from './worker-gc.mjs';
import { blockCuts } from './chunker-core.mjs';
import { chunkId, sealChunk, STREAM_ZSTD_LEVEL } from './seal-core.mjs';
import { workerData } from 'node:worker_threads';
import { niceWorkerThread } from './thread-priority.mjs';

niceWorkerThread(workerData); // below the event loop (thread-priority.mjs)

/* A full collection once a thread has handled this many bytes, when it goes idle (worker-gc.mjs): less often than for the seal tasks, since a stream's blocks are shared, not copied. */
const COLLECT_EVERY_BYTES = 64 * 1024 * 1024;

function key(u8) {
  return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

function errorData(err) {
  return { name: err?.name ?? 'Error', message: err?.message ?? String(err) };
}

export default async function block({ block, blockOffset, output, outputOffset, start, end, last, chunking, port, macKey, dataKey, seal }) {
  let posted = false;
  try {
    const data = Buffer.from(block, blockOffset, end);
    const lengths = blockCuts(data, start, end, last, chunking);
    port.postMessage({ lengths });
    posted = true;
    port.close();
    const chunks = [];
    let at = start;
    for (const n of lengths) {
      chunks.push(data.subarray(at, at + n));
      at += n;
    }
    const mac = key(macKey);
    const ids = chunks.map((c) => chunkId(mac, c));
    if (!seal) return { ids };
    const keys = { dataKey: key(dataKey) };
    const blobs = await Promise.all(chunks.map((c, i) => sealChunk(keys, ids[i], c, STREAM_ZSTD_LEVEL)));
    const out = Buffer.from(output, outputOffset);
    const blobLengths = [];
    let o = 0;
    for (const b of blobs) {
      if (o + b.length > out.length) throw new Error(`stream block: ${o + b.length} bytes of blobs do not fit the ${out.length}-byte output`);
      o += b.copy(out, o);
      blobLengths.push(b.length);
    }
    return { ids, blobLengths };
  } catch (err) {
    if (!posted) {
      port?.postMessage({ error: errorData(err) });
      port?.close();
    }
    return { error: errorData(err) };
  } finally {
    collectAfter(end - start, COLLECT_EVERY_BYTES);
  }
}
