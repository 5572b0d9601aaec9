import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { restoreFiles, type RestoreChunk, type RestoreJob } from './restore-core.mjs';
import { chunkId, generateTenantKeys, sealChunk } from './seal.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'restore-core-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const keys = generateTenantKeys();

/** A pack file of sealed chunks (no trailer: restore-core reads ranges only) and where each chunk is. */
async function pack(name: string, plains: Buffer[]): Promise<RestoreChunk[]> {
  const file = path.join(dir, name);
  const blobs: Buffer[] = [];
  const out: RestoreChunk[] = [];
  let offset = 0;
  for (const p of plains) {
    const id = chunkId(keys.macKey, p);
    const blob = await sealChunk(keys, id, p);
    out.push({ id, pack: file, offset, length: blob.length, rawLength: p.length });
    blobs.push(blob);
    offset += blob.length;
  }
  writeFileSync(file, Buffer.concat(blobs));
  return out;
}

const job = (name: string, chunks: RestoreChunk[], size: number, extra: Partial<RestoreJob> = {}): RestoreJob => ({
  abs: path.join(dir, name),
  path: name,
  create: true,
  finish: true,
  offset: 0,
  chunks,
  size,
  mode: 0o640,
  uid: 0,
  gid: 0,
  mtime: 1_700_000_000.5,
  ...extra,
});

describe('restoreFiles', () => {
  it('writes files from sealed chunks with mode and mtime, a large one in ranges', async () => {
    const parts = [randomBytes(5000), Buffer.from('text '.repeat(2000)), randomBytes(7)];
    const chunks = await pack('p1', parts);
    const whole = Buffer.concat(parts);
    const written = await restoreFiles([job('a', chunks, whole.length), job('empty', [], 0)], keys, { asRoot: false, now: Date.now() / 1000 });
    expect(written).toBe(whole.length);
    expect(readFileSync(path.join(dir, 'a')).equals(whole)).toBe(true);
    const st = lstatSync(path.join(dir, 'a'));
    expect(st.mode & 0o777).toBe(0o640);
    expect(st.mtimeMs).toBe(1_700_000_000_500);
    expect(lstatSync(path.join(dir, 'empty')).size).toBe(0);
    // in two ranges: the first creates, the second goes on and finishes
    await restoreFiles([job('b', chunks.slice(0, 2), whole.length, { finish: false })], keys, { asRoot: false, now: 0 });
    expect(lstatSync(path.join(dir, 'b')).mode & 0o777).toBe(0o600); // not finished yet
    await restoreFiles([job('b', chunks.slice(2), whole.length, { create: false, offset: parts[0]!.length + parts[1]!.length })], keys, { asRoot: false, now: 0 });
    expect(readFileSync(path.join(dir, 'b')).equals(whole)).toBe(true);
  });

  it('refuses an existing file, a damaged chunk, a wrong length and data that does not add up to the size', async () => {
    const chunks = await pack('p2', [randomBytes(3000), randomBytes(3000)]);
    writeFileSync(path.join(dir, 'exists'), 'x');
    await expect(restoreFiles([job('exists', chunks, 6000)], keys, { asRoot: false, now: 0 })).rejects.toMatchObject({ code: 'EEXIST' });
    const damaged = Buffer.from(readFileSync(chunks[1]!.pack));
    damaged[chunks[1]!.offset + 20]! ^= 1;
    writeFileSync(path.join(dir, 'p2-bad'), damaged);
    const bad = chunks.map((c) => ({ ...c, pack: path.join(dir, 'p2-bad') }));
    await expect(restoreFiles([job('d1', bad, 6000)], keys, { asRoot: false, now: 0 })).rejects.toMatchObject({ name: 'IntegrityError' });
    await expect(restoreFiles([job('d2', [{ ...chunks[0]!, rawLength: 2999 }], 3000)], keys, { asRoot: false, now: 0 })).rejects.toThrow(/3000 bytes, 2999 recorded/);
    await expect(restoreFiles([job('d3', chunks, 5000)], keys, { asRoot: false, now: 0 })).rejects.toThrow(/longer than its size/);
    await expect(restoreFiles([job('d4', chunks.slice(0, 1), 6000)], keys, { asRoot: false, now: 0 })).rejects.toThrow(/holds 3000 bytes, its size is 6000/);
    expect(existsSync(path.join(dir, 'd4'))).toBe(true); // the caller removes what a failed call wrote
  });
});
