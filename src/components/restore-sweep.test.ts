import { mkdir, mkdtemp, readdir, readFile, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { makeRestoreTemp, sweepRestoreLeftovers, swapIntoPlace, type SweepLog } from './restore-swap.js';

// As on a file system without RENAME_EXCHANGE (EINVAL): the swap takes the two-rename path.
vi.mock('../lib/exchange.js', () => ({ exchangePaths: async () => 'unsupported' }));

let base: string;
let root: string; // a tenant's folder
const logged: string[] = [];
const log: SweepLog = { info: (_o, msg) => void logged.push(msg), warn: (_o, msg) => void logged.push(msg) };
const NOW = { graceMs: 0 };

async function tree(dir: string, files: Record<string, string>): Promise<void> {
  for (const [rel, body] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await writeFile(path.join(dir, rel), body);
  }
}

beforeEach(async () => {
  base = await realpath(await mkdtemp(path.join(tmpdir(), 'restore-sweep-')));
  root = path.join(base, 'tenant');
  await mkdir(path.join(root, 'apps'), { recursive: true });
  logged.length = 0;
});
afterEach(() => rm(base, { recursive: true, force: true }));

describe('sweepRestoreLeftovers', () => {
  it('removes the leftovers of interrupted restores beside a target that is in place', async () => {
    await tree(path.join(root, 'apps/site'), { 'index.html': 'live' });
    await tree(path.join(root, 'apps/.site.restore-Ab12Cd'), { 'half.bin': 'partial extract' });
    await tree(path.join(root, 'apps/.site.old-0123456789ab'), { 'index.html': 'replaced tree' });
    const report = await sweepRestoreLeftovers(root, ['apps/site'], log, NOW);
    expect(report).toEqual({ repaired: [], removed: 2, kept: 0 });
    expect(await readdir(path.join(root, 'apps'))).toEqual(['site']);
    expect(await readFile(path.join(root, 'apps/site/index.html'), 'utf8')).toBe('live');
  });

  it('puts the old tree back when a swap was cut between its two renames', async () => {
    // target already moved aside, the new tree not yet moved in
    await tree(path.join(root, 'apps/.site.old-0123456789ab'), { 'index.html': 'the previous tree', 'sub/x': 'x' });
    await tree(path.join(root, 'apps/.site.restore-Ab12Cd'), { 'index.html': 'the restored tree' });
    const report = await sweepRestoreLeftovers(root, ['apps/site'], log, NOW);
    expect(report.repaired).toEqual([path.join(root, 'apps/site')]);
    expect(await readdir(path.join(root, 'apps'))).toEqual(['site']);
    expect(await readFile(path.join(root, 'apps/site/index.html'), 'utf8')).toBe('the previous tree');
    expect(await readFile(path.join(root, 'apps/site/sub/x'), 'utf8')).toBe('x');
  });

  it('removes a half-extracted tree of a restore into a new target, and creates nothing', async () => {
    await tree(path.join(root, 'apps/.new.restore-zzzzzz'), { a: 'a' });
    await sweepRestoreLeftovers(root, ['apps/new'], log, NOW);
    expect(await readdir(path.join(root, 'apps'))).toEqual([]);
  });

  it('keeps a restore tree that was just created (another worker may be extracting into it)', async () => {
    await tree(path.join(root, 'apps/site'), { 'index.html': 'live' });
    await tree(path.join(root, 'apps/.site.restore-Ab12Cd'), { 'a': 'being written' });
    const report = await sweepRestoreLeftovers(root, ['apps/site'], log); // default grace
    expect(report).toEqual({ repaired: [], removed: 0, kept: 1 });
    expect((await readdir(path.join(root, 'apps'))).sort()).toEqual(['.site.restore-Ab12Cd', 'site']);
  });

  it('looks only beside the given targets: not into the trees, not at look-alike names, not out of the root', async () => {
    await tree(path.join(root, 'apps/site'), { 'deep/.x.restore-Ab12Cd/f': 'tenant data that merely looks like a leftover' });
    await tree(path.join(root, 'apps/.site.restore-x.restore-Ab12Cd'), { f: 'leftover of target "site.restore-x"' });
    await tree(path.join(root, 'apps/.site.old-nothex'), { f: 'not a name we make' });
    await tree(path.join(root, 'apps/.other.restore-Ab12Cd'), { f: 'leftover of a target not given' });
    await tree(path.join(base, 'outside/.site.restore-Ab12Cd'), { f: 'outside the root' });
    await symlink(path.join(base, 'outside'), path.join(root, 'escape'));
    await sweepRestoreLeftovers(root, ['apps/site', 'escape/site', '../outside/site', '/abs/site'], log, NOW);
    expect((await readdir(path.join(root, 'apps'))).sort()).toEqual(['.other.restore-Ab12Cd', '.site.old-nothex', '.site.restore-x.restore-Ab12Cd', 'site']);
    expect(await readdir(path.join(root, 'apps/site/deep'))).toEqual(['.x.restore-Ab12Cd']);
    expect(await readdir(path.join(base, 'outside'))).toEqual(['.site.restore-Ab12Cd']);
  });

  it('goes on past a target whose parent is gone', async () => {
    await tree(path.join(root, 'apps/.site.restore-Ab12Cd'), { f: 'x' });
    const report = await sweepRestoreLeftovers(root, ['gone/away', 'apps/site'], log, NOW);
    expect(report.removed).toBe(1);
  });
});

describe('swapIntoPlace where the file system cannot exchange', () => {
  it('falls back to two renames through an .old- sibling and leaves nothing behind', async () => {
    const target = path.join(root, 'apps/site');
    await tree(target, { 'index.html': 'old' });
    const temp = await makeRestoreTemp(target);
    await writeFile(path.join(temp, 'index.html'), 'new');
    await swapIntoPlace(temp, target);
    expect(await readFile(path.join(target, 'index.html'), 'utf8')).toBe('new');
    expect(await readdir(path.join(root, 'apps'))).toEqual(['site']);
  });
});
