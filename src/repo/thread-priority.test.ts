import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { threadStats } from '../../test/helpers/proc.js';
import { createSealPool } from './seal-pool.js';
import { generateTenantKeys } from './seal.js';
import { niceThisThread, niceThreadPool } from './thread-priority.mjs';

/** Nice value of each thread of this process, by thread id. */
function niceByThread(): Map<number, number> {
  return new Map([...threadStats()].map(([tid, f]) => [tid, Number(f[16])]));
}

const count = (nice: number) => [...niceByThread().values()].filter((n) => n === nice).length;

async function until(what: string, ok: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify([...niceByThread()])}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const linux = existsSync('/proc/thread-self');
const MiB = 1024 * 1024;

describe.skipIf(!linux)('thread priority (Linux)', () => {
  const pools: { close(): Promise<void> }[] = [];
  afterAll(() => Promise.all(pools.map((p) => p.close())));

  it('niceThisThread sets the calling thread only: a worker thread niced, the main thread left at 0', async () => {
    const moduleUrl = new URL('./thread-priority.mjs', import.meta.url).href;
    const worker = new Worker(
      `import { niceThisThread } from ${JSON.stringify(moduleUrl)}; import { parentPort } from 'node:worker_threads'; import { readlinkSync } from 'node:fs';
       const ok = niceThisThread(6); parentPort.postMessage({ ok, tid: Number(readlinkSync('/proc/thread-self').split('/').pop()) });
       setInterval(() => {}, 1000);`,
      { eval: true, type: 'module' } as never,
    );
    try {
      const { ok, tid } = await new Promise<{ ok: boolean; tid: number }>((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
      });
      expect(ok).toBe(true);
      const nice = niceByThread();
      expect(nice.get(tid)).toBe(6);
      expect(nice.get(process.pid)).toBe(0);
    } finally {
      await worker.terminate();
    }
    expect(niceThisThread(0)).toBe(false); // 0 changes nothing
    expect(niceByThread().get(process.pid)).toBe(0);
  });

  it("a pool made with a nice value runs its threads and libuv's at that value, the event loop's thread at 0", async () => {
    expect(count(9)).toBe(0);
    const keys = generateTenantKeys();
    const pool = createSealPool({ threads: 2, nice: 9 });
    pools.push(pool);
    // big enough to go to both threads (batches of at most 4 MiB)
    const plains = Array.from({ length: 4 }, () => randomBytes(2 * MiB));
    const ids = await pool.hash(keys.macKey, plains);
    await pool.seal(keys, plains.map((plain, i) => ({ id: ids[i]!, plain })));
    const uvThreads = Number(process.env.UV_THREADPOOL_SIZE) || 4;
    // at least one pool thread (piscina starts them as work comes) and every libuv pool thread
    await until('the niced threads', () => count(9) >= 1 + uvThreads);
    expect(niceByThread().get(process.pid)).toBe(0);
    // niceThreadPool finds every libuv thread: asking again answers as many
    expect((await niceThreadPool(9)).length).toBe(uvThreads);
  });

  it('nice 0 (a pool made without one) leaves its threads as they are', async () => {
    const before = niceByThread();
    const keys = generateTenantKeys();
    const pool = createSealPool({ threads: 1 });
    pools.push(pool);
    const plains = [randomBytes(2 * MiB), randomBytes(2 * MiB)];
    await pool.hash(keys.macKey, plains);
    const after = niceByThread();
    // the new pool thread is at 0; no thread changed its value
    const fresh = [...after].filter(([tid]) => !before.has(tid));
    expect(fresh.length).toBeGreaterThan(0);
    for (const [, n] of fresh) expect(n).toBe(0);
    for (const [tid, n] of before) if (after.has(tid)) expect(after.get(tid)).toBe(n);
  });
});
