import { createHash, createHmac, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chunkLengths, DEFAULT_CHUNKING } from '../src/repo/chunker.js';
import type { SealPool } from '../src/repo/seal-pool.js';
import { createTenant, startStack, type Stack } from './helpers/stack.js';

/*
 * The stream path of the repository writer (writer.ts writeStream) against the real service: its
 * seal pool's threads cut each block of shared memory, answer the cut, hash and (in a first
 * backup) seal in place, while the main thread fills the next block. Whatever the pieces the
 * source yields, the chunks must be exactly those of chunking the whole stream at once, in order,
 * and read back byte for byte.
 */

let s: Stack;
beforeAll(async () => {
  s = await startStack({ worker: false });
});
afterAll(async () => s.close());

/** ~`mb` MiB: runs of compressible text, of random bytes, and of zeros, so chunks of every kind. */
function sample(mb: number, seed: number): Buffer {
  const parts: Buffer[] = [];
  let n = 0;
  let x = seed;
  while (n < mb * 1024 * 1024) {
    x = (x * 1103515245 + 12345) >>> 0;
    const len = 50_000 + (x % 3_000_000);
    const kind = x % 3;
    const part = kind === 0 ? Buffer.from(`row ${x} some text that compresses; `.repeat(Math.ceil(len / 40))).subarray(0, len) : kind === 1 ? randomBytes(len) : Buffer.alloc(len);
    parts.push(part);
    n += len;
  }
  return Buffer.concat(parts);
}

/** The stream in pieces of odd, varying sizes (as sockets and pipes hand them out). */
async function* pieces(data: Buffer, seed: number): AsyncGenerator<Buffer> {
  let x = seed;
  for (let at = 0; at < data.length; ) {
    x = (x * 1103515245 + 12345) >>> 0;
    const n = 1 + (x % 200_000);
    yield data.subarray(at, at + n);
    at += n;
  }
}

async function readAll(tenantId: string, ids: string[]): Promise<Buffer> {
  const src = await s.rt.repo.source(tenantId);
  const parts: Buffer[] = [];
  for await (const b of src.read(ids)) parts.push(b as Buffer);
  return Buffer.concat(parts);
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('repository writer: streams', () => {
  it('cuts exactly the chunks of the whole stream across blocks, stores them once, reads them back', async () => {
    const { tenantId } = await createTenant(s);
    const keys = await s.rt.repo.repositories.keysOf(tenantId);
    const data = sample(40, 7);
    const expectedIds = [];
    let at = 0;
    for (const n of chunkLengths(data, DEFAULT_CHUNKING)) {
      expectedIds.push(createHmac('sha256', keys.macKey).update(data.subarray(at, at + n)).digest('hex'));
      at += n;
    }

    // a first write: every chunk new, sealed on the threads along with its cut and hash
    const w1 = await s.rt.repo.writer({ tenantId, backupId: null, clusterId: null });
    const ref1 = await w1.writeStream(pieces(data, 1));
    await w1.flush();
    expect(ref1.bytes).toBe(data.length);
    expect(ref1.chunks).toEqual(expectedIds);
    const distinct = new Set(expectedIds).size;
    expect(w1.stats.newChunks).toBe(distinct); // the zero runs repeat: stored once
    expect(w1.storedBytes).toBeGreaterThan(0);
    expect(sha(await readAll(tenantId, ref1.chunks))).toBe(sha(data));

    // the same data again, in other pieces: the same chunks, nothing stored
    const w2 = await s.rt.repo.writer({ tenantId, backupId: null, clusterId: null });
    const ref2 = await w2.writeStream(pieces(data, 2));
    await w2.flush();
    expect(ref2.chunks).toEqual(expectedIds);
    expect(w2.stats.newChunks).toBe(0);
    expect(w2.storedBytes).toBe(0);
  });

  it('a pool without the block task (the writer cuts on its own thread) gives the same chunks; edge lengths round-trip', async () => {
    const { tenantId } = await createTenant(s);
    const keys = await s.rt.repo.repositories.keysOf(tenantId);
    const blockSize = DEFAULT_CHUNKING.maxSize + 8 * 1024 * 1024;
    // empty, one byte, exactly one block's data, one block and a byte, several blocks
    for (const len of [0, 1, 8 * 1024 * 1024, 8 * 1024 * 1024 + 1, blockSize * 2 + 12345]) {
      const data = sample(Math.ceil(len / (1024 * 1024)) + 1, len).subarray(0, len);
      const ids = (() => {
        const out: string[] = [];
        let at = 0;
        for (const n of chunkLengths(data, DEFAULT_CHUNKING)) out.push(createHmac('sha256', keys.macKey).update(data.subarray(at, (at += n))).digest('hex'));
        return out;
      })();
      const w = await s.rt.repo.writer({ tenantId, backupId: null, clusterId: null });
      const ref = await w.writeStream(pieces(data, len + 3));
      await w.flush();
      expect(ref.chunks, `${len} bytes`).toEqual(ids);
      expect(ref.bytes).toBe(len);
      if (len > 0) expect(sha(await readAll(tenantId, ref.chunks))).toBe(sha(data));
    }
    // the same writer code with a pool that has no `block`: cut here, hashed with `hash`
    const { createRepoWriter } = await import('../src/repo/writer.js');
    const { sharedSealPool } = await import('../src/repo/seal-pool.js');
    const pool = sharedSealPool();
    const noBlock: SealPool = { hash: pool.hash, seal: pool.seal, open: pool.open, files: pool.files, restore: pool.restore, close: async () => {} };
    const data = sample(30, 11);
    const w = createRepoWriter({ pool: s.rt.db.$pool, store: s.rt.repo.primary, seal: noBlock, keys, tenantId, backupId: null, clusterId: null });
    const ref = await w.writeStream(pieces(data, 5));
    await w.flush();
    const expected: string[] = [];
    let at = 0;
    for (const n of chunkLengths(data, DEFAULT_CHUNKING)) expected.push(createHmac('sha256', keys.macKey).update(data.subarray(at, (at += n))).digest('hex'));
    expect(ref.chunks).toEqual(expected);
    expect(sha(await readAll(tenantId, ref.chunks))).toBe(sha(data));
  });

  it('a source that fails mid-stream fails the write with its own error, and the writer settles', async () => {
    const { tenantId } = await createTenant(s);
    const data = sample(30, 3);
    async function* failing(): AsyncGenerator<Buffer> {
      yield* pieces(data.subarray(0, 20 * 1024 * 1024), 9);
      throw new Error('pg_dump exited 1: boom');
    }
    const w = await s.rt.repo.writer({ tenantId, backupId: null, clusterId: null });
    await expect(w.writeStream(failing())).rejects.toThrow('pg_dump exited 1: boom');
  });
  it("a long stream of new chunks that compress to almost nothing (a pgbench dump) completes: each block's chunks are looked up as they come, freeing its slot", async () => {
    // Each 1 MiB chunk is new and seals to a few KiB; every block's slot stays held until its
    // chunks are looked up. When lookups waited for the queue to reach a size, a stream longer
    // than the writer's slots (4 x 8 MiB) waited forever on a slot (found by bench:backup (d):
    // pg_dump blocked on its pipe).
    const { tenantId } = await createTenant(s);
    const rows: string[] = [];
    for (let i = 1; i <= 1_100_000; i++) rows.push(`${i}\t${1 + Math.floor(i / 100_000)}\t0\t${' '.repeat(84)}\n`);
    const data = Buffer.from(rows.join(''));
    expect(data.length).toBeGreaterThan(96 * 1024 * 1024);
    const w = await s.rt.repo.writer({ tenantId, backupId: null, clusterId: null });
    const ref = await w.writeStream(pieces(data, 3));
    await w.flush();
    expect(ref.bytes).toBe(data.length);
    expect(w.stats.newChunks).toBe(ref.chunks.length);
    expect(w.storedBytes).toBeLessThan(data.length / 20);
    expect(sha(await readAll(tenantId, ref.chunks))).toBe(sha(data));
  }, 60_000);
});
