import { randomBytes } from 'node:crypto';
import { chmod, chown, lutimes, mkdir, mkdtemp, readdir, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PathEscapeError } from '../components/paths.js';
import { ComponentError } from '../components/types.js';
import { decodeManifest, encodeManifest } from './manifest.js';
import { collectAll, expectSameTree, fromArray, MemoryRepo, snapshotTree } from './memory-repo.test-helper.js';
import { backupTree } from './tree-backup.js';
import { PathNotInBackupError, restoreTree } from './tree-restore.js';
import { IntegrityError, type DirEntry } from './types.js';

const AS_ROOT = process.getuid?.() === 0;

let tmp: string;
let tenant: string;
let source: string;
let target: string;

beforeEach(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'tree-restore-'));
  tenant = path.join(tmp, 'tenant');
  source = path.join(tenant, 'src');
  target = path.join(tenant, 'dst');
  await mkdir(source, { recursive: true });
});
afterEach(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function sampleTree(root: string): Promise<void> {
  await mkdir(path.join(root, 'a/b/c'), { recursive: true });
  await writeFile(path.join(root, 'a/b/c/deep.txt'), 'deep');
  await writeFile(path.join(root, 'a.txt'), 'a dot txt');
  await writeFile(path.join(root, 'empty'), '');
  await writeFile(path.join(root, 'big.bin'), randomBytes(1024 * 1024 + 17));
  await writeFile(path.join(root, 'ünïcødé 文件 😀.txt'), 'unicode');
  await symlink('a/b', path.join(root, 'link-to-b'));
  await symlink('../a.txt', path.join(root, 'a/up-link'));
  await symlink('nowhere/at/all', path.join(root, 'dangling'));
  await mkdir(path.join(root, 'ro'));
  await writeFile(path.join(root, 'ro/inside'), 'read-only dir');
  await writeFile(path.join(root, 'secret'), 'no access');
  await writeFile(path.join(root, 'tool'), '#!/bin/sh\n');
  await chmod(path.join(root, 'secret'), 0o000);
  await chmod(path.join(root, 'tool'), 0o4755);
  await chmod(path.join(root, 'a.txt'), 0o640);
  await mkdir(path.join(root, 'sticky'));
  await chmod(path.join(root, 'sticky'), 0o1777);
  if (AS_ROOT) await chown(path.join(root, 'a.txt'), 1234, 5678);
  // times with ns digits, some in the past
  await utimes(path.join(root, 'a.txt'), 1_600_000_000.123456, 1_500_000_000.987654);
  await lutimes(path.join(root, 'link-to-b'), 1_600_000_000, 1_400_000_000.5);
  await utimes(path.join(root, 'a/b'), 1_600_000_000, 1_300_000_000.25);
  await chmod(path.join(root, 'ro'), 0o555);
}

async function backup(root: string, repo: MemoryRepo): Promise<DirEntry[]> {
  return collectAll(backupTree({ root, tenantRoot: tenant, sink: repo }));
}

/** Names in `dir` that a restore could have left behind. */
async function leftovers(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => n.includes('.restore-') || n.includes('.old-'));
}

describe('restoreTree (whole)', () => {
  it('restores a tree byte-identical, with modes, owners, mtimes and link targets', async () => {
    await sampleTree(source);
    const repo = new MemoryRepo();
    const entries = await backup(source, repo);
    // through the manifest bytes, as in production
    const bytes = encodeManifest({ format: 'bk-manifest/v1', type: 'directory' }, entries);
    await restoreTree({ entries: decodeManifest(bytes), source: repo, target, tenantRoot: tenant });
    expectSameTree(await snapshotTree(target), await snapshotTree(source));
    expect(await leftovers(tenant)).toEqual([]);
  });

  it('a source whose writeFiles fails mid-way: what it wrote is removed and the files are written the read way', async () => {
    await sampleTree(source);
    const repo = new MemoryRepo();
    const entries = await backup(source, repo);
    const calls: number[] = [];
    const flaky = {
      read: (ids: string[]) => repo.read(ids),
      // writes junk into the first file of each call, then fails: the fallback must not keep it
      writeFiles: async (jobs: { abs: string; create: boolean }[]) => {
        calls.push(jobs.length);
        if (jobs[0]?.create) await writeFile(jobs[0].abs, 'junk');
        throw new Error('fast path down');
      },
    };
    await restoreTree({ entries: fromArray(entries), source: flaky, target, tenantRoot: tenant });
    expectSameTree(await snapshotTree(target), await snapshotTree(source));
    expect(calls.length).toBeGreaterThan(1); // the small files' batch and big.bin on its own
  });

  it('replaces an existing tree entirely', async () => {
    await sampleTree(source);
    const repo = new MemoryRepo();
    const entries = await backup(source, repo);
    await mkdir(path.join(target, 'a'), { recursive: true });
    await writeFile(path.join(target, 'stale'), 'old');
    await writeFile(path.join(target, 'a.txt'), 'old version');
    await restoreTree({ entries: fromArray(entries), source: repo, target, tenantRoot: tenant });
    expectSameTree(await snapshotTree(target), await snapshotTree(source));
    expect(await leftovers(tenant)).toEqual([]);
  });

  it('a corrupted chunk fails the restore and leaves the target untouched', async () => {
    await sampleTree(source);
    const repo = new MemoryRepo();
    const entries = await backup(source, repo);
    await mkdir(target);
    await writeFile(path.join(target, 'current'), 'the live data');
    const before = await snapshotTree(target);
    const big = entries.find((e) => e.path === 'big.bin') as DirEntry;
    repo.corrupt(big.chunks?.[10] as string);
    const err = await restoreTree({ entries: fromArray(entries), source: repo, target, tenantRoot: tenant }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expectSameTree(await snapshotTree(target), before, 0n);
    expect(await leftovers(tenant)).toEqual([]);
  });

  it('a missing chunk or short data fails the restore too', async () => {
    await sampleTree(source);
    const repo = new MemoryRepo();
    const entries = await backup(source, repo);
    const deep = entries.find((e) => e.path === 'a/b/c/deep.txt') as DirEntry;
    repo.delete(deep.chunks?.[0] as string);
    await expect(restoreTree({ entries: fromArray(entries), source: repo, target, tenantRoot: tenant })).rejects.toThrow(IntegrityError);
    const lying = entries.map((e) => (e.path === 'a.txt' ? { ...e, size: e.size + 1 } : e));
    await expect(restoreTree({ entries: fromArray(lying), source: new MemoryRepo(), target, tenantRoot: tenant })).rejects.toThrow(IntegrityError);
    await expect(readdir(target)).rejects.toThrow(/ENOENT/);
    expect(await leftovers(tenant)).toEqual([]);
  });

  it('refuses symlinks leading outside the tenant folder, judged through the restored tree', async () => {
    const repo = new MemoryRepo();
    const base = { mode: 0o777, uid: 0, gid: 0, mtime_ns: '0', ctime_ns: '0', ino: '1', size: 0 };
    const dir = (p: string): DirEntry => ({ ...base, path: p, type: 'directory', mode: 0o755 });
    const link = (p: string, t: string): DirEntry => ({ ...base, path: p, type: 'symlink', link_target: t });
    const cases: DirEntry[][] = [
      [link('x', '../../..')],
      [link('x', '/etc')],
      // b -> the root of the tree; a goes through it: dst/../.. = outside
      [link('a', 'd1/d2/b/../..'), dir('d1'), dir('d1/d2'), link('d1/d2/b', '../..')],
    ];
    for (const entries of cases) {
      const err = await restoreTree({ entries: fromArray(entries), source: repo, target, tenantRoot: tenant }).catch((e: unknown) => e);
      expect(err, JSON.stringify(entries)).toBeInstanceOf(ComponentError);
      expect((err as Error).message).toMatch(/points outside/);
      await expect(readdir(target)).rejects.toThrow(/ENOENT/);
    }
    // inside the tenant folder is fine
    await restoreTree({ entries: fromArray([link('ok', '../src'), link('ok2', '..')]), source: repo, target, tenantRoot: tenant });
    expect(await leftovers(tenant)).toEqual([]);
  });

  it('refuses an entry below a symlink (never writes through one)', async () => {
    const base = { mode: 0o644, uid: 0, gid: 0, mtime_ns: '0', ctime_ns: '0', ino: '1', size: 0 };
    const entries: DirEntry[] = [
      { ...base, path: 'l', type: 'symlink', link_target: '/tmp' },
      { ...base, path: 'l/evil', type: 'file', chunks: [] },
    ];
    await expect(restoreTree({ entries: fromArray(entries), source: new MemoryRepo(), target, tenantRoot: tenant })).rejects.toThrow(IntegrityError);
    await expect(readFile('/tmp/evil')).rejects.toThrow(/ENOENT/);
  });

  it('stops on abort, target untouched', async () => {
    await sampleTree(source);
    const repo = new MemoryRepo();
    const entries = await backup(source, repo);
    repo.readDelayMs = 5;
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 10);
    await expect(restoreTree({ entries: fromArray(entries), source: repo, target, tenantRoot: tenant, signal: ac.signal })).rejects.toThrow(/abort/i);
    await expect(readdir(target)).rejects.toThrow(/ENOENT/);
    expect(await leftovers(tenant)).toEqual([]);
  });
});

describe('restoreTree (paths)', () => {
  async function prepared() {
    await sampleTree(source);
    await writeFile(path.join(source, 'a/b/other.txt'), 'other in backup');
    const repo = new MemoryRepo();
    const entries = await backup(source, repo);
    await restoreTree({ entries: fromArray(entries), source: repo, target, tenantRoot: tenant });
    // the live tree moves on
    await chmod(path.join(target, 'ro'), 0o755);
    await writeFile(path.join(target, 'a.txt'), 'edited');
    await writeFile(path.join(target, 'a/b/other.txt'), 'edited too');
    await writeFile(path.join(target, 'a/b/new-file'), 'created after the backup');
    await writeFile(path.join(target, 'big.bin'), 'truncated');
    await writeFile(path.join(target, 'ro/inside'), 'changed');
    await chmod(path.join(target, 'ro'), 0o555);
    return { repo, entries };
  }

  it('replaces only the requested file and directory', async () => {
    const { repo, entries } = await prepared();
    const before = await snapshotTree(target);
    await restoreTree({ entries: fromArray(entries), source: repo, target, tenantRoot: tenant, paths: ['a/b', 'a.txt'] });
    const after = await snapshotTree(target);
    const backedUp = await snapshotTree(source);
    const pick = (s: typeof after, keep: (p: string) => boolean) => s.filter((e) => keep(e.path));
    const restored = (p: string) => p === 'a.txt' || p === 'a/b' || p.startsWith('a/b/');
    expectSameTree(pick(after, restored), pick(backedUp, restored));
    expect(after.some((e) => e.path === 'a/b/new-file')).toBe(false); // the directory was replaced as a whole
    // everything else as it was (the parent "a" got new entries, so only its mtime moved)
    expectSameTree(
      pick(after, (p) => !restored(p) && p !== 'a'),
      pick(before, (p) => !restored(p) && p !== 'a' && !p.startsWith('a/b/')),
      0n,
    );
    expect(await readFile(path.join(target, 'big.bin'), 'utf8')).toBe('truncated');
    expect(await leftovers(target)).toEqual([]);
    expect(await leftovers(path.join(target, 'a'))).toEqual([]);
  });

  it('creates missing parents with the manifest modes; restores into a read-only directory', async () => {
    const { repo, entries } = await prepared();
    await rm(path.join(target, 'a'), { recursive: true });
    await restoreTree({ entries: fromArray(entries), source: repo, target, tenantRoot: tenant, paths: ['a/b/c/deep.txt', 'ro/inside'] });
    expect(await readFile(path.join(target, 'a/b/c/deep.txt'), 'utf8')).toBe('deep');
    const snap = await snapshotTree(target);
    const src = await snapshotTree(source);
    for (const p of ['a', 'a/b', 'a/b/c', 'a/b/c/deep.txt', 'ro/inside']) {
      const got = snap.find((e) => e.path === p);
      const want = src.find((e) => e.path === p);
      expect(got?.mode, p).toBe(want?.mode);
      if (p !== 'ro/inside') expect(got?.mtimeNs === want?.mtimeNs || p.endsWith('.txt') || Number((got?.mtimeNs ?? 0n) - (want?.mtimeNs ?? 0n)) < 1000).toBe(true);
    }
    expect(await readFile(path.join(target, 'ro/inside'), 'utf8')).toBe('read-only dir');
    expect(snap.some((e) => e.path === 'a/b/other.txt')).toBe(false); // only what was asked
  });

  it('collapses overlapping paths to the outer one', async () => {
    const { repo, entries } = await prepared();
    await restoreTree({ entries: fromArray(entries), source: repo, target, tenantRoot: tenant, paths: ['a/b/c/deep.txt', 'a/b', 'a/b/c', 'a/b'] });
    expect(await readFile(path.join(target, 'a/b/other.txt'), 'utf8')).toBe('other in backup');
    await expect(readFile(path.join(target, 'a/b/new-file'))).rejects.toThrow(/ENOENT/);
  });

  it('restores a symlink path and the root-level entries', async () => {
    const { repo, entries } = await prepared();
    await rm(path.join(target, 'link-to-b'));
    await rm(path.join(target, 'dangling'));
    await writeFile(path.join(target, 'dangling'), 'a file where a link was');
    await restoreTree({ entries: fromArray(entries), source: repo, target, tenantRoot: tenant, paths: ['link-to-b', 'dangling', 'empty'] });
    const snap = await snapshotTree(target);
    expect(snap.find((e) => e.path === 'link-to-b')).toMatchObject({ type: 'symlink', link: 'a/b' });
    expect(snap.find((e) => e.path === 'dangling')).toMatchObject({ type: 'symlink', link: 'nowhere/at/all' });
  });

  it('a file path may replace a directory and the other way round', async () => {
    const { repo, entries } = await prepared();
    await rm(path.join(target, 'a.txt'));
    await mkdir(path.join(target, 'a.txt'));
    await writeFile(path.join(target, 'a.txt/x'), 'x');
    await chmod(path.join(target, 'ro'), 0o755);
    await rm(path.join(target, 'ro'), { recursive: true });
    await writeFile(path.join(target, 'ro'), 'a file now');
    await restoreTree({ entries: fromArray(entries), source: repo, target, tenantRoot: tenant, paths: ['a.txt', 'ro'] });
    expect(await readFile(path.join(target, 'a.txt'), 'utf8')).toBe('a dot txt');
    expect(await readFile(path.join(target, 'ro/inside'), 'utf8')).toBe('read-only dir');
  });

  it('rejects bad and unknown paths with typed errors, touching nothing', async () => {
    const { repo, entries } = await prepared();
    const before = await snapshotTree(target);
    for (const bad of ['../x', '/etc/passwd', 'a/../b', '', 'a//b']) {
      const err = await restoreTree({ entries: fromArray(entries), source: repo, target, tenantRoot: tenant, paths: [bad] }).catch((e: unknown) => e);
      expect(err, bad).toBeInstanceOf(PathEscapeError);
    }
    for (const unknown of [['nope'], ['a.txt', 'a/b/missing'], ['zzz-after-everything'], ['a.txt/below-a-file']]) {
      const err = await restoreTree({ entries: fromArray(entries), source: repo, target, tenantRoot: tenant, paths: unknown }).catch((e: unknown) => e);
      expect(err, unknown.join()).toBeInstanceOf(PathNotInBackupError);
      expect((err as PathNotInBackupError).relPath).toBe(unknown[unknown.length - 1]);
    }
    await expect(restoreTree({ entries: fromArray(entries), source: repo, target, tenantRoot: tenant, paths: [] })).rejects.toThrow(PathEscapeError);
    expectSameTree(await snapshotTree(target), before, 0n);
    expect(await leftovers(target)).toEqual([]);
  });

  it('verifies everything before the first swap: a bad chunk in a later path changes nothing', async () => {
    const { repo, entries } = await prepared();
    await rm(path.join(target, 'a/b'), { recursive: true });
    const before = await snapshotTree(target);
    const big = entries.find((e) => e.path === 'big.bin') as DirEntry;
    repo.corrupt(big.chunks?.[3] as string);
    const err = await restoreTree({ entries: fromArray(entries), source: repo, target, tenantRoot: tenant, paths: ['a.txt', 'a/b/c', 'big.bin'] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    // "a/b", created for a/b/c, was removed again; only the mtime of "a" tells it was there
    const notA = (snap: Awaited<ReturnType<typeof snapshotTree>>) => snap.map((e) => (e.path === 'a' ? { ...e, mtimeNs: 0n } : e));
    expectSameTree(notA(await snapshotTree(target)), notA(before), 0n);
    expect(await leftovers(target)).toEqual([]);
    expect(await leftovers(path.join(target, 'a'))).toEqual([]);
  });

  it('refuses to write below something that is not a directory in the live tree', async () => {
    const { repo, entries } = await prepared();
    await chmod(path.join(target, 'ro'), 0o755);
    await rm(path.join(target, 'ro'), { recursive: true });
    await symlink('../src', path.join(target, 'ro'));
    const err = await restoreTree({ entries: fromArray(entries), source: repo, target, tenantRoot: tenant, paths: ['ro/inside'] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ComponentError);
    expect((err as Error).message).toMatch(/"ro".*not a directory/);
    expect(await readFile(path.join(source, 'ro/inside'), 'utf8')).toBe('read-only dir');
  });
});

describe('round trip property', () => {
  type Node = { kind: 'file'; data: Uint8Array; mode: number } | { kind: 'dir'; children: Record<string, Node>; mode: number } | { kind: 'link'; target: string };
  const name = fc
    .string({ minLength: 1, maxLength: 12, unit: fc.constantFrom(...'abcXYZ019._- ~éü文😀'.split(/(?:)/u)) })
    .filter((s) => s !== '.' && s !== '..' && Buffer.byteLength(s) <= 255);
  const fileArb = fc.record({ kind: fc.constant('file' as const), data: fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ minLength: 65530, maxLength: 140000 })), mode: fc.constantFrom(0o644, 0o600, 0o755, 0o400, 0o000) });
  const linkArb = fc.record({ kind: fc.constant('link' as const), target: fc.constantFrom('x', '../y', 'sub/dir', '.', '..') });
  const { tree } = fc.letrec<{ tree: Node; node: Node }>((tie) => ({
    tree: fc.record({ kind: fc.constant('dir' as const), children: fc.dictionary(name, tie('node'), { maxKeys: 5 }), mode: fc.constantFrom(0o755, 0o700, 0o555, 0o1777) }),
    node: fc.oneof({ depthSize: 'small', withCrossShrink: true }, fileArb, linkArb, tie('tree')),
  }));

  async function build(dir: string, node: Extract<Node, { kind: 'dir' }>): Promise<void> {
    for (const [n, child] of Object.entries(node.children)) {
      const p = path.join(dir, n);
      if (child.kind === 'file') {
        await writeFile(p, child.data);
        await chmod(p, child.mode);
      } else if (child.kind === 'link') {
        await symlink(child.target, p);
      } else {
        await mkdir(p);
        await build(p, child);
        await chmod(p, child.mode);
      }
    }
  }

  it('random trees survive backup -> manifest bytes -> restore', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(tree, async (t) => {
        const dir = path.join(tenant, `case${run++}`);
        if (process.env.DEBUG_PROP) console.log(run, JSON.stringify(t, (_k, v) => (v instanceof Uint8Array ? v.length : v)));
        const src = path.join(dir, 'src');
        const dst = path.join(dir, 'dst');
        await mkdir(src, { recursive: true });
        if (t.kind !== 'dir') return;
        await build(src, t);
        const repo = new MemoryRepo();
        const manifest: Buffer[] = [];
        for await (const b of encodeManifest({ format: 'bk-manifest/v1', type: 'directory' }, backupTree({ root: src, tenantRoot: tenant, sink: repo }))) manifest.push(b);
        await restoreTree({ entries: decodeManifest(fromArray(manifest)), source: repo, target: dst, tenantRoot: tenant });
        expectSameTree(await snapshotTree(dst), await snapshotTree(src));
        // and the restored tree backs up to the same manifest, reading nothing new
        const again = await collectAll(backupTree({ root: dst, tenantRoot: tenant, sink: repo }));
        const first = await collectAll(decodeManifest(fromArray(manifest)));
        expect(again.map(({ ctime_ns: _c, ino: _i, mtime_ns: _m, ...rest }) => rest)).toEqual(first.map(({ ctime_ns: _c, ino: _i, mtime_ns: _m, ...rest }) => rest));
        await chmod(dir, 0o755);
        await rm(dir, { recursive: true, force: true });
      }),
      { numRuns: 30 },
    );
  }, 30_000);
});
