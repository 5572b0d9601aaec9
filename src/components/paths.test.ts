import { mkdir, mkdtemp, realpath, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkRelativePath, PathEscapeError, PathNotFoundError, resolveInsideRoot } from './paths.js';

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
    ['/etc', 'path must be relative to DATA_ROOT, not absolute'],
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
    expect((err as Error).message).toBe(`path ${rel} resolves outside DATA_ROOT`);
  });

  it('refuses a path that is DATA_ROOT itself', async () => {
    await expect(resolveInsideRoot(dataRoot, 'self')).rejects.toBeInstanceOf(PathEscapeError);
  });

  it('reports a missing path as not found', async () => {
    await expect(resolveInsideRoot(dataRoot, 'apps/nope')).rejects.toBeInstanceOf(PathNotFoundError);
  });
});
