// @ts-check
import { readlink, readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';

/*
 * The repository's CPU-heavy threads (the seal pool's, and libuv's, where zstd runs and packs are
 * written) at a lower scheduling priority than the event loop: on a machine short of cores the
 * bulk work of a backup (chunking, hashing, compression, encryption, page-cache copies) takes what
 * is left, and what a backup waits on goes first: the event loop that reads the source and serves
 * HTTP, and a source on the same host (a Redis master's snapshot fork, mysqld and mariadb-dump,
 * pg_dump), which the pipeline buffers ahead of anyway. Measured (bench:backup (g), 2 cores): the
 * Redis fork of a 386 MB snapshot spent 1.0-1.3 s runnable waiting for a CPU during our backup at
 * the same priority, 0.5-0.7 s with these threads niced (0.01-0.05 s during redis-cli --rdb).
 *
 * Linux: a nice value is a thread's own (setpriority(PRIO_PROCESS, tid)), and a thread's id is the
 * last part of /proc/thread-self. Elsewhere, or where that fails, nothing changes. A nice value can
 * only be raised by an unprivileged process, never lowered: a thread niced stays so.
 */

/** SEAL_NICE's default (src/config.ts): ten steps below the event loop. */
export const DEFAULT_SEAL_NICE = 10;

/** The thread id a /proc/thread-self link names (`<pid>/task/<tid>`). */
const tidOf = (/** @type {string} */ link) => Number(link.split('/').pop());

/** This thread's id, or null where /proc/thread-self is not there (not Linux). */
function threadId() {
  try {
    return tidOf(readlinkSync('/proc/thread-self'));
  } catch {
    return null;
  }
}

/**
 * Sets the calling thread's nice value (0-19; 0 leaves it as it is). Returns whether it was set.
 * @param {number} nice
 */
export function niceThisThread(nice) {
  if (!(nice > 0)) return false;
  const tid = threadId();
  if (tid === null) return false;
  try {
    setPriority(tid, nice);
    return true;
  } catch {
    return false;
  }
}

/**
 * Sets the nice value of libuv's thread pool (process-wide: UV_THREADPOOL_SIZE threads, 4 by
 * default, made all at once on first use). Its threads are found by asking them: a readlink of
 * /proc/thread-self runs on whichever pool thread takes it and names that thread, so rounds of
 * many at once are made until every thread has answered (or a few rounds went by). Answers the
 * ids niced.
 * @param {number} nice
 * @param {number} [size] the pool's size (UV_THREADPOOL_SIZE)
 * @returns {Promise<number[]>}
 */
export async function niceThreadPool(nice, size = Number(process.env.UV_THREADPOOL_SIZE) || 4) {
  if (!(nice > 0) || threadId() === null) return [];
  const seen = new Set();
  for (let round = 0; round < 16 && seen.size < size; round++) {
    const links = await Promise.all(
      Array.from({ length: 16 * size }, () => new Promise((resolve) => readlink('/proc/thread-self', (err, link) => resolve(err ? null : link)))),
    );
    for (const link of links) if (link) seen.add(tidOf(String(link)));
  }
  const niced = [];
  for (const tid of seen) {
    try {
      setPriority(tid, nice);
      niced.push(tid);
    } catch {
      // gone or not ours: nothing to do
    }
  }
  return niced;
}

/**
 * In a seal pool thread: the nice value the pool was made with (its workerData `nice`). Each task
 * module (seal-worker.mjs, stream-worker.mjs) calls it as it loads; setting it twice is harmless.
 * @param {unknown} data the thread's workerData
 */
export function niceWorkerThread(data) {
  const nice = data && typeof data === 'object' && 'nice' in data ? Number(data.nice) : 0;
  niceThisThread(nice);
}
