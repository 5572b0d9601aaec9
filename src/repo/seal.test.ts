import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CHUNK_RAW, CHUNK_ZSTD, SEAL_OVERHEAD } from './seal-core.mjs';
import {
  chunkId,
  generateTenantKeys,
  masterKeyId,
  openChunk,
  openObject,
  sealChunk,
  sealObject,
  unwrapTenantKeys,
  wrapTenantKeys,
} from './seal.js';
import { IntegrityError, WrongKeyError } from './types.js';

const keys = generateTenantKeys();

function compressible(bytes: number): Buffer {
  const line = (i: number) => `row ${i % 977}\tvalue=${(i * 31) % 1000}\n`;
  let s = '';
  for (let i = 0; s.length < bytes; i++) s += line(i);
  return Buffer.from(s.slice(0, bytes));
}

async function sealed(plain: Buffer, k = keys) {
  const id = chunkId(k.macKey, plain);
  return { id, blob: await sealChunk(k, id, plain) };
}

async function expectIntegrity(p: Promise<unknown>, match?: RegExp) {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(IntegrityError);
  if (match) expect((err as Error).message).toMatch(match);
}

describe('chunk ids', () => {
  it('are HMAC-SHA-256 hex, deterministic per key', () => {
    const plain = randomBytes(1000);
    const id = chunkId(keys.macKey, plain);
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    expect(chunkId(keys.macKey, Buffer.from(plain))).toBe(id);
  });

  it('differ between tenants for the same data (disjoint over many chunks), and so do blobs', async () => {
    const other = generateTenantKeys();
    const chunks = Array.from({ length: 500 }, (_, i) => randomBytes(i % 50));
    const a = new Set(chunks.map((c) => chunkId(keys.macKey, c)));
    const b = new Set(chunks.map((c) => chunkId(other.macKey, c)));
    expect(a.size).toBe(new Set(chunks.map((c) => c.toString('hex'))).size);
    for (const id of b) expect(a.has(id)).toBe(false);
    const plain = compressible(10_000);
    const x = await sealed(plain, keys);
    const y = await sealed(plain, other);
    expect(x.id).not.toBe(y.id);
    expect(x.blob.equals(y.blob)).toBe(false);
    await expectIntegrity(openChunk(other, x.id, x.blob));
  });
});

describe('sealChunk / openChunk', () => {
  it('round-trips random data, stored raw', async () => {
    const plain = randomBytes(256 * 1024);
    const { id, blob } = await sealed(plain);
    expect(blob[0]).toBe(CHUNK_RAW);
    expect(blob.length).toBe(plain.length + SEAL_OVERHEAD);
    expect((await openChunk(keys, id, blob)).equals(plain)).toBe(true);
  });

  it('round-trips compressible data, stored compressed', async () => {
    const plain = compressible(1024 * 1024);
    const { id, blob } = await sealed(plain);
    expect(blob[0]).toBe(CHUNK_ZSTD);
    expect(blob.length).toBeLessThan(plain.length / 10);
    expect((await openChunk(keys, id, blob)).equals(plain)).toBe(true);
  });

  it('round-trips the empty chunk', async () => {
    const { id, blob } = await sealed(Buffer.alloc(0));
    expect(blob[0]).toBe(CHUNK_RAW);
    expect(blob.length).toBe(SEAL_OVERHEAD);
    expect((await openChunk(keys, id, blob)).length).toBe(0);
  });

  it('round-trips any data, choosing raw exactly when zstd is not smaller', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.uint8Array({ maxLength: 4000 }), fc.string({ maxLength: 4000 }).map((s) => s.repeat(3))), async (data) => {
        const plain = Buffer.from(data);
        const { id, blob } = await sealed(plain);
        expect((await openChunk(keys, id, blob)).equals(plain)).toBe(true);
        if (blob[0] === CHUNK_RAW) expect(blob.length).toBe(plain.length + SEAL_OVERHEAD);
        else expect(blob.length).toBeLessThan(plain.length + SEAL_OVERHEAD);
      }),
      { numRuns: 200 },
    );
  });

  it('uses a fresh nonce every time', async () => {
    const plain = compressible(5000);
    const id = chunkId(keys.macKey, plain);
    const a = await sealChunk(keys, id, plain);
    const b = await sealChunk(keys, id, plain);
    expect(a.subarray(1, 13).equals(b.subarray(1, 13))).toBe(false);
  });

  for (const [name, plain] of [
    ['raw', randomBytes(3000)],
    ['compressed', compressible(3000)],
  ] as const) {
    it(`detects any single flipped bit (${name})`, async () => {
      const { id, blob } = await sealed(plain);
      await fc.assert(
        fc.asyncProperty(fc.nat({ max: blob.length * 8 - 1 }), async (bit) => {
          const bad = Buffer.from(blob);
          bad[bit >> 3]! ^= 1 << (bit & 7);
          await expectIntegrity(openChunk(keys, id, bad));
        }),
        { numRuns: 300 },
      );
    });
  }

  it('detects truncation at every length', async () => {
    const { id, blob } = await sealed(compressible(2000));
    for (let n = 0; n < blob.length; n++) await expectIntegrity(openChunk(keys, id, blob.subarray(0, n)));
    await expectIntegrity(openChunk(keys, id, blob.subarray(0, 5)), /truncated/);
  });

  it('refuses a blob opened under another id', async () => {
    const a = await sealed(randomBytes(100));
    const b = await sealed(randomBytes(100));
    await expectIntegrity(openChunk(keys, b.id, a.blob), /authentication failed/);
  });

  it('refuses the wrong data key and the wrong MAC key', async () => {
    const { id, blob } = await sealed(compressible(4000));
    await expectIntegrity(openChunk({ ...keys, dataKey: randomBytes(32) }, id, blob), /authentication failed/);
    await expectIntegrity(openChunk({ ...keys, macKey: randomBytes(32) }, id, blob), /MAC/);
  });

  it('refuses an unknown format byte, naming it', async () => {
    const { id, blob } = await sealed(randomBytes(100));
    const bad = Buffer.from(blob);
    bad[0] = 0x21;
    await expectIntegrity(openChunk(keys, id, bad), /format byte 0x21/);
  });

  it('never puts key material in messages', async () => {
    const { id, blob } = await sealed(randomBytes(100));
    const err = (await openChunk({ ...keys, macKey: randomBytes(32) }, id, blob).catch((e: unknown) => e)) as Error;
    for (const k of [keys.dataKey, keys.macKey]) {
      expect(err.message).not.toContain(k.toString('hex'));
      expect(err.message).not.toContain(k.toString('base64'));
    }
  });
});

describe('sealObject / openObject', () => {
  it('round-trips and is bound to its purpose and key', () => {
    const plain = Buffer.from(JSON.stringify({ snapshot: 'x', items: [1, 2, 3] }));
    const blob = sealObject(keys.dataKey, 'snapshot:abc', plain);
    expect(openObject(keys.dataKey, 'snapshot:abc', blob).equals(plain)).toBe(true);
    expect(() => openObject(keys.dataKey, 'snapshot:abd', blob)).toThrow(IntegrityError);
    expect(() => openObject(randomBytes(32), 'snapshot:abc', blob)).toThrow(IntegrityError);
    expect(() => openObject(keys.dataKey, 'snapshot:abc', blob.subarray(0, blob.length - 1))).toThrow(IntegrityError);
    expect(() => openObject(keys.dataKey, 'snapshot:abc', blob.subarray(0, 10))).toThrow(IntegrityError);
    expect(openObject(keys.dataKey, 'empty', sealObject(keys.dataKey, 'empty', Buffer.alloc(0))).length).toBe(0);
  });

  it('detects any flipped bit', () => {
    const blob = sealObject(keys.dataKey, 'pack-trailer', randomBytes(200));
    fc.assert(
      fc.property(fc.nat({ max: blob.length * 8 - 1 }), (bit) => {
        const bad = Buffer.from(blob);
        bad[bit >> 3]! ^= 1 << (bit & 7);
        expect(() => openObject(keys.dataKey, 'pack-trailer', bad)).toThrow(IntegrityError);
      }),
    );
  });

  it('a chunk blob does not open as an object, nor an object as a chunk', async () => {
    const plain = randomBytes(64);
    const id = chunkId(keys.macKey, plain);
    const chunk = await sealChunk(keys, id, plain);
    expect(() => openObject(keys.dataKey, id, chunk)).toThrow(IntegrityError);
    await expectIntegrity(openChunk(keys, id, sealObject(keys.dataKey, id, plain)));
  });
});

describe('tenant key wrapping', () => {
  const master = randomBytes(32);

  it('round-trips, with a random nonce', () => {
    const k = generateTenantKeys();
    const w = wrapTenantKeys(k, master);
    expect(w).toMatch(/^bkkeys:v1:[A-Za-z0-9+/]+=*$/);
    expect(wrapTenantKeys(k, master)).not.toBe(w);
    const back = unwrapTenantKeys(w, master);
    expect(back.dataKey.equals(k.dataKey)).toBe(true);
    expect(back.macKey.equals(k.macKey)).toBe(true);
    expect(w).not.toContain(k.dataKey.toString('base64'));
  });

  it('the wrong master key is a WrongKeyError', () => {
    const w = wrapTenantKeys(generateTenantKeys(), master);
    expect(() => unwrapTenantKeys(w, randomBytes(32))).toThrow(WrongKeyError);
  });

  it('a malformed value is a plain Error', () => {
    const w = wrapTenantKeys(generateTenantKeys(), master);
    for (const bad of ['', 'bkkeys:v2:' + w.slice(10), 'bkkeys:v1:', 'bkkeys:v1:!!!!', w.slice(0, -8), w + 'AAAA', 'garbage']) {
      let err: unknown;
      try {
        unwrapTenantKeys(bad, master);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(Error);
      expect(err).not.toBeInstanceOf(WrongKeyError);
    }
  });

  it('masterKeyId is a short stable fingerprint that differs between keys', () => {
    expect(masterKeyId(master)).toMatch(/^[0-9a-f]{16}$/);
    expect(masterKeyId(Buffer.from(master))).toBe(masterKeyId(master));
    expect(masterKeyId(randomBytes(32))).not.toBe(masterKeyId(master));
    expect(masterKeyId(master)).not.toContain(master.toString('hex').slice(0, 16));
  });
});
