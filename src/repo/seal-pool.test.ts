import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { CHUNK_RAW, CHUNK_ZSTD } from './seal-core.mjs';
import { createSealPool, INLINE_BYTES, INLINE_HASH_BYTES, sharedSealPool } from './seal-pool.js';
import { chunkId, generateTenantKeys, openChunk, sealChunk } from './seal.js';
import { IntegrityError } from './types.js';

const keys = generateTenantKeys();
const pool = createSealPool({ threads: 2 });
afterAll(() => pool.close());

function text(bytes: number, seed: number): Buffer {
  let s = '';
  for (let i = 0; s.length < bytes; i++) s += `line ${seed} ${i % 313}\n`;
  return Buffer.from(s.slice(0, bytes));
}

const MiB = 1024 * 1024;

describe('seal pool', () => {
  it('hash equals the inline ids, in order, for small (inline) and big (worker) chunks', async () => {
    const chunks = [randomBytes(10), randomBytes(MiB), Buffer.alloc(0), randomBytes(INLINE_HASH_BYTES), randomBytes(INLINE_HASH_BYTES - 1), text(3 * MiB, 1)];
    const before = chunks.map((c) => Buffer.from(c));
    expect(await pool.hash(keys.macKey, chunks)).toEqual(chunks.map((c) => chunkId(keys.macKey, c)));
    // the caller keeps its buffers
    chunks.forEach((c, i) => expect(c.equals(before[i]!)).toBe(true));
  });

  it('seal gives blobs that the inline openChunk opens, with the same raw/compressed choice; open gives back the plaintext', async () => {
    const plains = [randomBytes(MiB), text(MiB, 2), Buffer.alloc(0), randomBytes(200), text(2 * MiB + 7, 3)];
    const ids = await pool.hash(keys.macKey, plains);
    const blobs = await pool.seal(keys, plains.map((plain, i) => ({ id: ids[i]!, plain })));
    expect(blobs.map((b) => b[0])).toEqual([CHUNK_RAW, CHUNK_ZSTD, CHUNK_RAW, CHUNK_RAW, CHUNK_ZSTD]);
    for (const [i, b] of blobs.entries()) {
      const inline = await sealChunk(keys, ids[i]!, plains[i]!);
      expect(b.length).toBe(inline.length);
      expect((await openChunk(keys, ids[i]!, b)).equals(plains[i]!)).toBe(true);
    }
    const opened = await pool.open(keys, blobs.map((blob, i) => ({ id: ids[i]!, blob })));
    opened.forEach((p, i) => expect(p.equals(plains[i]!)).toBe(true));
  });

  it('round-trips any batch, inline-sized or not, including views of a larger buffer', async () => {
    const big = randomBytes(4 * MiB);
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.nat({ max: 4 * MiB - 1 }), fc.nat({ max: 300 * 1024 }), fc.boolean()), { maxLength: 12 }),
        async (specs) => {
          const plains = specs.map(([at, n, compressible]) => (compressible ? text(n, at) : big.subarray(at, Math.min(big.length, at + n))));
          const ids = await pool.hash(keys.macKey, plains);
          expect(ids).toEqual(plains.map((p) => chunkId(keys.macKey, p)));
          const blobs = await pool.seal(keys, plains.map((plain, i) => ({ id: ids[i]!, plain })));
          const back = await pool.open(keys, blobs.map((blob, i) => ({ id: ids[i]!, blob })));
          expect(back.map((b) => b.toString('hex'))).toEqual(plains.map((p) => p.toString('hex')));
        },
      ),
      { numRuns: 25 },
    );
  });

  it('an IntegrityError crosses the thread boundary as an IntegrityError naming the chunk', async () => {
    const plains = [randomBytes(MiB), text(MiB, 4), randomBytes(MiB)];
    const ids = await pool.hash(keys.macKey, plains);
    const blobs = await pool.seal(keys, plains.map((plain, i) => ({ id: ids[i]!, plain })));
    const bad = blobs.map((b) => Buffer.from(b));
    bad[1]![100]! ^= 0x40;
    const err = await pool.open(keys, bad.map((blob, i) => ({ id: ids[i]!, blob }))).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect((err as Error).name).toBe('IntegrityError');
    expect((err as Error).message).toContain(ids[1]);
    // the wrong MAC key, and a blob under another id, through the workers too
    const wrongMac = await pool.open({ ...keys, macKey: randomBytes(32) }, blobs.map((blob, i) => ({ id: ids[i]!, blob }))).catch((e: unknown) => e);
    expect(wrongMac).toBeInstanceOf(IntegrityError);
    const swapped = await pool.open(keys, [{ id: ids[0]!, blob: blobs[2]! }, { id: ids[2]!, blob: blobs[0]! }]).catch((e: unknown) => e);
    expect(swapped).toBeInstanceOf(IntegrityError);
    // and small calls that run inline throw the same class
    const small = await pool.open(keys, [{ id: ids[0]!, blob: blobs[0]!.subarray(0, 20) }]).catch((e: unknown) => e);
    expect(INLINE_BYTES).toBeGreaterThan(20);
    expect(small).toBeInstanceOf(IntegrityError);
  });

  it('a closed pool refuses work', async () => {
    const p = createSealPool({ threads: 1 });
    expect(await p.hash(keys.macKey, [randomBytes(MiB)])).toHaveLength(1);
    await p.close();
    await expect(p.seal(keys, [{ id: chunkId(keys.macKey, randomBytes(MiB)), plain: randomBytes(MiB) }])).rejects.toThrow(/closed/);
  });

  it('the shared pool is one per process, and a closed one is replaced', async () => {
    const a = sharedSealPool();
    expect(sharedSealPool()).toBe(a);
    const c = randomBytes(MiB);
    expect(await a.hash(keys.macKey, [c])).toEqual([chunkId(keys.macKey, c)]);
    await a.close();
    const b = sharedSealPool();
    expect(b).not.toBe(a);
    expect(await b.hash(keys.macKey, [c])).toEqual([chunkId(keys.macKey, c)]);
    await b.close();
  });

  it('idle workers do not keep the process alive (shared pool, never closed)', async () => {
    const script = `
      import { randomBytes } from 'node:crypto';
      import { sharedSealPool } from ${JSON.stringify(fileURLToPath(new URL('./seal-pool.ts', import.meta.url)))};
      import { generateTenantKeys } from ${JSON.stringify(fileURLToPath(new URL('./seal.ts', import.meta.url)))};
      const k = generateTenantKeys();
      const ids = await sharedSealPool().hash(k.macKey, [randomBytes(1 << 20), randomBytes(1 << 20)]);
      await sharedSealPool().seal(k, ids.map((id) => ({ id, plain: randomBytes(1 << 20) })));
      console.log('ok', ids.length);
    `;
    const dir = await mkdtemp(join(tmpdir(), 'seal-pool-'));
    try {
      const file = join(dir, 'exit.mjs');
      await writeFile(file, script);
      const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', file], {
        cwd: fileURLToPath(new URL('../..', import.meta.url)),
        timeout: 25_000,
      });
      expect(stdout.trim()).toBe('ok 2');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 30_000);

  it('a worker that cannot start rejects the call instead of leaving it pending', async () => {
    // `--input-type` in execArgv (inherited by the workers) makes every worker fail at bootstrap
    const script = `
      import { randomBytes } from 'node:crypto';
      const { createSealPool } = await import(${JSON.stringify(new URL('./seal-pool.ts', import.meta.url).href)});
      const pool = createSealPool({ threads: 1 });
      const err = await pool.hash(randomBytes(32), [randomBytes(1 << 20)]).then(() => null, (e) => e);
      const again = await pool.hash(randomBytes(32), [randomBytes(1 << 20)]).then(() => null, (e) => e);
      console.log(String(err?.message).slice(0, 25), '|', String(again?.message).slice(0, 25));
    `;
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: fileURLToPath(new URL('../..', import.meta.url)),
      timeout: 25_000,
    });
    expect(stdout.trim()).toMatch(/^seal pool worker failed: *\| seal pool worker failed:$/);
  }, 30_000);
});
