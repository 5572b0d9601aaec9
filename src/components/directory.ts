import { realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { checkRelativePath, errnoCode, NO_SUCH_DIRECTORY, PathEscapeError, PathNotFoundError, resolveInsideRoot } from './paths.js';
import { ComponentError, type ComponentBackupContext, type ComponentDriver, type ComponentSnapshot, type RestoreContext } from './types.js';
import { decodeManifest, encodeManifest, MANIFEST_FORMAT } from '../repo/manifest.js';
import { backupTree } from '../repo/tree-backup.js';
import { restoreTree } from '../repo/tree-restore.js';
import { exportTree } from '../repo/tree-export.js';
import { IntegrityError, type DirEntry } from '../repo/types.js';

export interface DirectoryConfig {
  /** Relative to the tenant's folder, DATA_ROOT/<tenant dir>, which the worker passes as `ctx.dataRoot`. */
  path: string;
}

/** Turns low-level failures into messages fit for the tenant (no server paths). */
function userFacing(err: unknown, what: string): Error {
  if (err instanceof ComponentError || err instanceof IntegrityError || (err instanceof Error && (err.name === 'AbortError' || err.name === 'PathNotInBackupError'))) return err;
  if (err instanceof PathEscapeError) return err;
  const code = errnoCode(err);
  if (code && /^E[A-Z]+$/.test(code)) return new ComponentError(`${what} failed: ${code}`);
  return new ComponentError(`${what} failed: ${err instanceof Error ? err.message : String(err)}`);
}

async function resolveSourceDirectory(rel: string, dataRoot: string): Promise<string> {
  let root: string;
  try {
    root = await resolveInsideRoot(dataRoot, rel);
  } catch (err) {
    if (err instanceof PathNotFoundError) throw new ComponentError(`${NO_SUCH_DIRECTORY}: ${rel}`);
    throw err;
  }
  if (!(await stat(root)).isDirectory()) throw new ComponentError(`not a directory: ${rel}`);
  return root;
}

/**
 * Walks the tree (repo/tree-backup.ts): files go through the sink, unchanged ones (same size,
 * mtime, ctime, inode as in the previous backup) are not read at all, and the manifest lists
 * every entry in path order. A symlink that leads outside the tenant's folder fails the backup.
 */
function backupDirectory(rel: string, ctx: ComponentBackupContext): ComponentSnapshot {
  let logical = 0;
  async function* entries(): AsyncGenerator<DirEntry> {
    let root: string;
    let tenantRoot: string;
    try {
      root = await resolveSourceDirectory(rel, ctx.dataRoot);
      tenantRoot = await realpath(ctx.dataRoot);
    } catch (err) {
      throw userFacing(err, 'directory backup');
    }
    try {
      for await (const e of backupTree({
        root,
        tenantRoot,
        sink: ctx.sink,
        ...(ctx.previous && { previous: decodeManifest(ctx.previous()) }),
        ...(ctx.signal && { signal: ctx.signal }),
        ...(ctx.onProgress && { onProgress: ctx.onProgress }),
      })) {
        if (e.type === 'file') logical += e.size;
        yield e;
      }
    } catch (err) {
      throw userFacing(err, 'directory backup');
    }
  }
  return { manifest: encodeManifest({ format: MANIFEST_FORMAT, type: 'directory' }, entries()), logicalBytes: () => logical };
}

/** The real path the restore must replace, and whether something is there now. */
async function resolveRestoreTarget(rel: string, dataRoot: string): Promise<{ target: string; exists: boolean }> {
  try {
    const target = await resolveInsideRoot(dataRoot, rel);
    if (!(await stat(target)).isDirectory()) throw new ComponentError(`not a directory: ${rel}`);
    return { target, exists: true };
  } catch (err) {
    if (!(err instanceof PathNotFoundError)) throw err;
  }
  const parentRel = path.posix.dirname(rel);
  let parent: string;
  try {
    parent = parentRel === '.' ? await realpath(dataRoot) : await resolveInsideRoot(dataRoot, parentRel);
  } catch (err) {
    if (err instanceof PathNotFoundError) throw new ComponentError(`${NO_SUCH_DIRECTORY}: ${parentRel}`);
    throw err;
  }
  return { target: path.join(parent, path.posix.basename(rel)), exists: false };
}

/**
 * Materializes the snapshot beside the target (or beside each of `paths`), every chunk verified,
 * makes it durable and swaps it in atomically (repo/tree-restore.ts); on any failure the target
 * is untouched.
 */
async function restoreDirectory(rel: string, ctx: RestoreContext): Promise<void> {
  const problem = checkRelativePath(rel);
  if (problem) throw new PathEscapeError(problem);
  try {
    const tenantRoot = await realpath(ctx.dataRoot);
    const { target } = await resolveRestoreTarget(rel, ctx.dataRoot);
    await restoreTree({
      entries: decodeManifest(ctx.manifest),
      source: ctx.source,
      target,
      tenantRoot,
      ...(ctx.paths && { paths: ctx.paths }),
      ...(ctx.signal && { signal: ctx.signal }),
    });
  } catch (err) {
    throw userFacing(err, `restore of ${rel}`);
  }
}

export const directoryDriver: ComponentDriver<DirectoryConfig> = {
  type: 'directory',
  archive: { extension: 'tar', mediaType: 'application/x-tar' },
  backup(config, ctx) {
    return backupDirectory(config.path, ctx);
  },
  restore(config, ctx) {
    return restoreDirectory(config.path, ctx);
  },
  async exportArchive(manifest, source) {
    return exportTree(decodeManifest(manifest), source);
  },
};
