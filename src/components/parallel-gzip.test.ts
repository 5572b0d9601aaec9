import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { gunzipSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { createParallelGzip } from './parallel-gzip.js';

async function compress(input: Buffer, chunkSize: number, concurrency?: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let i = 0; i < input.length; i += chunkSize) parts.push(input.subarray(i, i + chunkSize));
  const out: Buffer[] = [];
  for await (const chunk of Readable.from(parts).pipe(createParallelGzip(concurrency ? { concurrency } : {}))) out.push(chunk as Buffer);
  return Buffer.concat(out);
}

function text(bytes: number): Buffer {
  const line = 'ts=2025-01-01T00:00:00Z level=info msg="backup completed" cluster=eu-1 bytes=123456\n';
  return Buffer.from(line.repeat(Math.ceil(bytes / line.length))).subarray(0, bytes);
}

describe('parallel gzip', () => {
  const MiB = 1 << 20;
  it.each([
    ['empty', Buffer.alloc(0)],
    ['small', Buffer.from('hello')],
    ['exactly one block', randomBytes(MiB)],
    ['blocks and a remainder', Buffer.concat([text(3 * MiB), randomBytes(MiB + 7), text(12345)])],
  ])('produces one standard gzip member for %s input', async (_name, input) => {
    for (const concurrency of [1, 3]) {
      const gz = await compress(input, 100_003, concurrency);
      expect(gunzipSync(gz).equals(input)).toBe(true);
    }
  });

  it('compresses about as well as a serial gzip, and gzip(1) accepts it', async () => {
    const input = Buffer.concat([text(5 * MiB), randomBytes(MiB)]);
    const gz = await compress(input, 64 * 1024);
    expect(gz.length).toBeLessThan(gzipSync(input).length * 1.02);
    const dir = await mkdtemp(path.join(tmpdir(), 'pgz-'));
    try {
      await writeFile(path.join(dir, 'x.gz'), gz);
      expect(spawnSync('gzip', ['-t', path.join(dir, 'x.gz')]).status).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
