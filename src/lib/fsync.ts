import { constants } from 'node:fs';
import { open, readdir } from 'node:fs/promises';
import path from 'node:path';

/** Makes a directory's entries (a rename, a new file) durable. */
export async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export interface TreeSyncResult {
  files: number;
  directories: number;
  /** Entries that could not be opened or flushed (a mode 0000 file when not root, a vanished entry). */
  failed: number;
}

const FILE_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
const DIR_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_DIRECTORY;

async function fsyncPath(p: string, flags: number, dataOnly = false): Promise<boolean> {
  let handle;
  try {
    handle = await open(p, flags);
    await (dataOnly ? handle.datasync() : handle.sync());
    return true;
  } catch {
    return false;
  } finally {
    await handle?.close().catch(() => {});
  }
}

/**
 * fsync(2)s every regular file and directory of a tree, a few at a time, never following a
 * symlink. Unlike syncfs(2) (`sync -f`) it waits only for this tree's data, not for every dirty
 * page other writers left on the same file system (other restores, PostgreSQL...). Files first,
 * then directories, so once it returns with `failed === 0` the whole tree is on disk.
 */
export async function fsyncTree(root: string, concurrency = 8): Promise<TreeSyncResult> {
  const files: string[] = [];
  const directories: string[] = [];
  let failed = 0;
  const walk = async (dir: string): Promise<void> => {
    directories.push(dir);
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      failed++;
      return;
    }
    for (const entry of entries) {
      const p = path.join(dir, entry.name);
      if (entry.isDirectory()) await walk(p);
      else if (entry.isFile()) files.push(p);
    }
  };
  await walk(root);
  const flushAll = async (paths: string[], flags: number) => {
    let next = 0;
    const worker = async () => {
      while (next < paths.length) if (!(await fsyncPath(paths[next++] as string, flags))) failed++;
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, paths.length) }, worker));
  };
  await flushAll(files, FILE_FLAGS);
  await flushAll(directories, DIR_FLAGS);
  return { files: files.length, directories: directories.length, failed };
}

/** fdatasync(2) of one regular file, never following a symlink; false when it could not be done. */
export function fdatasyncFile(p: string): Promise<boolean> {
  return fsyncPath(p, FILE_FLAGS, true);
}
