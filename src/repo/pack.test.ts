import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PACK_FOOTER_BYTES, PackBuilder, packIdOf, packTrailerRange, parsePackFooter, readPackTrailer, verifyPack } from './pack.js';
import { chunkId, generateTenantKeys, openChunk, sealChunk } from './seal.js';
import { IntegrityError } from './types.js';

const keys = generateTenantKeys();

async function buildPack(n: number) {
  const plains = Array.from({ length: n }, (_, i) => (i % 2 ? randomBytes(500 + i * 37) : Buffer.from(`text ${i} `.repeat(200 + i))));
  const b = new PackBuilder();
  const ids: string[] = [];
  for (const p of plains) {
    const id = chunkId(keys.macKey, p);
    ids.push(id);
    b.add(id, await sealChunk(keys, id, p));
  }
  const bytes = b.bytes;
  expect(b.count).toBe(n);
  return { plains, ids, bytes, ...b.finish(keys.dataKey) };
}

describe('packs', () => {
  it('build, then read the trailer from the tail bytes only; entries point at blobs that open', async () => {
    const { plains, ids, bytes, packId, body, entries } = await buildPack(12);
    expect(packId).toBe(packIdOf(body));
    expect(packId).toMatch(/^[0-9a-f]{64}$/);
    expect(body.subarray(body.length - 8).toString()).toBe('BKPACK01');
    expect(entries.map((e) => e.id)).toEqual(ids);

    // recovery: the footer from the last 12 bytes, then exactly the trailer range
    const footer = parsePackFooter(body.subarray(body.length - PACK_FOOTER_BYTES));
    const range = packTrailerRange(body.length, footer);
    expect(range.start).toBe(bytes);
    const tail = body.subarray(range.start);
    const fromTail = readPackTrailer(keys.dataKey, tail, body.length);
    expect(fromTail).toEqual(entries);
    expect(readPackTrailer(keys.dataKey, body)).toEqual(entries);

    for (const [i, e] of fromTail.entries()) {
      const plain = await openChunk(keys, e.id, body.subarray(e.offset, e.offset + e.length));
      expect(plain.equals(plains[i]!)).toBe(true);
    }
    expect(await verifyPack(keys, body, packId)).toEqual([]);
  });

  it('a tail that does not reach the trailer start is an IntegrityError', async () => {
    const { body } = await buildPack(3);
    const { start } = packTrailerRange(body.length, parsePackFooter(body));
    expect(() => readPackTrailer(keys.dataKey, body.subarray(start + 1), body.length)).toThrow(/tail too short/);
    expect(() => readPackTrailer(keys.dataKey, body.subarray(start + 1), body.length)).toThrow(IntegrityError);
  });

  it('an empty pack has an empty trailer', async () => {
    const { body, entries } = new PackBuilder().finish(keys.dataKey);
    expect(entries).toEqual([]);
    expect(readPackTrailer(keys.dataKey, body)).toEqual([]);
    expect(await verifyPack(keys, body)).toEqual([]);
  });

  it('a flipped bit anywhere is found, naming the chunk it hit or the trailer/footer', async () => {
    const { body, packId, entries } = await buildPack(6);
    const trailerStart = entries.at(-1)!.offset + entries.at(-1)!.length;
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: body.length * 8 - 1 }), async (bit) => {
        const bad = Buffer.from(body);
        const byte = bit >> 3;
        bad[byte]! ^= 1 << (bit & 7);
        const problems = await verifyPack(keys, bad, packId);
        expect(problems[0]).toMatchObject({ where: 'pack' });
        if (byte < trailerStart) {
          const hit = entries.find((e) => byte >= e.offset && byte < e.offset + e.length)!;
          expect(problems.slice(1)).toEqual([{ where: 'chunk', id: hit.id, message: expect.stringContaining(hit.id) }]);
        } else {
          expect(problems.slice(1)).toHaveLength(1);
          expect(['trailer', 'footer']).toContain(problems[1]!.where);
        }
        // and without the expected id, the damage is still found by opening
        expect((await verifyPack(keys, bad)).length).toBe(1);
      }),
      { numRuns: 150 },
    );
  });

  it('a truncated pack is an IntegrityError / a problem', async () => {
    const { body, packId } = await buildPack(4);
    for (const n of [0, 5, PACK_FOOTER_BYTES - 1, body.length - 1, body.length - 13, Math.floor(body.length / 2)]) {
      const cut = body.subarray(0, n);
      expect(() => readPackTrailer(keys.dataKey, cut)).toThrow(IntegrityError);
      const problems = await verifyPack(keys, cut, packId);
      expect(problems.length).toBeGreaterThanOrEqual(2);
    }
    expect(() => parsePackFooter(Buffer.alloc(4))).toThrow(IntegrityError);
  });

  it('a trailer under another data key does not open', async () => {
    const { body } = await buildPack(2);
    expect(() => readPackTrailer(generateTenantKeys().dataKey, body)).toThrow(IntegrityError);
  });

  it('blobs swapped between entries are found', async () => {
    const plains = [randomBytes(300), randomBytes(300)];
    const ids = plains.map((p) => chunkId(keys.macKey, p));
    const blobs = await Promise.all(plains.map((p, i) => sealChunk(keys, ids[i]!, p)));
    const b = new PackBuilder();
    b.add(ids[0]!, blobs[1]!);
    b.add(ids[1]!, blobs[0]!);
    const { body } = b.finish(keys.dataKey);
    const problems = await verifyPack(keys, body);
    expect(problems.map((p) => p.id)).toEqual(ids);
  });
});
