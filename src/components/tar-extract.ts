import { chmod, lchown, lutimes, mkdir, rm, symlink, utimes } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { createGunzip } from 'node:zlib';
import { Unpack, type ReadEntry } from 'tar';
import { isWithin, realpathOfNearestExisting, symlinkLexicalTarget } from './paths.js';
import { abortError } from './process.js';
import { ComponentError } from './types.js';

export interface ExtractOptions {
  /** Empty directory the archive is unpacked into. */
  dest: string;
  /** Where `dest` will live once swapped into place; symlinks are judged from there. */
  finalRoot: string;
  /** realpath(DATA_ROOT): no symlink may point outside it. */
  dataRootReal: string;
  signal?: AbortSignal;
}

interface DeferredSymlink {
  rel: string;
  target: string;
  mtime: Date | undefined;
  uid: number | undefined;
  gid: number | undefined;
}

interface DirectoryMeta {
  rel: string;
  mode: number | undefined;
  mtime: Date | undefined;
  atime: Date | undefined;
}

const FILE_TYPES = new Set(['File', 'OldFile', 'ContiguousFile']);
const DIRECTORY_TYPES = new Set(['Directory', 'GNUDumpDir']);
const isRoot = process.getuid?.() === 0;

function currentUmask(): number {
  try {
    return process.umask();
  } catch {
    return 0o777; // not readable in worker threads: then fix every mode explicitly
  }
}

/** Normalizes an archive path to a relative posix path ('' for the root), or explains why it is refused. */
function normalizeEntryPath(p: string): { rel: string } | { problem: string } {
  if (p.includes('\0')) return { problem: 'contains a NUL byte' };
  if (p.startsWith('/') || /^[a-zA-Z]:/.test(p)) return { problem: 'is absolute' };
  const parts = p.split('/').filter((s) => s !== '' && s !== '.');
  if (parts.includes('..')) return { problem: "contains '..'" };
  return { rel: parts.join('/') };
}

function depth(rel: string): number {
  return rel === '' ? 0 : rel.split('/').length;
}

/**
 * Unpacks a tar.gz into an empty directory with node-tar (preservePaths off, strict), after our own
 * stricter vetting of every entry: nothing absolute or with '..', hard links only to entries of
 * the archive, and symlinks created LAST (deepest first, never replacing anything), so no entry
 * can ever be written through a symlink. Directory modes and mtimes are applied at the very end,
 * because creating children changes them.
 */
export async function extractTarGz(artifact: Readable, opts: ExtractOptions): Promise<void> {
  const symlinks = new Map<string, DeferredSymlink>();
  const directories: DirectoryMeta[] = [];
  const modeFixes: { rel: string; mode: number }[] = [];
  // Modes the process umask would strip at creation, and setuid/setgid bits that chown clears.
  const umask = currentUmask();
  let rejection: Error | undefined;

  const underSymlink = (rel: string) => {
    for (let p = path.posix.dirname(rel); p !== '.' && p !== ''; p = path.posix.dirname(p)) {
      if (symlinks.has(p)) return true;
    }
    return false;
  };

  const unpack = new Unpack({
    cwd: opts.dest,
    strict: true,
    preservePaths: false,
    // Our artifacts are checksum-verified before restore; a tree of zero-filled files legitimately compresses > 1000:1.
    maxDecompressionRatio: Infinity,
    filter: (_p, raw) => {
      if (rejection) return false;
      const entry = raw as ReadEntry;
      const refuse = (why: string) => {
        rejection = new ComponentError(`archive entry ${JSON.stringify(entry.path)} refused: ${why}`);
        unpack.abort(rejection);
        return false;
      };
      const norm = normalizeEntryPath(entry.path);
      if ('problem' in norm) return refuse(`path ${norm.problem}`);
      const { rel } = norm;
      if (symlinks.has(rel) || underSymlink(rel)) return refuse('path goes through a symbolic link');
      if (DIRECTORY_TYPES.has(entry.type)) {
        directories.push({ rel, mode: entry.mode, mtime: entry.mtime, atime: entry.atime });
        return true;
      }
      if (rel === '') return refuse('only a directory may stand for the root');
      if (FILE_TYPES.has(entry.type)) {
        const mode = entry.mode ?? 0o644;
        if ((mode & (umask | 0o7000)) !== 0) modeFixes.push({ rel, mode: mode & 0o7777 });
        return true;
      }
      if (entry.type === 'Link') {
        const link = normalizeEntryPath(entry.linkpath ?? '');
        if ('problem' in link || link.rel === '') return refuse('hard link target is not inside the archive');
        const linkedSymlink = symlinks.get(link.rel);
        if (linkedSymlink) {
          // a hard link to a symlink: recreate it as a symlink with the same target
          symlinks.set(rel, { ...linkedSymlink, rel });
          return false;
        }
        if (underSymlink(link.rel)) return refuse('hard link target goes through a symbolic link');
        return true;
      }
      if (entry.type === 'SymbolicLink') {
        const target = entry.linkpath ?? '';
        if (target === '' || target.includes('\0')) return refuse('empty symbolic link target');
        const lexical = symlinkLexicalTarget(path.join(opts.finalRoot, rel), target);
        if (!isWithin(opts.dataRootReal, lexical)) return refuse('symbolic link points outside DATA_ROOT');
        symlinks.set(rel, { rel, target, mtime: entry.mtime, uid: entry.uid, gid: entry.gid });
        return false;
      }
      return false; // devices and FIFOs are never restored
    },
  });

  const gunzip = createGunzip();
  await new Promise<void>((resolve, reject) => {
    let settled = false;
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      opts.signal?.removeEventListener('abort', onAbort);
      artifact.unpipe(gunzip);
      gunzip.unpipe();
      artifact.destroy();
      gunzip.destroy();
      reject(rejection ?? err);
    };
    const onAbort = () => fail(abortError(opts.signal as AbortSignal));
    if (opts.signal?.aborted) return onAbort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    artifact.once('error', fail);
    gunzip.once('error', fail);
    unpack.on('error', fail);
    unpack.once('close', () => {
      if (settled) return;
      settled = true;
      opts.signal?.removeEventListener('abort', onAbort);
      if (rejection) reject(rejection);
      else resolve();
    });
    artifact.pipe(gunzip).pipe(unpack as unknown as NodeJS.WritableStream);
  });

  // Deepest first: a symlink can only be traversed by a deeper path, and those exist already.
  const ordered = [...symlinks.values()].sort((a, b) => depth(b.rel) - depth(a.rel));
  for (const link of ordered) {
    const lexical = symlinkLexicalTarget(path.join(opts.finalRoot, link.rel), link.target);
    // Targets inside the restored tree were vetted entry by entry; elsewhere in DATA_ROOT, follow what exists.
    if (!isWithin(opts.finalRoot, lexical) && !isWithin(opts.dataRootReal, await realpathOfNearestExisting(lexical))) {
      throw new ComponentError(`archive entry ${JSON.stringify(link.rel)} refused: symbolic link points outside DATA_ROOT`);
    }
    const abs = path.join(opts.dest, link.rel);
    await mkdir(path.dirname(abs), { recursive: true });
    try {
      await symlink(link.target, abs);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new ComponentError(`archive entry ${JSON.stringify(link.rel)} refused: duplicate path`);
      }
      throw err;
    }
    if (isRoot && link.uid !== undefined && link.gid !== undefined) await lchown(abs, link.uid, link.gid);
    if (link.mtime) await lutimes(abs, link.mtime, link.mtime);
  }
  for (const fix of modeFixes) await chmod(path.join(opts.dest, fix.rel), fix.mode);
  directories.sort((a, b) => depth(b.rel) - depth(a.rel));
  for (const dir of directories) {
    const abs = path.join(opts.dest, dir.rel);
    if (dir.mode !== undefined) await chmod(abs, dir.mode & 0o7777);
    if (dir.mtime) await utimes(abs, dir.atime ?? dir.mtime, dir.mtime);
  }
}

/** Removes a half-extracted tree; node-tar may still finish a write or two after a failure. */
export async function removeTree(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }).catch(() => {});
  await sleep(100);
  await rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }).catch(() => {});
}
