/*
 * The worker of seal-pool.ts: plain JavaScript (worker threads load no TypeScript under tsx or
 * vitest), the formats from seal-core.mjs. One task is a batch of chunks: the inputs arrive in
 * one transferred ArrayBuffer (`input`, split by `lengths`), the outputs leave the same way, so a
 * batch costs two messages and no per-chunk cloning. Errors are answered as data ({ error: {name,
 * message} }) because structured cloning keeps only standard error names.
 */
import { collectSoon as collectAfter } from './worker-gc.mjs';
import { move, transferableSymbol, valueSymbol } from 'piscina';
import { processFiles } from './file-core.mjs';
import { restoreFiles } from './restore-core.mjs';
import { chunkId, openChunk, sealChunk, sealChunkParts } from './seal-core.mjs';
import { workerData } from 'node:worker_threads';
import { niceWorkerThread } from './thread-priority.mjs';

niceWorkerThread(workerData); // below the event loop (thread-priority.mjs)

/* A full collection once a thread has handled this many bytes, when it goes idle (worker-gc.mjs). */
const COLLECT_EVERY_BYTES = 16 * 1024 * 1024;

function split(input, lengths) {
  const out = [];
  let at = 0;
  for (const n of lengths) {
    out.push(Buffer.from(input, at, n));
    at += n;
  }
  return out;
}

function key(u8) {
  return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

/** Buffers as one fresh ArrayBuffer, moved (not copied) to the caller. */
function packed(buffers) {
  let total = 0;
  for (const b of buffers) total += b.length;
  const out = Buffer.allocUnsafeSlow(total);
  const lengths = [];
  let at = 0;
  for (const b of buffers) {
    b.copy(out, at);
    at += b.length;
    lengths.push(b.length);
  }
  const value = { output: out.buffer, lengths };
  return move({ [transferableSymbol]: [out.buffer], [valueSymbol]: value });
}

/**
 * Op 'files' (file-core.mjs): the results as data, every sealed blob in one moved ArrayBuffer in
 * result order (a chunk's `blob` becomes `blobLength`, -1 for none).
 */
/** The read buffer of 'files' tasks, reused from task to task (a worker runs one task at a time; null while one holds it). */
let arena = null;

/** Room for the blobs' overhead (SEAL_OVERHEAD each) in an answer's buffer. */
const OUTPUT_SLACK = 64 * 1024;

async function files({ dataKey, macKey, jobs, chunking, segmentBytes, budgetBytes, reuse }) {
  const keys = { dataKey: key(dataKey) };
  const mac = key(macKey);
  // One segment (and the byte after it) a batch: the reads, and so the blobs, fit one such buffer.
  const size = segmentBytes + 1;
  let mine = arena && arena.length >= size ? arena : Buffer.allocUnsafeSlow(size);
  arena = null;
  let results;
  try {
    results = await processFiles(jobs, {
      hash: (plain) => chunkId(mac, plain),
      // the blob's pieces, copied once into the answer below
      seal: (id, plain) => sealChunkParts(keys, id, plain),
      chunking,
      segmentBytes,
      budgetBytes,
      readLimit: size,
      arena: mine,
    });
  } catch (err) {
    mine = null; // a seal may still be reading it
    throw err;
  } finally {
    if (mine) arena = mine;
  }
  const blobs = [];
  let read = 0;
  let total = 0;
  for (const r of results) {
    if (r.kind !== 'data') continue;
    r.chunks = r.chunks.map((c) => {
      read += c.length;
      let blobLength = -1;
      if (c.blob) {
        blobLength = 0;
        for (const part of c.blob) blobLength += part.length;
        blobs.push(c.blob);
        total += blobLength;
      }
      return { id: c.id, length: c.length, blobLength };
    });
  }
  collectAfter(read, COLLECT_EVERY_BYTES);
  // The answer's buffer: the caller's spare one if it fits, else one it can reuse for any batch.
  const out = reuse && reuse.byteLength >= total ? Buffer.from(reuse) : Buffer.allocUnsafeSlow(Math.max(total, size + OUTPUT_SLACK));
  let at = 0;
  for (const parts of blobs) for (const part of parts) at += part.copy(out, at);
  return move({ [transferableSymbol]: [out.buffer], [valueSymbol]: { results, output: out.buffer } });
}

export default async function task(message) {
  if (message.op === 'files' || message.op === 'restore') {
    try {
      if (message.op === 'files') return await files(message);
      const written = await restoreFiles(message.jobs, { dataKey: key(message.dataKey), macKey: key(message.macKey) }, message.opts);
      collectAfter(written, COLLECT_EVERY_BYTES);
      return { written };
    } catch (err) {
      return { error: { name: err?.name ?? 'Error', message: err?.message ?? String(err) } };
    }
  }
  const { op, dataKey, macKey, ids, input, lengths } = message;
  try {
    const chunks = split(input, lengths);
    switch (op) {
      case 'hash': {
        const k = key(macKey);
        return { ids: chunks.map((c) => chunkId(k, c)) };
      }
      case 'seal': {
        const keys = { dataKey: key(dataKey) };
        return packed(await Promise.all(chunks.map((c, i) => sealChunk(keys, ids[i], c))));
      }
      case 'open': {
        const keys = { dataKey: key(dataKey), macKey: key(macKey) };
        return packed(await Promise.all(chunks.map((c, i) => openChunk(keys, ids[i], c))));
      }
      default:
        throw new Error(`unknown op ${op}`);
    }
  } catch (err) {
    return { error: { name: err?.name ?? 'Error', message: err?.message ?? String(err) } };
  } finally {
    collectAfter(input?.byteLength ?? 0, COLLECT_EVERY_BYTES);
  }
}
