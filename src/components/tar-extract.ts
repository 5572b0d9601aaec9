import { spawn } from 'node:child_process';
import path from 'node:path';
import { pipeline, Transform, type Readable, type TransformCallback, type Writable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { errnoCode, isWithin } from './paths.js';
import { linkResolver } from './symlinks.js';
import { abortError, childEnv, StderrTail } from './process.js';
import { TarHeaderScanner, TarScanError, type ScannedEntry } from './tar-scan.js';
import { ComponentError } from './types.js';

export interface ExtractOptions {
  /** Empty directory the archive is unpacked into. */
  dest: string;
  /** Where `dest` will live once swapped into place; symlinks are judged from there. */
  finalRoot: string;
  /** realpath(DATA_ROOT): no symlink may point outside it. */
  dataRootReal: string;
  signal?: AbortSignal;
  /** Told of each regular file (path relative to `dest`, size) once its header has been vetted. */
  onFile?: (rel: string, size: number) => void;
}

/**
 * GNU tar writes the files (node-tar's Unpack ran at ~0.45x of `tar -xzf`).
 * --delay-directory-restore applies directory modes and mtimes at the very end, so read-only
 * directories and directories touched by later entries come out as archived. Owners are kept
 * when running as root (GNU tar's default then, as node-tar's was). No --keep-old-files: it
 * would also leave the metadata of the root directory (our empty temp dir) alone.
 */
const TAR_EXTRACT = ['--extract', '--file=-', '--numeric-owner', '--preserve-permissions', '--delay-directory-restore'];

const FILE_TYPES = new Set(['0', '7']); // the scanner reports the old '\0' as '0'
// Gunzip stays in Node: zlib inflates about twice as fast as gzip(1), which is what bounds
// `tar -xzf`; big output chunks keep the per-chunk overhead of the filter and the pipe low.
const GZIP_CHUNK = 256 * 1024;

/** Normalizes an archive path to a relative posix path ('' for the root), or explains why it is refused. */
function normalizeEntryPath(p: string): { rel: string } | { problem: string } {
  if (p.includes('\0')) return { problem: 'contains a NUL byte' };
  if (p.startsWith('/') || /^[a-zA-Z]:/.test(p)) return { problem: 'is absolute' };
  const parts = p.split('/').filter((s) => s !== '' && s !== '.');
  if (parts.includes('..')) return { problem: "contains '..'" };
  return { rel: parts.join('/') };
}

function refusal(entryPath: string, why: string): ComponentError {
  return new ComponentError(`archive entry ${JSON.stringify(entryPath)} refused: ${why}`);
}

/**
 * Passes the decompressed tar stream on to GNU tar, vetting every entry before any byte of it
 * goes further: nothing absolute or with '..', nothing at or below a symlink of the archive (so
 * nothing is ever written through one), hard links only to entries of the archive, symlinks only
 * to DATA_ROOT. Devices, FIFOs and exotic entry types are dropped, never restored.
 */
function vettingFilter(opts: ExtractOptions): Transform {
  const symlinks = new Map<string, string>(); // archive path -> target
  const entryPaths = new Map<string, string>(); // archive path -> the entry's path as archived, for messages
  const newLinks: string[] = [];
  const resolveNow = linkResolver(opts.finalRoot, symlinks);
  let out: Buffer[] = [];

  const underSymlink = (rel: string) => {
    if (symlinks.size === 0) return false;
    for (let p = path.posix.dirname(rel); p !== '.'; p = path.posix.dirname(p)) if (symlinks.has(p)) return true;
    return false;
  };

  const vet = (entry: ScannedEntry): boolean => {
    const refuse = (why: string) => refusal(entry.path, why);
    const isFile = FILE_TYPES.has(entry.type);
    if (!isFile && !['1', '2', '5'].includes(entry.type)) return false;
    // GNU tar reads no content after these (a file named 'x/' is a directory to it), so bytes
    // there would be taken by it for headers we never saw.
    if (entry.size !== 0 && (!isFile || entry.path.endsWith('/'))) throw refuse('unexpected content');
    const norm = normalizeEntryPath(entry.path);
    if ('problem' in norm) throw refuse(`path ${norm.problem}`);
    const { rel } = norm;
    if (symlinks.has(rel) || underSymlink(rel)) throw refuse('path goes through a symbolic link');
    if (entry.type === '5') return true;
    if (rel === '') throw refuse('only a directory may stand for the root');
    if (isFile) {
      opts.onFile?.(rel, entry.size);
      return true;
    }
    if (entry.type === '1') {
      const link = normalizeEntryPath(entry.linkpath);
      if ('problem' in link || link.rel === '') throw refuse('hard link target is not inside the archive');
      if (underSymlink(link.rel)) throw refuse('hard link target goes through a symbolic link');
      // tar links the symlink itself (linkat without following), which makes another symlink
      const linked = symlinks.get(link.rel);
      if (linked !== undefined) {
        symlinks.set(rel, linked);
        entryPaths.set(rel, entry.path);
        newLinks.push(rel);
      }
      return true;
    }
    const target = entry.linkpath;
    if (target === '' || target.includes('\0')) throw refuse('empty symbolic link target');
    // Where it leads may depend on symlinks further on in the archive: judged for good once all
    // are known (vetSymlinks), before the tree is swapped in; nothing is written through it before.
    symlinks.set(rel, target);
    entryPaths.set(rel, entry.path);
    newLinks.push(rel);
    return true;
  };

  const refuseOutside = (rel: string) => refusal(entryPaths.get(rel) ?? rel, 'symbolic link points outside DATA_ROOT');

  /** Refuses at once, before tar creates it, a new symlink that leads out whatever comes later. */
  const vetNewLinks = async () => {
    for (let rel = newLinks.shift(); rel !== undefined; rel = newLinks.shift()) {
      const outcome = await resolveNow(rel);
      if ('resolved' in outcome && outcome.settled && !isWithin(opts.dataRootReal, outcome.resolved)) throw refuseOutside(rel);
    }
  };

  /** Every symlink of the archive must lead inside DATA_ROOT once the tree is in place. */
  const vetSymlinks = async () => {
    const resolve = linkResolver(opts.finalRoot, symlinks);
    for (const rel of symlinks.keys()) {
      const outcome = await resolve(rel);
      // A loop cannot be followed anywhere (ELOOP), so it is restored as archived.
      if ('resolved' in outcome && !isWithin(opts.dataRootReal, outcome.resolved)) {
        throw refuseOutside(rel);
      }
    }
  };

  const scanner = new TarHeaderScanner(vet, (bytes) => {
    // Consecutive slices of one decompressed buffer go to tar as one write.
    const last = out[out.length - 1];
    if (last && last.buffer === bytes.buffer && last.byteOffset + last.length === bytes.byteOffset) {
      out[out.length - 1] = Buffer.from(last.buffer, last.byteOffset, last.length + bytes.length);
    } else {
      out.push(bytes);
    }
  });

  return new Transform({
    async transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
      try {
        scanner.write(chunk);
        if (newLinks.length > 0) await vetNewLinks();
        const pieces = out;
        out = [];
        for (const piece of pieces) this.push(piece);
        callback();
      } catch (err) {
        callback(err instanceof TarScanError ? new ComponentError(`invalid archive: ${err.message}`) : (err as Error));
      }
    },
    flush(callback: TransformCallback) {
      if (!scanner.ended) return callback(new ComponentError('invalid archive: it ends before its end-of-archive marker'));
      vetSymlinks().then(() => callback(), (err: unknown) => callback(err as Error));
    },
  });
}

/**
 * Unpacks a tar.gz into an empty directory: gunzip here, vetting of every entry (above), then
 * GNU tar. Resolves once the whole gzip stream checked out and tar exited 0; on any failure tar
 * has exited (killed if need be) before this rejects, so the caller can remove `dest` safely.
 */
export async function extractTarGz(artifact: Readable, opts: ExtractOptions): Promise<void> {
  const { signal } = opts;
  if (signal?.aborted) throw abortError(signal);
  const tar = spawn('tar', [...TAR_EXTRACT, `--directory=${opts.dest}`], { env: childEnv(), stdio: ['pipe', 'ignore', 'pipe'] });
  const stderr = new StderrTail();
  tar.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk));
  const exited = new Promise<Error | undefined>((resolve) => {
    tar.once('error', (err) => resolve(new ComponentError(`could not start tar: ${errnoCode(err) ?? err.message}`)));
    tar.once('close', (code, killedBy) => {
      resolve(code === 0 ? undefined : new ComponentError(`tar failed: ${stderr.text() || (killedBy ?? `exit code ${code}`)}`));
    });
  });
  let aborted: Error | undefined;
  // tar may still be writing after the whole artifact was read, so stop it directly too.
  const onAbort = () => {
    aborted = abortError(signal as AbortSignal);
    artifact.destroy(aborted);
    tar.kill('SIGKILL');
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  const streamed = new Promise<Error | undefined>((resolve) => {
    pipeline(artifact, createGunzip({ chunkSize: GZIP_CHUNK }), vettingFilter(opts), tar.stdin as Writable, (err) => {
      // A refused entry or a broken artifact: stop tar before it reads anything else.
      if (err) tar.kill('SIGKILL');
      resolve(err ?? undefined);
    });
  });
  const [streamError, tarError] = await Promise.all([streamed, exited]);
  signal?.removeEventListener('abort', onAbort);
  if (aborted) throw aborted;
  // EPIPE only says that tar quit early; its own complaint explains why.
  if (streamError && errnoCode(streamError) !== 'EPIPE') throw streamError;
  if (tarError) throw tarError;
  if (streamError) throw new ComponentError('tar stopped reading before the end of the archive');
}
