import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { chunkLengths, type ChunkerOptions } from './chunker.js';
import { processFiles } from './file-core.mjs';
import type { FileJob, FileResult } from './file-core.mjs';

const dir = mkdtempSync(path.join(os.tmpdir(), 'file-core-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const chunking: ChunkerOptions = { minSize: 256, avgSize: 1024, maxSize: 4096 };
const run = (jobs: FileJob[], o: Partial<{ segmentBytes: number; budgetBytes: number; seal: ((id: string, p: Buffer) => Promise<Buffer>) | null }> = {}) =>
  processFiles(jobs, { hash: sha, seal: o.seal ?? null, chunking, segmentBytes: o.segmentBytes ?? 8192, budgetBytes: o.budgetBytes ?? 1 << 30 });
type Data = Extract<FileResult, { kind: 'data' }>;

/** `size` pseudo-random bytes determined by `seed` (sha256 in counter mode). */
function bytesOf(seed: number, size: number): Buffer {
  const out = Buffer.alloc(size);
  for (let at = 0, i = 0; at < size; i++) at += createHash('sha256').update(`${seed}:${i}`).digest().copy(out, at);
  return out;
}

/** Reads a whole file segment by segment, as tree-backup.ts does: the chunks of every answer, in order. */
async function segmented(abs: string, segmentBytes: number): Promise<{ lengths: number[]; ids: string[]; answers: number }> {
  const lengths: number[] = [];
  const ids: string[] = [];
  let job: FileJob = { abs };
  for (let answers = 1; ; answers++) {
    const [r] = await run([job], { segmentBytes });
    if (r?.kind !== 'data') throw new Error(`answered ${r?.kind}`);
    for (const c of r.chunks) {
      lengths.push(c.length);
      ids.push(c.id);
    }
    if (r.next === null) return { lengths, ids, answers };
    job = { abs, start: r.next, expect: r.stat };
  }
}

describe('processFiles', () => {
  it('reading in segments gives the chunks of one pass over the whole file (any size, any segment size)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 40_000 }), fc.integer({ min: 2 * 4096, max: 20_000 }), fc.integer(), async (size, segmentBytes, seed) => {
        const data = bytesOf(seed, size);
        const abs = path.join(dir, 'p.bin');
        writeFileSync(abs, data);
        const got = await segmented(abs, segmentBytes);
        const want = chunkLengths(data, chunking);
        expect(got.lengths).toEqual(want);
        let at = 0;
        expect(got.ids).toEqual(want.map((n) => sha(data.subarray(at, (at += n)))));
        expect(got.answers).toBeGreaterThanOrEqual(Math.ceil(size / segmentBytes) > 1 ? 2 : 1);
      }),
      { numRuns: 40 },
    );
  });

  it('answers unchanged against an equal prev without reading; other for a directory or a link; error for a missing path', async () => {
    const abs = path.join(dir, 'u.txt');
    writeFileSync(abs, 'hello');
    const [first] = (await run([{ abs }])) as Data[];
    const prev = { size: first!.stat.size, mtime_ns: first!.stat.mtime_ns, ctime_ns: first!.stat.ctime_ns, ino: first!.stat.ino };
    symlinkSync(abs, path.join(dir, 'link'));
    const answers = await run([{ abs, prev }, { abs, prev: { ...prev, mtime_ns: '1' } }, { abs: dir }, { abs: path.join(dir, 'link') }, { abs: path.join(dir, 'nope') }]);
    expect(answers.map((a) => a.kind)).toEqual(['unchanged', 'data', 'other', 'other', 'error']);
    expect(answers[4]).toEqual({ kind: 'error', code: 'ENOENT' });
  });

  it('a continuation whose file changed since the first segment, or a file that grew, answers changed', async () => {
    const abs = path.join(dir, 'c.bin');
    writeFileSync(abs, randomBytes(30_000));
    const [r] = (await run([{ abs }], { segmentBytes: 8192 })) as Data[];
    expect(r!.next).not.toBeNull();
    appendFileSync(abs, 'more');
    expect((await run([{ abs, start: r!.next!, expect: r!.stat }], { segmentBytes: 8192 }))[0]).toEqual({ kind: 'changed' });
    // the same file, unchanged since its first segment, goes on
    const [again] = (await run([{ abs }], { segmentBytes: 8192 })) as Data[];
    expect((await run([{ abs, start: again!.next!, expect: again!.stat }], { segmentBytes: 8192 }))[0]?.kind).toBe('data');
  });

  it('stops taking files once the budget is read: the rest answer deferred', async () => {
    const jobs = [0, 1, 2, 3].map((i) => {
      const abs = path.join(dir, `b${i}`);
      writeFileSync(abs, randomBytes(3000));
      return { abs };
    });
    const answers = await run(jobs, { budgetBytes: 5000 });
    expect(answers.map((a) => a.kind)).toEqual(['data', 'data', 'deferred', 'deferred']);
  });

  it('hinted chunks are not sealed; the others are', async () => {
    const abs = path.join(dir, 'h.bin');
    const data = randomBytes(20_000);
    writeFileSync(abs, data);
    const seal = async (id: string, p: Buffer) => Buffer.concat([Buffer.from(id), p]);
    const [all] = (await run([{ abs }], { seal, segmentBytes: 1 << 20 })) as Data[];
    expect(all!.chunks.every((c) => c.blob !== null)).toBe(true);
    const hints = all!.chunks.filter((_, i) => i % 2 === 0).map((c) => c.id);
    const [some] = (await run([{ abs, hints }], { seal, segmentBytes: 1 << 20 })) as Data[];
    expect(some!.chunks.map((c) => c.blob === null)).toEqual(all!.chunks.map((_, i) => i % 2 === 0));
  });
});
