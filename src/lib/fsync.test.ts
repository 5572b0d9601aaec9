import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fsyncTree } from './fsync.js';

let base: string;
beforeEach(() => {
  base = mkdtempSync(path.join(tmpdir(), 'fsync-tree-'));
});
afterEach(() => rmSync(base, { recursive: true, force: true }));

describe('fsyncTree', () => {
  it('flushes every file and directory, without following symlinks or opening FIFOs', async () => {
    const root = path.join(base, 'root');
    const outside = path.join(base, 'outside');
    mkdirSync(path.join(outside, 'deep'), { recursive: true });
    writeFileSync(path.join(outside, 'deep', 'x'), 'x');
    mkdirSync(path.join(root, 'a', 'b'), { recursive: true });
    writeFileSync(path.join(root, 'top'), 'top');
    writeFileSync(path.join(root, 'a', 'one'), '1');
    writeFileSync(path.join(root, 'a', 'b', 'two'), '2', { mode: 0o444 });
    symlinkSync(outside, path.join(root, 'a', 'to-dir'));
    symlinkSync(path.join(outside, 'deep', 'x'), path.join(root, 'to-file'));
    execFileSync('mkfifo', [path.join(root, 'a', 'fifo')]); // opening it for reading would block
    expect(await fsyncTree(root, 2)).toEqual({ files: 3, directories: 3, failed: 0 });
  });

  it('counts what it could not flush, so the caller can fall back', async () => {
    expect(await fsyncTree(path.join(base, 'missing'))).toEqual({ files: 0, directories: 1, failed: 2 });
  });
});
