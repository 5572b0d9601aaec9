import { createHash, randomBytes } from 'node:crypto';
import { lstat, mkdir, open, opendir, rename, rm, rmdir, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pathToFileURL } from 'node:url';
import { Sha256Meter } from './checksum.js';
import {
  ArtifactNotFoundError,
  checkByteRange,
  InvalidArtifactKeyError,
  RangeNotSatisfiableError,
  type ArtifactStore,
  type ListedArtifact,
  type PutOptions,
  type PutResult,
} from './types.js';
import { fsyncDirectory } from '../lib/fsync.js';

const MISSING = new Set(['ENOENT', 'ENOTDIR']);
/** What `writeDurably` names its temp files: `.<base>.<16 hex>.partial`. */
const TEMP_FILE = /^\..+\.[0-9a-f]{16}\.partial$/;

function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}

/** Keys are relative posix paths. Segments may not start with '.', which keeps them clear of '..' and of our temp files. */
export function checkArtifactKey(key: string): string | null {
  if (typeof key !== 'string' || key.length === 0) return 'must not be empty';
  if (key.length > 1024) return 'is too long';
  if (key.includes('\0')) return 'must not contain NUL bytes';
  if (key.includes('\\')) return 'must not contain backslashes';
  if (key.startsWith('/')) return 'must be relative';
  for (const segment of key.split('/')) {
    if (segment === '') return 'must not contain empty segments';
    if (segment === '..' || segment === '.') return `must not contain '${segment}' segments`;
    if (segment.startsWith('.')) return "segments must not start with '.'";
  }
  return null;
}

/** `''` or a valid key followed by '/'; what `list` and `deletePrefix` take. */
export function checkArtifactPrefix(prefix: string, allowEmpty: boolean): string | null {
  if (typeof prefix !== 'string') return 'must be a string';
  if (prefix === '') return allowEmpty ? null : 'must not be empty';
  if (!prefix.endsWith('/')) return "a prefix must end with '/'";
  return checkArtifactKey(prefix.slice(0, -1));
}

async function writeAll(handle: FileHandle, data: Buffer): Promise<void> {
  for (let offset = 0; offset < data.length; ) {
    const { bytesWritten } = await handle.write(data, offset, data.length - offset);
    offset += bytesWritten;
  }
}

function toReadable(body: NodeJS.ReadableStream | Readable): Readable {
  return body instanceof Readable ? body : new Readable().wrap(body);
}

/** Writes into a handle we keep owning (a FileHandle stream would hold the handle until it closes it). */
function handleSink(handle: FileHandle): Writable {
  return new Writable({
    highWaterMark: 1 << 20,
    write(chunk: Buffer, _encoding, callback) {
      writeAll(handle, chunk).then(() => callback(), callback);
    },
  });
}

export function createFileStore(rootAbsPath: string): ArtifactStore {
  if (!path.isAbsolute(rootAbsPath)) throw new Error('file store root must be an absolute path');
  const root = path.resolve(rootAbsPath);

  function fileOf(key: string): string {
    const problem = checkArtifactKey(key);
    if (problem) throw new InvalidArtifactKeyError(key, problem);
    return path.join(root, ...key.split('/'));
  }

  /** Removes now-empty directories between `dir` and the root, so deleted backups leave no skeletons. */
  async function pruneEmptyParents(dir: string): Promise<void> {
    let current = dir;
    while (current !== root && current.startsWith(root + path.sep)) {
      try {
        await rmdir(current);
      } catch {
        return; // not empty, already gone, or busy: stop climbing
      }
      current = path.dirname(current);
    }
  }

  /** mkdir + exclusive create; retried because a concurrent delete may prune the directories in between. */
  async function createTemp(dir: string, temp: string): Promise<FileHandle> {
    for (let attempt = 0; ; attempt++) {
      try {
        // Either step can meet a directory a concurrent delete just pruned (mkdir -p creates
        // one level after the other): start again.
        await mkdir(dir, { recursive: true });
        return await open(temp, 'wx', 0o600);
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT' || attempt >= 4) throw err;
      }
    }
  }

  /**
   * Writes a temp file next to `file` through `write`, fsyncs it, renames it over `file` and
   * fsyncs the directory: the key appears only complete and durable. On any failure the temp file
   * is removed (and emptied directories pruned); a previous file under the key stays as it was.
   */
  async function writeDurably(file: string, write: (handle: FileHandle) => Promise<PutResult>): Promise<PutResult> {
    const dir = path.dirname(file);
    const temp = path.join(dir, `.${path.basename(file)}.${randomBytes(8).toString('hex')}.partial`);
    let handle: FileHandle | undefined;
    try {
      handle = await createTemp(dir, temp);
      const result = await write(handle);
      await handle.sync();
      await handle.close();
      handle = undefined;
      await rename(temp, file);
      await fsyncDirectory(dir);
      return result;
    } catch (err) {
      await handle?.close().catch(() => {});
      await rm(temp, { force: true }).catch(() => {});
      await pruneEmptyParents(dir);
      throw err;
    }
  }

  /** Opens a regular file for reading; ArtifactNotFoundError if it is missing or not a file. */
  async function openFile(key: string, file: string): Promise<FileHandle> {
    let handle: FileHandle;
    try {
      handle = await open(file, 'r');
    } catch (err) {
      if (MISSING.has(errnoCode(err) ?? '')) throw new ArtifactNotFoundError(key);
      throw err;
    }
    const info = await handle.stat().catch(async (err: unknown) => {
      await handle.close();
      throw err;
    });
    if (!info.isFile()) {
      await handle.close();
      throw new ArtifactNotFoundError(key);
    }
    return handle;
  }

  /**
   * Depth-first walk that holds one open directory stream per level and no listing: entries are
   * read a few at a time (opendir). Names starting with '.' (our temp files) are not keys and are
   * skipped, as are symlinks and other non-regular files. Entries that vanish mid-walk (a
   * concurrent delete) are skipped; other errors surface.
   */
  async function* walk(dir: string, keyPrefix: string): AsyncGenerator<ListedArtifact> {
    let handle;
    try {
      handle = await opendir(dir, { bufferSize: 64 });
    } catch (err) {
      if (MISSING.has(errnoCode(err) ?? '')) return;
      throw err;
    }
    // for-await closes the directory on completion, break and error alike.
    for await (const entry of handle) {
      if (entry.name.startsWith('.')) continue;
      const key = keyPrefix + entry.name;
      if (checkArtifactKey(key) !== null) continue; // e.g. a backslash in a name: not addressable
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        yield* walk(full, `${key}/`);
      } else if (entry.isFile()) {
        let info;
        try {
          info = await lstat(full);
        } catch (err) {
          if (MISSING.has(errnoCode(err) ?? '')) continue;
          throw err;
        }
        if (info.isFile()) yield { key, bytes: info.size, modifiedAt: info.mtime };
      }
    }
  }

  /** The temp files of interrupted writes under `dir` older than `before`: removed; empty directories pruned. */
  async function sweepTempsIn(dir: string, before: Date): Promise<number> {
    let handle;
    try {
      handle = await opendir(dir, { bufferSize: 64 });
    } catch (err) {
      if (MISSING.has(errnoCode(err) ?? '')) return 0;
      throw err;
    }
    let removed = 0;
    for await (const entry of handle) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory() && !entry.name.startsWith('.')) {
        removed += await sweepTempsIn(full, before);
      } else if (entry.isFile() && TEMP_FILE.test(entry.name)) {
        try {
          if ((await lstat(full)).mtime < before) {
            await rm(full, { force: true });
            removed++;
          }
        } catch (err) {
          if (!MISSING.has(errnoCode(err) ?? '')) throw err;
        }
      }
    }
    if (removed > 0) await pruneEmptyParents(dir);
    return removed;
  }

  return {
    url: pathToFileURL(root).href,

    async sweepTemps(prefix: string, olderThan: Date): Promise<number> {
      const problem = checkArtifactPrefix(prefix, true);
      if (problem) throw new InvalidArtifactKeyError(prefix, problem);
      return sweepTempsIn(prefix === '' ? root : path.join(root, ...prefix.slice(0, -1).split('/')), olderThan);
    },

    async put(key: string, body: NodeJS.ReadableStream | Readable, opts: PutOptions = {}): Promise<PutResult> {
      const input = toReadable(body);
      let file: string;
      try {
        file = fileOf(key);
        opts.signal?.throwIfAborted();
      } catch (err) {
        input.destroy();
        throw err;
      }
      try {
        return await writeDurably(file, async (handle) => {
          const meter = new Sha256Meter(opts.onProgress);
          await pipeline(input, meter, handleSink(handle), opts.signal ? { signal: opts.signal } : {});
          return meter.result();
        });
      } catch (err) {
        input.destroy();
        throw err;
      }
    },

    async putBuffer(key: string, body: Buffer, opts?: { sha256?: string }): Promise<PutResult> {
      const file = fileOf(key);
      if (!Buffer.isBuffer(body)) throw new TypeError('putBuffer takes a Buffer');
      return writeDurably(file, async (handle) => {
        await writeAll(handle, body);
        return { bytes: body.length, sha256: opts?.sha256 ?? createHash('sha256').update(body).digest('hex') };
      });
    },

    async getRange(key: string, start: number, end: number): Promise<Buffer> {
      const file = fileOf(key);
      checkByteRange(start, end);
      const handle = await openFile(key, file);
      try {
        const { size } = await handle.stat();
        if (size < end) throw new RangeNotSatisfiableError(key, start, end, size);
        const out = Buffer.allocUnsafe(end - start);
        for (let filled = 0; filled < out.length; ) {
          const { bytesRead } = await handle.read(out, filled, out.length - filled, start + filled);
          // Shrunk since the stat (truncated in place: never by this store, which replaces by rename).
          if (bytesRead === 0) throw new RangeNotSatisfiableError(key, start, end, (await handle.stat()).size);
          filled += bytesRead;
        }
        return out;
      } finally {
        await handle.close();
      }
    },

    async size(key: string): Promise<number> {
      const file = fileOf(key);
      let info;
      try {
        info = await stat(file);
      } catch (err) {
        if (MISSING.has(errnoCode(err) ?? '')) throw new ArtifactNotFoundError(key);
        throw err;
      }
      if (!info.isFile()) throw new ArtifactNotFoundError(key);
      return info.size;
    },

    list(prefix: string): AsyncIterable<ListedArtifact> {
      const problem = checkArtifactPrefix(prefix, true);
      if (problem) throw new InvalidArtifactKeyError(prefix, problem);
      const dir = prefix === '' ? root : fileOf(prefix.slice(0, -1));
      return walk(dir, prefix);
    },

    async get(key: string): Promise<Readable> {
      const handle = await openFile(key, fileOf(key));
      return handle.createReadStream({ highWaterMark: 1 << 20 });
    },

    async exists(key: string): Promise<boolean> {
      const file = fileOf(key);
      try {
        return (await stat(file)).isFile();
      } catch (err) {
        if (MISSING.has(errnoCode(err) ?? '')) return false;
        throw err;
      }
    },

    async delete(key: string): Promise<void> {
      const file = fileOf(key);
      await rm(file, { force: true });
      await pruneEmptyParents(path.dirname(file));
    },

    async deletePrefix(prefix: string): Promise<void> {
      const problem = checkArtifactPrefix(prefix, false);
      if (problem) throw new InvalidArtifactKeyError(prefix, problem);
      const dir = fileOf(prefix.slice(0, -1));
      await rm(dir, { recursive: true, force: true, maxRetries: 3 });
      await pruneEmptyParents(path.dirname(dir));
    },

    locationOf(key: string): string {
      return pathToFileURL(fileOf(key)).href;
    },
    localPath(key: string): string {
      return fileOf(key);
    },
  };
}

/** Stores a JSON document (e.g. a backup manifest) under `key`. */
export function putJson(store: ArtifactStore, key: string, value: unknown, opts?: PutOptions): Promise<PutResult> {
  return store.put(key, Readable.from([Buffer.from(JSON.stringify(value))]), opts);
}
