import { realpath } from 'node:fs/promises';
import path from 'node:path';
import { ComponentError } from './types.js';

export class PathEscapeError extends ComponentError {
  override name = 'PathEscapeError';
}

export class PathNotFoundError extends ComponentError {
  override name = 'PathNotFoundError';
  constructor(readonly relPath: string) {
    super(`path not found: ${relPath}`);
  }
}

const NOT_THERE = new Set(['ENOENT', 'ENOTDIR', 'ELOOP']);

export function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}

/**
 * Lexical validation of a directory component path, usable before the path exists (API
 * validation). Returns the problem, or null when the path is acceptable.
 */
export function checkRelativePath(rel: string): string | null {
  if (typeof rel !== 'string' || rel.length === 0) return 'path must not be empty';
  if (rel.length > 4096) return 'path is too long';
  if (rel.includes('\0')) return 'path must not contain NUL bytes';
  if (path.posix.isAbsolute(rel)) return 'path must be relative to DATA_ROOT, not absolute';
  for (const segment of rel.split('/')) {
    if (segment === '..') return "path must not contain '..' segments";
    if (segment === '.') return "path must not contain '.' segments";
    if (segment === '') return "path must not contain empty segments ('//' or a trailing '/')";
  }
  return null;
}

/** True when `candidate` is `root` or below it (both absolute and normalized). */
export function isWithin(root: string, candidate: string): boolean {
  const rel = path.relative(root, candidate);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel));
}

/**
 * Realpath of the target of `rel` under `dataRoot`, which must lie strictly inside
 * realpath(dataRoot) even after following symlinks.
 * Throws PathEscapeError for a bad or escaping path, PathNotFoundError when it does not exist.
 */
export async function resolveInsideRoot(dataRoot: string, rel: string): Promise<string> {
  const problem = checkRelativePath(rel);
  if (problem) throw new PathEscapeError(problem);
  const rootReal = await realpath(dataRoot);
  let real: string;
  try {
    real = await realpath(path.join(rootReal, rel));
  } catch (err) {
    if (NOT_THERE.has(errnoCode(err) ?? '')) throw new PathNotFoundError(rel);
    throw err;
  }
  if (real === rootReal || !isWithin(rootReal, real)) {
    throw new PathEscapeError(`path ${rel} resolves outside DATA_ROOT`);
  }
  return real;
}
