import { chmod, lstat, readdir, rm } from 'node:fs/promises';
import path from 'node:path';

const RM = { recursive: true, force: true, maxRetries: 5, retryDelay: 50 } as const;

/** Gives the owner rwx on every directory of the tree (symlinks are not followed). */
async function openUp(dir: string): Promise<void> {
  const st = await lstat(dir);
  if (!st.isDirectory()) return;
  if ((st.mode & 0o700) !== 0o700) await chmod(dir, (st.mode & 0o7777) | 0o700);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) await openUp(path.join(dir, entry.name));
  }
}

/**
 * Removes a tree this process made or swapped out (a half-extracted restore, the tree a restore
 * replaced), best effort. A restored tree may hold read-only directories (mode 0555), whose
 * entries a non-root owner cannot unlink: those get u+rwx first, then the removal is retried.
 */
export async function removeTree(dir: string): Promise<void> {
  try {
    await rm(dir, RM);
    return;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EPERM') return;
  }
  await openUp(dir).catch(() => {});
  await rm(dir, RM).catch(() => {});
}
