import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, writeFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ComponentError } from '../components/types.js';
import { comparePaths } from './manifest.js';
import { collectAll, fromArray, MemoryRepo } from './memory-repo.test-helper.js';
import { backupTree, REUSE_BATCH } from './tree-backup.js';
import type { ChunkSink, DirEntry, Progress, StreamRef } from './types.js';

let tmp: string;
let tenant: string;
let root: string;

beforeEach(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'tree-backup-'));
  tenant = path.join(tmp, 'tenant');
  root = path.join(tenant, 'comp');
  await mkdir(root, { recursive: true });
});
afterEach(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function sampleTree(): Promise<void> {
  await mkdir(path.join(root, 'a/b/c'), { recursive: true });
  await writeFile(path.join(root, 'a/b/c/deep.txt'), 'deep');
  await writeFile(path.join(root, 'a.txt'), 'a dot txt');
  await writeFile(path.join(root, 'empty'), '');
  await writeFile(path.join(root, 'big.bin'), randomBytes(300 * 1024));
  await writeFile(path.join(root, 'ünïcødé 文件.txt'), 'unicode');
  await symlink('a/b', path.join(root, 'link-to-b'));
  await symlink('../comp/a.txt', path.join(root, 'a/up-link'));
  await chmod(path.join(root, 'a.txt'), 0o600);
}

describe('backupTree', () => {
  it('yields every entry in path order with its metadata', async () => {
    await sampleTree();
    const repo = new MemoryRepo();
    const entries = await collectAll(backupTree({ root, tenantRoot: tenant, sink: repo }));
    const paths = entries.map((e) => e.path);
    expect(paths).toEqual([...paths].sort(comparePaths));
    expect(paths).toEqual(['a', 'a/b', 'a/b/c', 'a/b/c/deep.txt', 'a/up-link', 'a.txt', 'big.bin', 'empty', 'link-to-b', 'ünïcødé 文件.txt']);
    const byPath = new Map(entries.map((e) => [e.path, e]));
    expect(byPath.get('a')?.type).toBe('directory');
    expect(byPath.get('a.txt')).toMatchObject({ type: 'file', mode: 0o600, size: 9 });
    expect(byPath.get('empty')).toMatchObject({ type: 'file', size: 0, chunks: [] });
    expect(byPath.get('big.bin')?.chunks).toHaveLength(5); // 300 KiB in 64 KiB chunks
    expect(byPath.get('link-to-b')).toMatchObject({ type: 'symlink', link_target: 'a/b', size: 0 });
    expect(byPath.get('link-to-b')?.chunks).toBeUndefined();
    expect(byPath.get('a/b/c/deep.txt')?.mtime_ns).toMatch(/^\d{19}$/);
    // files with data were read once each; the empty file not at all
    expect(repo.writeStreamCalls).toBe(4);
    expect(repo.reuseCalls).toBe(0);
  });

  it('a second backup with `previous` reads no file; a touched file is read again', async () => {
    await sampleTree();
    const repo = new MemoryRepo();
    const first = await collectAll(backupTree({ root, tenantRoot: tenant, sink: repo }));
    repo.resetCounters();
    const second = await collectAll(backupTree({ root, tenantRoot: tenant, sink: repo, previous: fromArray(first) }));
    expect(second).toEqual(first);
    expect(repo.writeStreamCalls).toBe(0);
    expect(repo.reusedFiles).toBe(4);
    expect(repo.reuseCalls).toBe(1);

    // same size, same content even: only the mtime moves
    await utimes(path.join(root, 'a.txt'), new Date(), new Date(Date.now() + 5000));
    repo.resetCounters();
    const third = await collectAll(backupTree({ root, tenantRoot: tenant, sink: repo, previous: fromArray(second) }));
    expect(repo.writeStreamCalls).toBe(1);
    expect(repo.reusedFiles).toBe(3);
    const changed = third.find((e) => e.path === 'a.txt');
    expect(changed?.mtime_ns).not.toBe(first.find((e) => e.path === 'a.txt')?.mtime_ns);
    expect(changed?.chunks).toEqual(first.find((e) => e.path === 'a.txt')?.chunks);
  });

  it('a file whose inode changed is read again (replaced by a rename)', async () => {
    await writeFile(path.join(root, 'f'), 'one');
    const repo = new MemoryRepo();
    const first = await collectAll(backupTree({ root, tenantRoot: tenant, sink: repo }));
    const st = first[0] as DirEntry;
    await writeFile(path.join(root, 'g'), 'two');
    execFileSync('touch', ['-d', `@${BigInt(st.mtime_ns) / 1_000_000_000n}.${(BigInt(st.mtime_ns) % 1_000_000_000n).toString().padStart(9, '0')}`, path.join(root, 'g')]);
    execFileSync('mv', [path.join(root, 'g'), path.join(root, 'f')]);
    repo.resetCounters();
    const second = await collectAll(backupTree({ root, tenantRoot: tenant, sink: repo, previous: fromArray(first) }));
    expect(repo.writeStreamCalls).toBe(1);
    expect(second[0]?.chunks).not.toEqual(st.chunks);
  });

  it('reuse answering false makes the file be read', async () => {
    await sampleTree();
    const repo = new MemoryRepo();
    const first = await collectAll(backupTree({ root, tenantRoot: tenant, sink: repo }));
    repo.resetCounters();
    repo.reuseAnswer = (files) => files.map((_, i) => i !== 0); // the first file's chunks are gone
    const second = await collectAll(backupTree({ root, tenantRoot: tenant, sink: repo, previous: fromArray(first) }));
    expect(second).toEqual(first);
    expect(repo.reusedFiles).toBe(4);
    expect(repo.writeStreamCalls).toBe(1);
  });

  it('batches reuse (at most REUSE_BATCH files a call) and bounds the reads in flight', async () => {
    for (let d = 0; d < 3; d++) {
      await mkdir(path.join(root, `d${d}`));
      for (let i = 0; i < 400; i++) writeFileSync(path.join(root, `d${d}`, `f${i}`), `file ${d} ${i}`);
    }
    const repo = new MemoryRepo();
    let inFlight = 0;
    let maxInFlight = 0;
    const sink: ChunkSink = {
      async writeStream(source): Promise<StreamRef> {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        try {
          await new Promise((r) => setTimeout(r, 1));
          return await repo.writeStream(source);
        } finally {
          inFlight--;
        }
      },
      reuse: (files) => repo.reuse(files),
    };
    const first = await collectAll(backupTree({ root, tenantRoot: tenant, sink }));
    expect(first).toHaveLength(1203);
    expect(maxInFlight).toBeGreaterThan(1);
    expect(maxInFlight).toBeLessThanOrEqual(4);
    repo.resetCounters();
    const sizes: number[] = [];
    const counting: ChunkSink = { writeStream: (s) => repo.writeStream(s), reuse: (files) => (sizes.push(files.length), repo.reuse(files)) };
    const second = await collectAll(backupTree({ root, tenantRoot: tenant, sink: counting, previous: fromArray(first) }));
    expect(second).toEqual(first);
    expect(repo.writeStreamCalls).toBe(0);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(1200);
    expect(sizes.length).toBeGreaterThan(1);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(REUSE_BATCH);
  });

  it('refuses a symlink that leads outside the tenant folder, naming it', async () => {
    await mkdir(path.join(root, 'sub'));
    await symlink('../../../outside', path.join(root, 'sub/escape'));
    const err = await collectAll(backupTree({ root, tenantRoot: tenant, sink: new MemoryRepo() })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ComponentError);
    expect((err as Error).message).toContain('sub/escape');
    expect((err as Error).message).not.toContain(tmp);
  });

  it('judges links where the kernel takes them (through other links)', async () => {
    await mkdir(path.join(root, 'd1/d2'), { recursive: true });
    await symlink('../..', path.join(root, 'd1/d2/b')); // -> root: fine
    await symlink('d1/d2/b/..', path.join(root, 'a')); // through b: root/.. = tenant: fine
    await collectAll(backupTree({ root, tenantRoot: tenant, sink: new MemoryRepo() }));
    await symlink('d1/d2/b/../..', path.join(root, 'c')); // tenant/..: outside (lexically it stays inside)
    await expect(collectAll(backupTree({ root, tenantRoot: tenant, sink: new MemoryRepo() }))).rejects.toThrow(/symbolic link c points outside/);
  });

  it('skips FIFOs and sockets-like entries', async () => {
    await writeFile(path.join(root, 'f'), 'x');
    execFileSync('mkfifo', [path.join(root, 'fifo')]);
    const entries = await collectAll(backupTree({ root, tenantRoot: tenant, sink: new MemoryRepo() }));
    expect(entries.map((e) => e.path)).toEqual(['f']);
  });

  it('stores hard links as separate files', async () => {
    await writeFile(path.join(root, 'one'), 'same data');
    execFileSync('ln', [path.join(root, 'one'), path.join(root, 'two')]);
    const entries = await collectAll(backupTree({ root, tenantRoot: tenant, sink: new MemoryRepo() }));
    expect(entries.map((e) => [e.path, e.type, e.size])).toEqual([
      ['one', 'file', 9],
      ['two', 'file', 9],
    ]);
    expect(entries[0]?.chunks).toEqual(entries[1]?.chunks);
  });

  it('fails when a file changes while it is read', async () => {
    const victim = path.join(root, 'growing.log');
    await writeFile(victim, randomBytes(200 * 1024));
    const repo = new MemoryRepo();
    const sink: ChunkSink = {
      async writeStream(source) {
        let first = true;
        async function* tap() {
          for await (const piece of source) {
            if (first) appendFileSync(victim, 'more'); // the application writes meanwhile
            first = false;
            yield piece;
          }
        }
        return repo.writeStream(tap());
      },
      reuse: (f) => repo.reuse(f),
    };
    const err = await collectAll(backupTree({ root, tenantRoot: tenant, sink })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ComponentError);
    expect((err as Error).message).toMatch(/changed as we read it: "growing.log"/);
  });

  it('refuses names that are not UTF-8, naming the directory', async () => {
    await mkdir(path.join(root, 'sub'));
    writeFileSync(Buffer.concat([Buffer.from(path.join(root, 'sub') + '/'), Buffer.from([0x66, 0xff])]), 'x');
    const err = await collectAll(backupTree({ root, tenantRoot: tenant, sink: new MemoryRepo() })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ComponentError);
    expect((err as Error).message).toMatch(/"sub" is not valid UTF-8/);
  });

  it('reports progress: totals null until the walk is done, exact at the end', async () => {
    await sampleTree();
    const reports: Progress[] = [];
    await collectAll(backupTree({ root, tenantRoot: tenant, sink: new MemoryRepo(), onProgress: (p) => reports.push(p) }));
    const last = reports[reports.length - 1] as Progress;
    const bytes = 4 + 9 + 0 + 300 * 1024 + 'unicode'.length;
    expect(last).toEqual({ bytes_done: bytes, bytes_total: bytes, files_done: 5, files_total: 5 });
    for (const r of reports) if (r.files_total === null) expect(r.bytes_total).toBeNull();
  });

  it('stops on abort', async () => {
    await sampleTree();
    const ac = new AbortController();
    ac.abort();
    await expect(collectAll(backupTree({ root, tenantRoot: tenant, sink: new MemoryRepo(), signal: ac.signal }))).rejects.toThrow(/abort/i);
  });

  it('a failing sink fails the backup', async () => {
    await sampleTree();
    const sink: ChunkSink = {
      writeStream: async () => {
        throw new Error('store down');
      },
      reuse: async (f) => f.map(() => true),
    };
    await expect(collectAll(backupTree({ root, tenantRoot: tenant, sink }))).rejects.toThrow('store down');
  });
});

describe('backupTree through sink.storeFiles (files read, chunked and stored by the sink)', () => {
  // small sizes so that big.bin (300 KiB) takes several chunks and several segments
  const files = { chunking: { minSize: 4096, avgSize: 16384, maxSize: 65536 }, segmentBytes: 128 * 1024, budgetBytes: 64 * 1024 };
  const withoutChunks = (es: DirEntry[]) => es.map(({ chunks: _c, ...rest }) => rest);

  it('gives the same entries as the stream path, and chunks identical to one pass over each file', async () => {
    await sampleTree();
    const fast = new MemoryRepo({ files });
    const entries = await collectAll(backupTree({ root, tenantRoot: tenant, sink: fast }));
    const slow = await collectAll(backupTree({ root, tenantRoot: tenant, sink: new MemoryRepo() }));
    expect(withoutChunks(entries)).toEqual(withoutChunks(slow));
    expect(fast.writeStreamCalls).toBe(0);
    expect(fast.filesRead).toBe(4); // files with data, once each; the empty file is not read
    const big = entries.find((e) => e.path === 'big.bin') as DirEntry;
    const whole = (await import('node:fs')).readFileSync(path.join(root, 'big.bin'));
    const { chunkLengths } = await import('./chunker.js');
    const lengths = chunkLengths(whole, files.chunking);
    let at = 0;
    expect(big.chunks).toEqual(lengths.map((n) => MemoryRepo.id(whole.subarray(at, (at += n)))));
    expect(lengths.length).toBeGreaterThan(4);
  });

  it('a second backup with `previous` reads no file; a touched file is read again, its old chunks not stored again', async () => {
    await sampleTree();
    const repo = new MemoryRepo({ files });
    const first = await collectAll(backupTree({ root, tenantRoot: tenant, sink: repo }));
    repo.resetCounters();
    const second = await collectAll(backupTree({ root, tenantRoot: tenant, sink: repo, previous: fromArray(first) }));
    expect(second).toEqual(first);
    expect(repo.filesRead).toBe(0);
    expect(repo.reusedFiles).toBe(4);

    await utimes(path.join(root, 'big.bin'), new Date(), new Date(Date.now() + 5000));
    repo.resetCounters();
    const held = repo.chunks.size;
    const third = await collectAll(backupTree({ root, tenantRoot: tenant, sink: repo, previous: fromArray(second) }));
    expect(repo.filesRead).toBe(1);
    expect(repo.reusedFiles).toBe(3);
    expect(repo.chunks.size).toBe(held);
    expect(third.find((e) => e.path === 'big.bin')?.chunks).toEqual(first.find((e) => e.path === 'big.bin')?.chunks);
  });

  it('a hinted chunk the repository lost makes the file be read again whole, without hints', async () => {
    await sampleTree();
    const repo = new MemoryRepo({ files });
    const first = await collectAll(backupTree({ root, tenantRoot: tenant, sink: repo }));
    const big = first.find((e) => e.path === 'big.bin') as DirEntry;
    repo.delete((big.chunks as string[])[2] as string);
    await utimes(path.join(root, 'big.bin'), new Date(), new Date(Date.now() + 5000));
    repo.resetCounters();
    const second = await collectAll(backupTree({ root, tenantRoot: tenant, sink: repo, previous: fromArray(first) }));
    expect(second.find((e) => e.path === 'big.bin')?.chunks).toEqual(big.chunks);
    expect(repo.filesRead).toBe(2); // once with hints, once without
    const all = await collectAll(repo.read(big.chunks as string[]));
    expect(Buffer.concat(all as Buffer[]).equals((await import('node:fs')).readFileSync(path.join(root, 'big.bin')))).toBe(true);
  });

  it('reuse answering false makes the file be read', async () => {
    await sampleTree();
    const repo = new MemoryRepo({ files });
    const first = await collectAll(backupTree({ root, tenantRoot: tenant, sink: repo }));
    repo.resetCounters();
    repo.reuseAnswer = (fs) => fs.map((_, i) => i !== 0);
    const second = await collectAll(backupTree({ root, tenantRoot: tenant, sink: repo, previous: fromArray(first) }));
    expect(second).toEqual(first);
    expect(repo.filesRead).toBe(1);
  });

  it('many small files go in few calls; progress totals are exact at the end', async () => {
    for (let i = 0; i < 300; i++) writeFileSync(path.join(root, `f${String(i).padStart(3, '0')}`), `file ${i}`);
    const repo = new MemoryRepo({ files });
    const reports: Progress[] = [];
    const entries = await collectAll(backupTree({ root, tenantRoot: tenant, sink: repo, onProgress: (p) => reports.push(p) }));
    expect(entries).toHaveLength(300);
    expect(repo.storeFilesCalls).toBeLessThanOrEqual(3);
    const bytes = entries.reduce((a, e) => a + e.size, 0);
    expect(reports[reports.length - 1]).toEqual({ bytes_done: bytes, bytes_total: bytes, files_done: 300, files_total: 300 });
  });

  it('a file replaced by a directory after the listing, or removed, fails the backup naming it', async () => {
    await writeFile(path.join(root, 'x'), 'x');
    const repo = new MemoryRepo({ files });
    const sink: ChunkSink = {
      writeStream: (s) => repo.writeStream(s),
      reuse: (f) => repo.reuse(f),
      storeFiles: async (jobs) => {
        await rm(path.join(root, 'x'));
        await mkdir(path.join(root, 'x'));
        return repo.storeFiles!(jobs);
      },
    };
    const err = await collectAll(backupTree({ root, tenantRoot: tenant, sink })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ComponentError);
    expect((err as Error).message).toMatch(/changed as we read it: "x"/);
  });

  it('a failing storeFiles fails the backup and leaves no call running', async () => {
    await sampleTree();
    let running = 0;
    const sink: ChunkSink = {
      writeStream: async () => {
        throw new Error('not used');
      },
      reuse: async (f) => f.map(() => true),
      storeFiles: async () => {
        running++;
        await new Promise((r) => setTimeout(r, 5));
        running--;
        throw new Error('store down');
      },
    };
    await expect(collectAll(backupTree({ root, tenantRoot: tenant, sink }))).rejects.toThrow('store down');
    expect(running).toBe(0);
  });
});
