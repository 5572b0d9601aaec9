/*
 * A second task module of the seal pool's threads (seal-pool.ts `block`, run with piscina's
 * per-task `filename`): one block of a stream (writer.ts writeStream), already cut into chunks on
 * the main thread, arrives as a SharedArrayBuffer (read in place) or one transferred ArrayBuffer
 * (sent back), with the chunk lengths. The thread
 * computes the chunk ids and, when asked (`seal`: the writer expects the chunks to be new, as in
 * a first backup), seals every chunk as well, so a new chunk costs one round trip and no copy on
 * the main thread. Answers, moved (not copied) back:
 *   - without `seal`: { ids, block } (the block itself, so the main thread keeps the plaintext
 *     for the chunks its lookup finds new);
 *   - with `seal`: { ids, output, blobLengths, block } (every blob, in order, in one ArrayBuffer;
 *     the block too, for the main thread to fill again: no fresh memory per block).
 * Errors are answered as data, as in seal-worker.mjs.
 */
import { collectSoon as collectAfter } from './worker-gc.mjs';
import { move, transferableSymbol, valueSymbol } from 'piscina';
import { chunkId, sealChunk, STREAM_ZSTD_LEVEL } from './seal-core.mjs';

/* A full collection once a thread has handled this many bytes, when it goes idle (worker-gc.mjs): less often than for the seal tasks, since a stream's blocks are reused. */
const COLLECT_EVERY_BYTES = 64 * 1024 * 1024;

function key(u8) {
  return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

export default async function block({ block, offset, lengths, macKey, dataKey, seal }) {
  // a SharedArrayBuffer is the writer's and stays there; a transferred block is sent back
  const back = block instanceof SharedArrayBuffer ? [] : [block];
  try {
    const mac = key(macKey);
    const chunks = [];
    let at = offset ?? 0;
    for (const n of lengths) {
      chunks.push(Buffer.from(block, at, n));
      at += n;
    }
    const ids = chunks.map((c) => chunkId(mac, c));
    if (!seal) return move({ [transferableSymbol]: back, [valueSymbol]: { ids, block: back[0] } });
    const keys = { dataKey: key(dataKey) };
    const blobs = await Promise.all(chunks.map((c, i) => sealChunk(keys, ids[i], c, STREAM_ZSTD_LEVEL)));
    let total = 0;
    for (const b of blobs) total += b.length;
    const out = Buffer.allocUnsafeSlow(total);
    const blobLengths = [];
    let o = 0;
    for (const b of blobs) {
      o += b.copy(out, o);
      blobLengths.push(b.length);
    }
    return move({ [transferableSymbol]: [out.buffer, ...back], [valueSymbol]: { ids, output: out.buffer, blobLengths, block: back[0] } });
  } catch (err) {
    return { error: { name: err?.name ?? 'Error', message: err?.message ?? String(err) } };
  } finally {
    collectAfter(block?.byteLength ?? 0, COLLECT_EVERY_BYTES);
  }
}
