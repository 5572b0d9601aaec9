import { execFile } from 'node:child_process';
import { realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { pipeline, Transform, type Readable, type TransformCallback } from 'node:stream';
import { createParallelGzip } from './parallel-gzip.js';
import { checkRelativePath, errnoCode, NO_SUCH_DIRECTORY, PathEscapeError, PathNotFoundError, resolveInsideRoot } from './paths.js';
import { symlinkEscapes } from './symlinks.js';
import { childEnv, lazyReadable, spawnOutput } from './process.js';
import { extractTarGz } from './tar-extract.js';
import { writeBehind } from './write-behind.js';
import { TarHeaderScanner, type ScannedEntry } from './tar-scan.js';
import { ComponentError, type BackupContext, type ComponentDriver, type RestoreContext } from './types.js';
import { makeRestoreTemp, swapIntoPlace } from './restore-swap.js';
import { hashArtifact } from './verify.js';
import { fsyncTree } from '../lib/fsync.js';
import { removeTree } from '../lib/remove-tree.js';

export interface DirectoryConfig {
  /** Relative to the tenant's folder, DATA_ROOT/<tenant dir>, which the worker passes as `ctx.dataRoot`. */
  path: string;
}

/** Turns low-level failures into messages fit for the tenant (no server paths). */
function userFacing(err: unknown, what: string): Error {
  if (err instanceof ComponentError || (err instanceof Error && err.name === 'AbortError')) return err;
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
 * Passes the tar stream through unchanged while reading its headers; a symlink that points outside
 * the tenant's folder fails the stream before the chunk holding it goes any further.
 */
function symlinkGuard(root: string, dataRootReal: string): Transform {
  const symlinks: ScannedEntry[] = [];
  const scanner = new TarHeaderScanner((entry) => {
    if (entry.type === '2') symlinks.push(entry);
  });
  return new Transform({
    async transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
      try {
        scanner.write(chunk);
        for (let link = symlinks.shift(); link; link = symlinks.shift()) {
          const rel = path.posix.normalize(link.path).replace(/^\.\/?/, '');
          if (await symlinkEscapes(dataRootReal, path.join(root, rel), link.linkpath)) {
            throw new ComponentError(`symbolic link ${rel} points outside the tenant's folder`);
          }
        }
        callback(null, chunk);
      } catch (err) {
        callback(userFacing(err, 'directory backup'));
      }
    },
    flush(callback: TransformCallback) {
      callback(scanner.ended ? null : new ComponentError('directory backup failed: tar output ended early'));
    },
  });
}

/**
 * GNU tar does the walk: node-tar's pack took ~10x longer on 20k small files, enough to lose the
 * benchmark against `tar -cz`. Its output is streamed through our symlink guard and the parallel
 * gzip. --sort=name makes archives of an unchanged tree identical. Any non-zero tar exit fails
 * the backup, including 1 ("file changed as we read it"): the archive would not be a consistent copy.
 */
async function startBackup(rel: string, ctx: BackupContext): Promise<Readable> {
  const root = await resolveSourceDirectory(rel, ctx.dataRoot);
  const dataRootReal = await realpath(ctx.dataRoot);
  const tar = spawnOutput(
    'tar',
    ['--create', '--file=-', '--format=gnu', '--numeric-owner', '--sort=name', `--directory=${root}`, '.'],
    { label: 'tar', env: childEnv() },
  );
  const gzip = createParallelGzip();
  // Any stage failing destroys the last one with that error, which is what the consumer sees.
  pipeline(tar, symlinkGuard(root, dataRootReal), gzip, () => {});
  return gzip;
}

/**
 * Makes the freshly extracted tree durable before it replaces the old one: an fsync per file and
 * directory of the tree, so the restore waits for its own data only. Should some entry not open
 * (a mode 0000 file when not running as root), one syncfs(2) via coreutils covers it instead.
 */
async function syncTree(dir: string): Promise<void> {
  const { failed } = await fsyncTree(dir);
  if (failed > 0) await promisify(execFile)('sync', ['--file-system', dir], { env: childEnv() }).catch(() => {});
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

async function restoreDirectory(rel: string, artifact: Readable, ctx: RestoreContext): Promise<void> {
  const problem = checkRelativePath(rel);
  if (problem) {
    artifact.destroy();
    throw new PathEscapeError(problem);
  }
  let temp: string | undefined;
  try {
    const dataRootReal = await realpath(ctx.dataRoot);
    const { target } = await resolveRestoreTarget(rel, ctx.dataRoot);
    temp = await makeRestoreTemp(target);
    const flusher = writeBehind(temp);
    // What is checked is exactly what tar was fed, since both happen on this one stream.
    const hashed = hashArtifact(artifact, ctx.verify);
    try {
      await extractTarGz(hashed.stream, {
        dest: temp,
        finalRoot: target,
        dataRootReal,
        onFile: flusher.file,
        ...(ctx.signal ? { signal: ctx.signal } : {}),
      });
    } finally {
      await flusher.stop();
    }
    await syncTree(temp);
    ctx.signal?.throwIfAborted();
    await hashed.check(); // the last point where the target is untouched
    const staged = temp;
    temp = undefined;
    await swapIntoPlace(staged, target);
  } catch (err) {
    artifact.destroy();
    if (temp) await removeTree(temp);
    throw userFacing(err, `restore of ${rel}`);
  }
}

export const directoryDriver: ComponentDriver<DirectoryConfig> = {
  type: 'directory',
  artifactExtension: 'tar.gz',
  backup(config, ctx) {
    return lazyReadable(async () => {
      try {
        return await startBackup(config.path, ctx);
      } catch (err) {
        throw userFacing(err, 'directory backup');
      }
    }, ctx.signal);
  },
  restore(config, artifact, ctx) {
    return restoreDirectory(config.path, artifact, ctx);
  },
};
