import { chmod, lstat, mkdir, mkdtemp, readdir, realpath, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkDataDir, checkRelativePath, NO_SUCH_DIRECTORY, PathEscapeError, PathNotFoundError, resolveInsideRoot, tenantRoot, tenantRootProblem } from './paths.js';

let base: string;
let dataRoot: string;
let outside: string;

beforeAll(async () => {
  base = await realpath(await mkdtemp(path.join(tmpdir(), 'paths-test-')));
  dataRoot = path.join(base, 'data');
  outside = path.join(base, 'outside');
  await mkdir(path.join(dataRoot, 'apps/web/uploads'), { recursive: true });
  await mkdir(path.join(dataRoot, 'shared'), { recursive: true });
  await mkdir(outside, { recursive: true });
  await symlink('../outside', path.join(dataRoot, 'escape-relative'));
  await symlink(outside, path.join(dataRoot, 'escape-absolute'));
  await symlink('apps/web', path.join(dataRoot, 'web-link'));
  await symlink('.', path.join(dataRoot, 'self'));
  await symlink('escape-relative', path.join(dataRoot, 'chain'));
});

afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

describe('checkRelativePath', () => {
  it.each([
    ['apps/web/uploads', null],
    ['uploads', null],
    ['with space/and-ünicode', null],
    ['', 'path must not be empty'],
    ['/etc', "path must be relative to the tenant's folder, not absolute"],
    ['../x', "path must not contain '..' segments"],
    ['a/../../x', "path must not contain '..' segments"],
    ['a/./b', "path must not contain '.' segments"],
    ['.', "path must not contain '.' segments"],
    ['a//b', "path must not contain empty segments ('//' or a trailing '/')"],
    ['a/', "path must not contain empty segments ('//' or a trailing '/')"],
  ])('%j -> %j', (rel, expected) => {
    expect(checkRelativePath(rel)).toBe(expected);
  });

  it('accepts names that merely start with dots', () => {
    expect(checkRelativePath('..hidden/x')).toBeNull();
  });
});

describe('resolveInsideRoot', () => {
  it('returns the realpath of a directory inside', async () => {
    expect(await resolveInsideRoot(dataRoot, 'apps/web/uploads')).toBe(path.join(dataRoot, 'apps/web/uploads'));
  });

  it('follows a symlink that stays inside', async () => {
    expect(await resolveInsideRoot(dataRoot, 'web-link/uploads')).toBe(path.join(dataRoot, 'apps/web/uploads'));
  });

  it.each(['../outside', '/etc', 'apps/../..', ''])('refuses %j lexically', async (rel) => {
    await expect(resolveInsideRoot(dataRoot, rel)).rejects.toBeInstanceOf(PathEscapeError);
  });

  it.each(['escape-relative', 'escape-absolute', 'chain', 'escape-relative/sub'])('refuses the escaping symlink path %j', async (rel) => {
    await mkdir(path.join(outside, 'sub'), { recursive: true });
    const err = await resolveInsideRoot(dataRoot, rel).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PathEscapeError);
    expect((err as Error).message).toBe(`${NO_SUCH_DIRECTORY}: ${rel}`);
  });

  it('refuses a path that is DATA_ROOT itself', async () => {
    await expect(resolveInsideRoot(dataRoot, 'self')).rejects.toBeInstanceOf(PathEscapeError);
  });

  it('reports a missing path as not found', async () => {
    await expect(resolveInsideRoot(dataRoot, 'apps/nope')).rejects.toBeInstanceOf(PathNotFoundError);
  });
});

describe('a foreign path reads exactly like a missing one', () => {
  it('gives one message whether the symlink target exists outside or not', async () => {
    await symlink(path.join(outside, 'sub'), path.join(dataRoot, 'to-existing'));
    await symlink(path.join(outside, 'no-such'), path.join(dataRoot, 'to-missing'));
    const messages = await Promise.all(['to-existing', 'to-missing'].map((rel) => resolveInsideRoot(dataRoot, rel).catch((e: Error) => e.message.replace(rel, '<rel>'))));
    expect(messages).toEqual([`${NO_SUCH_DIRECTORY}: <rel>`, `${NO_SUCH_DIRECTORY}: <rel>`]);
    await expect(resolveInsideRoot(dataRoot, 'apps/nope')).rejects.toThrow(`${NO_SUCH_DIRECTORY}: apps/nope`);
  });

  it.runIf(process.getuid?.() !== 0)('names no server path when a directory on the way cannot be read', async () => {
    const locked = path.join(dataRoot, 'locked');
    await mkdir(path.join(locked, 'inner'), { recursive: true });
    await chmod(locked, 0o000);
    try {
      const err = await resolveInsideRoot(dataRoot, 'locked/inner').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PathNotFoundError);
      expect((err as Error).message).not.toContain(base);
    } finally {
      await chmod(locked, 0o755);
    }
  });
});

describe('checkDataDir', () => {
  it.each(['acme', 'a', '0f8c2b4e-9d1a-4c53-8e7f-2b6a1d9c3e40', 'team_1.files', 'x'.repeat(64)])('accepts %j', (d) => {
    expect(checkDataDir(d)).toBeNull();
  });
  it.each(['', '.', '..', '.hidden', '-rf', 'a/b', '/abs', 'a\\b', 'a\0b', 'Acme', 'with space', 'x'.repeat(65), 'ü'])('refuses %j', (d) => {
    expect(checkDataDir(d)).toMatch(/folder name/);
  });
});

describe('tenantRoot', () => {
  let root: string;
  beforeAll(async () => {
    root = path.join(base, 'tenants-root');
    await mkdir(path.join(root, 'a-tenant', 'files'), { recursive: true });
    await mkdir(path.join(base, 'elsewhere'), { recursive: true });
    await symlink(path.join(base, 'elsewhere'), path.join(root, 'escapes'));
    await symlink('a-tenant', path.join(root, 'alias')); // inside DATA_ROOT, but another tenant's folder
    await writeFile(path.join(root, 'plain-file'), 'x');
  });

  it('makes a missing folder (and DATA_ROOT) and returns its real path', async () => {
    const fresh = path.join(base, 'not-yet', 'data');
    const got = await tenantRoot(fresh, 'new-tenant');
    expect(got).toBe(path.join(fresh, 'new-tenant'));
    expect((await stat(got)).isDirectory()).toBe(true);
    expect(await tenantRoot(fresh, 'new-tenant')).toBe(got); // idempotent
  });

  it('returns an existing folder untouched', async () => {
    expect(await tenantRoot(root, 'a-tenant')).toBe(path.join(root, 'a-tenant'));
    expect(await readdir(path.join(root, 'a-tenant'))).toEqual(['files']);
  });

  it('resolves through a DATA_ROOT that is itself a symlink', async () => {
    await symlink(root, path.join(base, 'root-link'));
    expect(await tenantRoot(path.join(base, 'root-link'), 'a-tenant')).toBe(path.join(root, 'a-tenant'));
  });

  it.each(['escapes', 'alias', 'plain-file'])('refuses %j: a symlink out, a symlink to another folder, not a directory', async (d) => {
    const err = await tenantRoot(root, d).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PathEscapeError);
    expect((err as Error).message).not.toContain(base);
    expect((await lstat(path.join(root, d))).isDirectory()).toBe(false); // nothing made in its place
  });

  it.each(['..', '.', '../elsewhere', 'a/b', ''])('refuses the folder name %j without touching the disk', async (d) => {
    await expect(tenantRoot(root, d)).rejects.toBeInstanceOf(PathEscapeError);
  });

  it('tenantRootProblem: fine for a new or existing folder, a problem for anything else', async () => {
    expect(await tenantRootProblem(root, 'a-tenant')).toBeNull();
    expect(await tenantRootProblem(root, 'brand-new')).toBeNull();
    await expect(lstat(path.join(root, 'brand-new'))).rejects.toThrow(); // only looked
    for (const d of ['escapes', 'alias', 'plain-file', '..', 'A']) expect(await tenantRootProblem(root, d), d).not.toBeNull();
  });
});
