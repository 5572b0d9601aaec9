import { lstat, mkdir, realpath } from 'node:fs/promises';
import path from 'node:path';
import { ComponentError } from './types.js';

export class PathEscapeError extends ComponentError {
  override name = 'PathEscapeError';
}

/**
 * What a tenant is told about a path that is not a directory of its own folder: missing, or
 * leading elsewhere through a symlink. One text for both, so no answer tells whether a path
 * exists outside the tenant's folder.
 */
export const NO_SUCH_DIRECTORY = "no such directory in this tenant's folder";

export class PathNotFoundError extends ComponentError {
  override name = 'PathNotFoundError';
  constructor(readonly relPath: string) {
    super(`${NO_SUCH_DIRECTORY}: ${relPath}`);
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
  if (path.posix.isAbsolute(rel)) return "path must be relative to the tenant's folder, not absolute";
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
 * Realpath of the target of `rel` under `dataRoot` (a tenant's folder), which must lie strictly
 * inside realpath(dataRoot) even after following symlinks.
 * Throws PathEscapeError for a bad or escaping path, PathNotFoundError when it does not exist. An
 * escape says exactly what a missing path says (NO_SUCH_DIRECTORY): a symlink to another tenant's
 * folder must not tell whether its target exists.
 */
export async function resolveInsideRoot(dataRoot: string, rel: string): Promise<string> {
  const problem = checkRelativePath(rel);
  if (problem) throw new PathEscapeError(problem);
  const rootReal = await realpath(dataRoot);
  let real: string;
  try {
    real = await realpath(path.join(rootReal, rel));
  } catch (err) {
    // EACCES and the like too: the message of the error names the absolute path.
    if (NOT_THERE.has(errnoCode(err) ?? '') || errnoCode(err) === 'EACCES') throw new PathNotFoundError(rel);
    throw err;
  }
  if (real === rootReal || !isWithin(rootReal, real)) {
    throw new PathEscapeError(`${NO_SUCH_DIRECTORY}: ${rel}`);
  }
  return real;
}

export const DATA_DIR_PATTERN = /^[a-z0-9_][a-z0-9._-]{0,63}$/;

/**
 * Lexical validation of a tenant's folder name (`data_dir`): one path segment, lower case (no two
 * tenants' folders may clash on a case-insensitive file system), no '.' or '..', no slash, no NUL,
 * no leading dash. The database checks the same pattern (migration 20261202001000_tenant_data_dir).
 * Returns the problem, or null when the name is acceptable.
 */
export function checkDataDir(dataDir: string): string | null {
  if (typeof dataDir !== 'string' || !DATA_DIR_PATTERN.test(dataDir)) {
    return 'must be one folder name of 1 to 64 characters: lower-case letters, digits, "_", "-" and "." (not first, and not "-" first)';
  }
  return null;
}

/**
 * A tenant's folder, DATA_ROOT/<dataDir>: problem with it (null: usable or absent). It must be a
 * real directory right below realpath(DATA_ROOT), not a symlink (which could make two tenants share
 * a tree, or lead out of DATA_ROOT), nor anything else.
 */
export async function tenantRootProblem(dataRoot: string, dataDir: string): Promise<string | null> {
  const lexical = checkDataDir(dataDir);
  if (lexical) return lexical;
  const candidate = path.join(await realpath(dataRoot), dataDir);
  try {
    const st = await lstat(candidate);
    return st.isDirectory() ? null : 'is already taken in DATA_ROOT by something that is not a directory';
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return null;
    throw err;
  }
}

/**
 * The absolute real path of a tenant's folder DATA_ROOT/<dataDir>, created when missing (DATA_ROOT
 * too). Throws PathEscapeError when it is not a real directory right below realpath(DATA_ROOT).
 * Every `directory` component path resolves inside what this returns: the API passes it to
 * prepareComponents, the worker passes it to the drivers as `ctx.dataRoot`.
 */
export async function tenantRoot(dataRoot: string, dataDir: string): Promise<string> {
  const lexical = checkDataDir(dataDir);
  if (lexical) throw new PathEscapeError(`the tenant's folder name ${lexical}`);
  await mkdir(dataRoot, { recursive: true });
  const rootReal = await realpath(dataRoot);
  const candidate = path.join(rootReal, dataDir);
  const unusable = () => new PathEscapeError("the tenant's folder is not usable (not a directory of DATA_ROOT); the platform operator must fix it");
  try {
    await mkdir(candidate);
  } catch (err) {
    if (errnoCode(err) !== 'EEXIST') throw unusable();
  }
  let st;
  try {
    st = await lstat(candidate);
  } catch {
    throw unusable();
  }
  // lstat, not stat: a symlink there is refused even when it leads into DATA_ROOT (another tenant's folder).
  if (!st.isDirectory() || (await realpath(candidate).catch(() => null)) !== candidate) throw unusable();
  return candidate;
}
