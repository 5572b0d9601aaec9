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
import { backupTree } from './tree-backup.js';
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

  it('batches reuse (at most 256 files a call) and bounds the reads in flight', async () => {
    for (let d = 0; d < 3; d++) {
      await mkdir(path.join(root, `d${d}`));
      for (let i = 0; i < 200; i++) writeFileSync(path.join(root, `d${d}`, `f${i}`), `file ${d} ${i}`);
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
    expect(first).toHaveLength(603);
    expect(maxInFlight).toBeGreaterThan(1);
    expect(maxInFlight).toBeLessThanOrEqual(4);
    repo.resetCounters();
    const sizes: number[] = [];
    const counting: ChunkSink = { writeStream: (s) => repo.writeStream(s), reuse: (files) => (sizes.push(files.length), repo.reuse(files)) };
    const second = await collectAll(backupTree({ root, tenantRoot: tenant, sink: counting, previous: fromArray(first) }));
    expect(second).toEqual(first);
    expect(repo.writeStreamCalls).toBe(0);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(600);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(256);
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
