import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, chown, lutimes, mkdir, mkdtemp, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { collectAll, expectSameTree, fromArray, MemoryRepo, snapshotTree } from './memory-repo.test-helper.js';
import { backupTree } from './tree-backup.js';
import { exportTree } from './tree-export.js';
import { IntegrityError, type DirEntry } from './types.js';

const AS_ROOT = process.getuid?.() === 0;

let tmp: string;
let source: string;

beforeEach(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'tree-export-'));
  source = path.join(tmp, 'src');
  await mkdir(source);
});
afterEach(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** Runs GNU tar -x on the stream into `dest`; resolves with tar's exit code. */
async function untar(stream: Readable, dest: string): Promise<number> {
  await mkdir(dest, { recursive: true });
  const tar = spawn('tar', ['-x', '-f', '-', '--numeric-owner', '--preserve-permissions', '--delay-directory-restore', '-C', dest], { stdio: ['pipe', 'ignore', 'ignore'] });
  const exited = new Promise<number>((resolve) => tar.once('close', (code) => resolve(code ?? -1)));
  await pipeline(stream, tar.stdin).catch(() => {});
  return exited;
}

describe('exportTree', () => {
  it('exports a tar that GNU tar extracts into the same tree', async () => {
    await mkdir(path.join(source, 'a/b/c'), { recursive: true });
    await writeFile(path.join(source, 'a/b/c/deep.txt'), 'deep');
    await writeFile(path.join(source, 'big.bin'), randomBytes(700 * 1024 + 3));
    await writeFile(path.join(source, 'empty'), '');
    await writeFile(path.join(source, 'ünïcødé 文件 😀.txt'), 'unicode');
    const long = `${'long-name-'.repeat(12)}/${'x'.repeat(120)}`;
    await mkdir(path.join(source, path.dirname(long)));
    await writeFile(path.join(source, long), 'a path longer than ustar holds');
    await symlink('a/b', path.join(source, 'link'));
    await symlink(`${'../'.repeat(1)}${'t'.repeat(150)}`, path.join(source, 'long-link'));
    await writeFile(path.join(source, 'secret'), 's');
    await chmod(path.join(source, 'secret'), 0o000);
    await chmod(path.join(source, 'a/b/c/deep.txt'), 0o4750);
    if (AS_ROOT) await chown(path.join(source, 'big.bin'), 3_000_000, 4242);
    await utimes(path.join(source, 'empty'), 1_600_000_000, 1_234_567_890.123456);
    await lutimes(path.join(source, 'link'), 1_600_000_000, 1_111_111_111.5);
    await mkdir(path.join(source, 'ro'));
    await writeFile(path.join(source, 'ro/f'), 'in a read-only dir');
    await chmod(path.join(source, 'ro'), 0o555);

    const repo = new MemoryRepo();
    const entries = await collectAll(backupTree({ root: source, tenantRoot: tmp, sink: repo }));
    const dest = path.join(tmp, 'out');
    expect(await untar(exportTree(fromArray(entries), repo), dest)).toBe(0);
    expectSameTree(await snapshotTree(dest), await snapshotTree(source), 0n); // pax mtimes: ns-exact
  });

  it('a corrupted chunk errors the stream (never a complete archive)', async () => {
    await writeFile(path.join(source, 'a'), 'first');
    await writeFile(path.join(source, 'b'), randomBytes(300 * 1024));
    await writeFile(path.join(source, 'c'), 'last');
    const repo = new MemoryRepo();
    const entries = await collectAll(backupTree({ root: source, tenantRoot: tmp, sink: repo }));
    repo.corrupt((entries[1] as DirEntry).chunks?.[2] as string);
    const stream = exportTree(fromArray(entries), repo);
    const err = await collectAll(stream as AsyncIterable<Buffer>).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    // and what was sent is no valid archive of everything: tar complains or misses the end
    const dest = path.join(tmp, 'out');
    const code = await untar(exportTree(fromArray(entries), repo), dest);
    expect(code).not.toBe(0);
  });

  it('an invalid manifest errors the stream', async () => {
    const base = { mode: 0o644, uid: 0, gid: 0, mtime_ns: '0', ctime_ns: '0', ino: '1', size: 0, chunks: [] };
    const entries = [
      { ...base, path: 'b', type: 'file' as const },
      { ...base, path: '../escape', type: 'file' as const },
    ];
    await expect(collectAll(exportTree(fromArray(entries), new MemoryRepo()) as AsyncIterable<Buffer>)).rejects.toThrow(IntegrityError);
  });

  it('an empty tree is an empty archive', async () => {
    const bytes = Buffer.concat(await collectAll(exportTree(fromArray([]), new MemoryRepo()) as AsyncIterable<Buffer>));
    expect(bytes.length).toBe(1024);
    expect(bytes.every((b) => b === 0)).toBe(true);
  });

  it('reads only as fast as the consumer takes it, and stops when destroyed', async () => {
    for (let i = 0; i < 20; i++) await writeFile(path.join(source, `f${i}`), randomBytes(256 * 1024));
    const repo = new MemoryRepo();
    const entries = await collectAll(backupTree({ root: source, tenantRoot: tmp, sink: repo }));
    repo.resetCounters();
    const stream = exportTree(fromArray(entries), repo);
    const first = await new Promise<Buffer>((resolve) => stream.once('data', resolve));
    expect(first.length).toBeGreaterThan(0);
    stream.pause();
    await new Promise((r) => setTimeout(r, 50));
    expect(repo.readCalls).toBeLessThan(20); // not everything was pulled into memory
    stream.destroy();
    await new Promise((r) => setTimeout(r, 20));
    const calls = repo.readCalls;
    await new Promise((r) => setTimeout(r, 50));
    expect(repo.readCalls).toBe(calls);
  });
});
