// @ts-check
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/*
 * Memory of the pool's threads: a task's input, the compressed and encrypted intermediates and the
 * output copy are all large external buffers, while the task allocates almost no JS objects, so V8
 * would only collect them under external-memory pressure, i.e. after each thread held tens of MiB
 * of dead buffers (measured: a 2 GiB backup peaked at ~580 MB RSS, most of it outside the main
 * isolate). So a full collection runs once a thread has handled `everyBytes` since the last one,
 * when it goes idle (every buffer of the finished tasks is then unreachable). Not after every task:
 * that cost more than half of the sealing throughput (200 against 519 MB/s on 4 MiB tasks). `gc` is
 * obtained the documented-by-V8 way (--expose-gc then a fresh context); without it nothing changes.
 * One counter per thread, whichever task module (seal-worker.mjs, stream-worker.mjs) counts.
 */
let sinceCollect = 0;
let collectPending = false;
/** @type {null | (() => void)} */
let collect = null;
try {
  setFlagsFromString('--expose-gc');
  collect = runInNewContext('gc');
} catch {
  collect = null;
}

/**
 * Counts `bytes` handled by this thread; past `everyBytes` since the last collection, collects
 * once the current task has returned.
 * @param {number} bytes
 * @param {number} everyBytes
 */
export function collectSoon(bytes, everyBytes) {
  sinceCollect += bytes;
  if (!collect || collectPending || sinceCollect < everyBytes) return;
  sinceCollect = 0;
  collectPending = true;
  const run = collect;
  setImmediate(() => {
    collectPending = false;
    run();
  });
}
