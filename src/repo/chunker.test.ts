import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_CHUNKING, checkChunkerOptions, chunkLengths, chunkStream, cutPoint, type ChunkerOptions } from './chunker.js';

const SEKIEN = readFileSync(new URL('./fixtures/SekienAkashita.jpg', import.meta.url));

/*
 * An oracle: fastcdc-rs src/v2016/mod.rs `cut()` transcribed with BigInt (slow, obviously right),
 * with its normalization levels and its 64-bit hash. GEAR is derived again the way its
 * examples/table64.rs makes it (high 8 bytes of MD5 of 64 bytes of value i), so a typo in the
 * chunker's copied table shows up as a mismatch.
 */
const M64 = (1n << 64n) - 1n;
const REF_GEAR: bigint[] = Array.from({ length: 256 }, (_, i) => createHash('md5').update(Buffer.alloc(64, i)).digest().readBigUInt64BE(0));
// fastcdc-rs MASKS[5..25]
// prettier-ignore
const REF_MASKS: Record<number, bigint> = {
  5: 0x0000000001804110n, 6: 0x0000000001803110n, 7: 0x0000000018035100n, 8: 0x0000001800035300n,
  9: 0x0000019000353000n, 10: 0x0000590003530000n, 11: 0x0000d90003530000n, 12: 0x0000d90103530000n,
  13: 0x0000d90303530000n, 14: 0x0000d90313530000n, 15: 0x0000d90f03530000n, 16: 0x0000d90303537000n,
  17: 0x0000d90703537000n, 18: 0x0000d90707537000n, 19: 0x0000d91707537000n, 20: 0x0000d91747537000n,
  21: 0x0000d91767537000n, 22: 0x0000d93767537000n, 23: 0x0000d93777537000n, 24: 0x0000d93777577000n,
  25: 0x0000db3777577000n,
};

function refCut(src: Uint8Array, start: number, end: number, o: ChunkerOptions, level = 1): { hash: bigint; cut: number } {
  const bits = Math.round(Math.log2(o.avgSize));
  const maskS = REF_MASKS[bits + level]!;
  const maskL = REF_MASKS[bits - level]!;
  let remaining = end - start;
  if (remaining <= o.minSize) return { hash: 0n, cut: end };
  let center = o.avgSize;
  if (remaining > o.maxSize) remaining = o.maxSize;
  else if (remaining < center) center = remaining;
  let index = o.minSize;
  let hash = 0n;
  for (; index < center; index++) {
    hash = ((hash << 1n) + REF_GEAR[src[start + index]!]!) & M64;
    if ((hash & maskS) === 0n) return { hash, cut: start + index };
  }
  for (; index < remaining; index++) {
    hash = ((hash << 1n) + REF_GEAR[src[start + index]!]!) & M64;
    if ((hash & maskL) === 0n) return { hash, cut: start + index };
  }
  return { hash, cut: start + index };
}

function refChunks(src: Uint8Array, o: ChunkerOptions, level = 1): { hash: bigint; offset: number; length: number }[] {
  const out = [];
  for (let start = 0; start < src.length; ) {
    const { hash, cut } = refCut(src, start, src.length, o, level);
    out.push({ hash, offset: start, length: cut - start });
    start = cut;
  }
  return out;
}

/** Deterministic pseudo-random bytes (xorshift32): fast-check generates the seed, so cases replay. */
function randomBytes(seed: number, n: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  let s = seed | 0 || 0x9e3779b9;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out.writeInt32LE(s, i);
  }
  for (; i < n; i++) out[i] = (s >>> (8 * (i & 3))) & 0xff;
  return out;
}

/** Random data with runs of zeros (where only the hard cut at maxSize applies) and of a repeated byte. */
function mixedBytes(seed: number, n: number, o: ChunkerOptions): Buffer {
  const out = randomBytes(seed, n);
  if (n === 0) return out;
  const r = randomBytes(seed ^ 0x5bd1e995, 64);
  for (let j = 0; j < 4; j++) {
    const at = r.readUInt32LE(j * 8) % n;
    const len = r.readUInt32LE(j * 8 + 4) % (2 * o.maxSize);
    out.fill(j % 2 === 0 ? 0 : r[j]!, at, Math.min(n, at + len));
  }
  return out;
}

async function* feed(buffers: Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const b of buffers) yield b;
}

async function collect(source: AsyncIterable<Buffer>): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const c of source) out.push(c);
  return out;
}

/** `data` cut before each of `cuts` (sorted, within [0, length]): empty pieces included. */
function split(data: Uint8Array, cuts: number[]): Uint8Array[] {
  const pieces: Uint8Array[] = [];
  let prev = 0;
  for (const c of [...cuts, data.length]) {
    pieces.push(data.subarray(prev, c));
    prev = c;
  }
  return pieces;
}

const offsetsOf = (lengths: number[]): number[] => lengths.map((_, i) => lengths.slice(0, i).reduce((a, b) => a + b, 0));

/** Small sizes for properties: many chunks in little data. */
const SMALL: ChunkerOptions = { minSize: 2048, avgSize: 8192, maxSize: 65536 };

/** Valid options of small sizes, the bounds included (min 64, avg 256, max 1024). */
const smallOptions: fc.Arbitrary<ChunkerOptions> = fc
  .record({ avgBits: fc.integer({ min: 8, max: 12 }), minDiv: fc.constantFrom(1, 2, 4, 8, 16), maxExtra: fc.integer({ min: 0, max: 8192 }) })
  .map(({ avgBits, minDiv, maxExtra }) => {
    const avgSize = 2 ** avgBits;
    return { minSize: Math.max(64, avgSize / minDiv), avgSize, maxSize: Math.max(1024, avgSize + maxExtra) };
  });

describe('fastcdc-rs v2016 test vectors (SekienAkashita.jpg, 109466 bytes)', () => {
  // (hash, length) pairs from fastcdc-rs src/v2016/mod.rs tests, normalization level 1 (its default)
  const vectors: [string, ChunkerOptions, [bigint, number][]][] = [
    ['test_cut_sekien_16k_chunks', { minSize: 4096, avgSize: 16384, maxSize: 65535 }, [
      [17968276318003433923n, 21325], [4098594969649699419n, 17140], [15733367461443853673n, 28084],
      [4509236223063678303n, 18217], [2504464741100432583n, 24700],
    ]],
    ['test_cut_sekien_32k_chunks', { minSize: 8192, avgSize: 32768, maxSize: 131072 }, [
      [15733367461443853673n, 66549], [2504464741100432583n, 42917],
    ]],
    ['test_cut_sekien_64k_chunks', { minSize: 16384, avgSize: 65536, maxSize: 262144 }, [[2504464741100432583n, 109466]]],
  ];

  for (const [name, o, expected] of vectors) {
    it(`${name}: cutPoint, chunkLengths and chunkStream give its cut points; the oracle gives its hashes`, async () => {
      const lengths = expected.map(([, l]) => l);
      const cuts: number[] = [];
      for (let at = 0; at < SEKIEN.length; ) cuts.push((at = cutPoint(SEKIEN, at, SEKIEN.length, o)));
      expect(cuts).toEqual(offsetsOf(lengths).map((off, i) => off + lengths[i]!));
      expect(chunkLengths(SEKIEN, o)).toEqual(lengths);
      const streamed = await collect(chunkStream(feed(split(SEKIEN, [1, 4095, 4097, 30000, 30001, 70000])), o));
      expect(streamed.map((c) => c.length)).toEqual(lengths);
      expect(Buffer.concat(streamed).equals(SEKIEN)).toBe(true);
      expect(refChunks(SEKIEN, o).map((c) => [c.hash, c.length])).toEqual(expected);
    });
  }

  it('test_iter_sekien_16k_chunks: its offsets', () => {
    expect(offsetsOf(chunkLengths(SEKIEN, { minSize: 4096, avgSize: 16384, maxSize: 65535 }))).toEqual([0, 21325, 38465, 66549, 84766]);
  });

  it('test_cut_sekien_16k_nc_0 and _nc_3 (levels the service does not use): the oracle reproduces them', () => {
    const o = { minSize: 4096, avgSize: 16384, maxSize: 65535 };
    expect(refChunks(SEKIEN, o, 0).map((c) => [c.hash, c.length])).toEqual([
      [221561130519947581n, 6634], [15733367461443853673n, 59915], [10460176299449652894n, 25597],
      [6197802202431009942n, 5237], [2504464741100432583n, 12083],
    ]);
    expect(refChunks(SEKIEN, o, 3).map((c) => [c.hash, c.length])).toEqual([
      [14582375164208481996n, 17350], [13104072099671895560n, 19911], [6161241554519610597n, 17426],
      [16009206469796846404n, 17519], [10460176299449652894n, 19940], [2504464741100432583n, 17320],
    ]);
  });

  it('test_cut_all_zeros: 10240 zero bytes at 64/256/1024 are ten chunks of 1024 (hash 14169102344523991076)', async () => {
    const zeros = new Uint8Array(10240);
    const o = { minSize: 64, avgSize: 256, maxSize: 1024 };
    expect(chunkLengths(zeros, o)).toEqual(Array(10).fill(1024));
    expect(cutPoint(zeros, 9216, 10240, o)).toBe(10240);
    expect((await collect(chunkStream(feed([zeros.subarray(0, 1000), zeros.subarray(1000)]), o))).map((c) => c.length)).toEqual(Array(10).fill(1024));
    expect(new Set(refChunks(zeros, o).map((c) => c.hash))).toEqual(new Set([14169102344523991076n]));
  });

  it('the chunker’s GEAR is fastcdc-rs’s: the oracle (MD5-derived table) agrees on data that exercises every byte value', () => {
    // 256 distinct bytes, each in many hash windows; sizes where bits 32..47 of the mask matter.
    const data = randomBytes(7, 96 * 1024);
    for (const o of [{ minSize: 64, avgSize: 256, maxSize: 1024 }, { minSize: 256, avgSize: 1024, maxSize: 8192 }]) {
      expect(chunkLengths(data, o)).toEqual(refChunks(data, o).map((c) => c.length));
    }
  });
});

describe('properties', () => {
  it('chunkLengths equals the BigInt oracle on random and low-entropy data, any valid small sizes', () => {
    fc.assert(
      fc.property(fc.integer(), fc.integer({ min: 0, max: 40_000 }), smallOptions, (seed, n, o) => {
        const data = mixedBytes(seed, n, o);
        expect(chunkLengths(data, o)).toEqual(refChunks(data, o).map((c) => c.length));
      }),
      { numRuns: 60 },
    );
  });

  it('deterministic; chunks concatenate to the input; all but the last within [min, max], the last within [1, max]', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer(), fc.integer({ min: 0, max: 600_000 }), async (seed, n) => {
        const data = mixedBytes(seed, n, SMALL);
        const lengths = chunkLengths(data, SMALL);
        expect(chunkLengths(Buffer.from(data), SMALL)).toEqual(lengths);
        const chunks = await collect(chunkStream(feed([data]), SMALL));
        expect(chunks.map((c) => c.length)).toEqual(lengths);
        expect(Buffer.concat(chunks).equals(data)).toBe(true);
        expect(lengths.reduce((a, b) => a + b, 0)).toBe(n);
        if (n === 0) expect(lengths).toEqual([]);
        lengths.forEach((l, i) => {
          expect(l).toBeLessThanOrEqual(SMALL.maxSize);
          expect(l).toBeGreaterThanOrEqual(i === lengths.length - 1 ? 1 : SMALL.minSize);
        });
      }),
      { numRuns: 30 },
    );
  });

  it('chunkStream over any split of the input (empty buffers included) equals chunkLengths of the whole', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer(),
        fc.integer({ min: 0, max: 300_000 }),
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 60 }),
        fc.boolean(),
        async (seed, n, fractions, tiny) => {
          const data = mixedBytes(seed, n, SMALL);
          // Cuts anywhere, or crowded into the first 6000 bytes so that hash windows straddle buffers.
          const cuts = tiny
            ? fractions.map((f) => Math.floor(f * Math.min(n, 6000)))
            : fractions.map((f) => Math.floor(f * n));
          const pieces = split(data, cuts.sort((a, b) => a - b));
          const chunks = await collect(chunkStream(feed(pieces), SMALL));
          expect(chunks.map((c) => c.length)).toEqual(chunkLengths(data, SMALL));
          expect(Buffer.concat(chunks).equals(data)).toBe(true);
          for (const c of chunks) expect(Buffer.isBuffer(c)).toBe(true);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('chunkStream across byte-sized buffers equals the oracle (small sizes, high mask bits in play)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer(), fc.integer({ min: 0, max: 12_000 }), smallOptions, fc.integer({ min: 1, max: 97 }), async (seed, n, o, step) => {
        const data = mixedBytes(seed, n, o);
        const cuts: number[] = [];
        for (let at = step; at < n; at += step) cuts.push(at);
        const chunks = await collect(chunkStream(feed(split(data, cuts)), o));
        expect(chunks.map((c) => c.length)).toEqual(refChunks(data, o).map((c) => c.length));
      }),
      { numRuns: 40 },
    );
  });

  /*
   * Why chunks before an edit survive: the cut ending a chunk at e is decided by bytes
   * [start, e] only (the chunk ends before the byte whose hash matched; a hard cut at maxSize
   * reads no byte at e). So every chunk with e < the edit position is untouched.
   *
   * Why the chunking resynchronizes: hash bits 0..47 (all the masks use) depend only on the last
   * 48 bytes, so past the edit both chunkings see the same match positions; they differ only in
   * where their current chunk started (min skip, MaskS/MaskL switch at avg, hard cut at max).
   * Once both cut at the same place, everything after is identical. On random data the first
   * cut past the edit is shared most of the time: in 3000 trials of this setup (4 MiB, 2/8/64 KiB,
   * 1..64 inserted bytes) the edited data had 1 new chunk in 98.5%, and at most 4; each further
   * miss happened about 1 time in 5, so 8 has a chance around 1e-7 per case.
   */
  it('a k-byte insertion (k <= 64) in a 4 MiB random buffer: chunks before it unchanged, at most 8 new chunks', () => {
    const BOUND = 8;
    const base = randomBytes(0x1234567, 4 * 1024 * 1024);
    const before = chunkLengths(base, SMALL);
    const beforeOffsets = offsetsOf(before);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: base.length }), fc.integer({ min: 1, max: 64 }), fc.integer(), (pos, k, seed) => {
        const edited = Buffer.concat([base.subarray(0, pos), randomBytes(seed, k), base.subarray(pos)]);
        const after = chunkLengths(edited, SMALL);
        const afterOffsets = offsetsOf(after);
        // Chunks ending before the edit: the same, in the same places.
        const untouched = before.filter((l, i) => beforeOffsets[i]! + l < pos).length;
        expect(after.slice(0, untouched)).toEqual(before.slice(0, untouched));
        // New chunks: those of the edited data that are not an old chunk (shifted by k past the edit).
        const old = new Set(before.map((l, i) => `${beforeOffsets[i]},${l}`));
        const fresh = after.filter((l, i) => {
          const off = afterOffsets[i]!;
          if (off + l <= pos) return !old.has(`${off},${l}`);
          if (off >= pos + k) return !old.has(`${off - k},${l}`);
          return true; // holds inserted bytes
        }).length;
        expect(fresh).toBeGreaterThanOrEqual(1);
        expect(fresh).toBeLessThanOrEqual(BOUND);
        // And the old chunks lost are as few: the rest are shared.
        expect(after.length - fresh).toBeGreaterThanOrEqual(before.length - BOUND - 1);
      }),
      { numRuns: 40 },
    );
  });
});

describe('chunkStream', () => {
  it('the empty stream, and a stream of empty buffers, yield nothing', async () => {
    expect(await collect(chunkStream(feed([])))).toEqual([]);
    expect(await collect(chunkStream(feed([new Uint8Array(0), Buffer.alloc(0)]), SMALL))).toEqual([]);
  });

  it('a stream shorter than minSize is one chunk', async () => {
    const data = randomBytes(3, 1000);
    const chunks = await collect(chunkStream(feed([data.subarray(0, 10), data.subarray(10)]), SMALL));
    expect(chunks).toHaveLength(1);
    expect(chunks[0]!.equals(data)).toBe(true);
  });

  it('a chunk inside one input buffer is a view of it, not a copy', async () => {
    const data = randomBytes(11, 500_000);
    const chunks = await collect(chunkStream(feed([data]), SMALL));
    expect(chunks.length).toBeGreaterThan(10);
    for (const c of chunks) expect(c.buffer).toBe(data.buffer);
  });

  it('accepts Uint8Array input and uses the default sizes', async () => {
    const data = new Uint8Array(randomBytes(5, 5 * 1024 * 1024));
    const chunks = await collect(chunkStream(feed([data.subarray(0, 3_000_000), data.subarray(3_000_000)])));
    expect(chunks.map((c) => c.length)).toEqual(chunkLengths(data, DEFAULT_CHUNKING));
    expect(chunks.length).toBeGreaterThan(1);
  });
});

describe('checkChunkerOptions', () => {
  it('accepts the default and the sizes of the vectors', () => {
    for (const o of [DEFAULT_CHUNKING, SMALL, { minSize: 64, avgSize: 256, maxSize: 1024 }, { minSize: 4096, avgSize: 16384, maxSize: 65535 }, { minSize: 1 << 20, avgSize: 1 << 22, maxSize: 1 << 24 }]) {
      expect(() => checkChunkerOptions(o)).not.toThrow();
    }
  });

  const bad: [ChunkerOptions, RegExp][] = [
    [{ minSize: 2048, avgSize: 12288, maxSize: 65536 }, /avgSize must be a power of two/],
    [{ minSize: 16384, avgSize: 8192, maxSize: 65536 }, /minSize \(16384\) must not exceed avgSize/],
    [{ minSize: 2048, avgSize: 8192, maxSize: 4096 }, /avgSize \(8192\) must not exceed maxSize/],
    [{ minSize: 63, avgSize: 256, maxSize: 1024 }, /minSize must be within \[64,/],
    [{ minSize: 2 << 20, avgSize: 4 << 20, maxSize: 8 << 20 }, /minSize must be within/],
    [{ minSize: 64, avgSize: 128, maxSize: 1024 }, /avgSize must be within \[256,/],
    [{ minSize: 1024, avgSize: 8 << 20, maxSize: 16 << 20 }, /avgSize must be within/],
    [{ minSize: 64, avgSize: 256, maxSize: 1023 }, /maxSize must be within \[1024,/],
    [{ minSize: 64, avgSize: 256, maxSize: (16 << 20) + 1 }, /maxSize must be within/],
    [{ minSize: 2048.5, avgSize: 8192, maxSize: 65536 }, /minSize must be an integer/],
    [{ minSize: 2048, avgSize: NaN, maxSize: 65536 }, /avgSize must be an integer/],
    [{ minSize: 2048, avgSize: 8192 } as ChunkerOptions, /maxSize must be an integer, got undefined/],
  ];
  for (const [o, message] of bad) {
    it(`rejects ${JSON.stringify(o)} with ${message}`, () => {
      expect(() => checkChunkerOptions(o)).toThrow(RangeError);
      expect(() => checkChunkerOptions(o)).toThrow(message);
      expect(() => chunkLengths(new Uint8Array(10), o)).toThrow(message);
    });
  }

  it('cutPoint and chunkStream check too; cutPoint checks its range', async () => {
    const o = { minSize: 2048, avgSize: 3000, maxSize: 65536 };
    expect(() => cutPoint(new Uint8Array(10), 0, 10, o)).toThrow(RangeError);
    await expect(collect(chunkStream(feed([new Uint8Array(10)]), o))).rejects.toThrow(RangeError);
    expect(() => cutPoint(new Uint8Array(10), 0, 11, SMALL)).toThrow(/not within the 10 bytes/);
    expect(() => cutPoint(new Uint8Array(10), 5, 4, SMALL)).toThrow(RangeError);
    expect(cutPoint(new Uint8Array(10), 10, 10, SMALL)).toBe(10);
  });

  it('options changed after use are checked again', () => {
    const o = { ...SMALL };
    chunkLengths(new Uint8Array(10), o);
    o.avgSize = 3000;
    expect(() => chunkLengths(new Uint8Array(10), o)).toThrow(/power of two/);
  });
});
