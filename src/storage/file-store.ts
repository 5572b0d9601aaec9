import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm, rmdir, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pathToFileURL } from 'node:url';
import { Sha256Meter } from './checksum.js';
import { ArtifactNotFoundError, InvalidArtifactKeyError, type ArtifactStore, type PutOptions, type PutResult } from './types.js';
import { fsyncDirectory } from '../lib/fsync.js';

const MISSING = new Set(['ENOENT', 'ENOTDIR']);

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

function toReadable(body: NodeJS.ReadableStream | Readable): Readable {
  return body instanceof Readable ? body : new Readable().wrap(body);
}

/** Writes into a handle we keep owning (a FileHandle stream would hold the handle until it closes it). */
function handleSink(handle: FileHandle): Writable {
  return new Writable({
    highWaterMark: 1 << 20,
    write(chunk: Buffer, _encoding, callback) {
      void (async () => {
        for (let offset = 0; offset < chunk.length; ) {
          const { bytesWritten } = await handle.write(chunk, offset, chunk.length - offset);
          offset += bytesWritten;
        }
      })().then(() => callback(), callback);
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

  /** mkdir + exclusive create; retried because a concurrent delete may prune the directory in between. */
  async function createTemp(dir: string, temp: string): Promise<FileHandle> {
    for (let attempt = 0; ; attempt++) {
      await mkdir(dir, { recursive: true });
      try {
        return await open(temp, 'wx', 0o600);
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT' || attempt >= 4) throw err;
      }
    }
  }

  return {
    url: pathToFileURL(root).href,

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
      const dir = path.dirname(file);
      const temp = path.join(dir, `.${path.basename(file)}.${randomBytes(8).toString('hex')}.partial`);
      let handle: FileHandle | undefined;
      try {
        handle = await createTemp(dir, temp);
        const meter = new Sha256Meter(opts.onProgress);
        await pipeline(input, meter, handleSink(handle), opts.signal ? { signal: opts.signal } : {});
        await handle.sync();
        await handle.close();
        handle = undefined;
        await rename(temp, file);
        await fsyncDirectory(dir);
        return meter.result();
      } catch (err) {
        input.destroy();
        await handle?.close().catch(() => {});
        await rm(temp, { force: true }).catch(() => {});
        await pruneEmptyParents(dir);
        throw err;
      }
    },

    async get(key: string): Promise<Readable> {
      const file = fileOf(key);
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
      if (!prefix.endsWith('/')) throw new InvalidArtifactKeyError(prefix, "a prefix must end with '/'");
      const dir = fileOf(prefix.slice(0, -1));
      await rm(dir, { recursive: true, force: true, maxRetries: 3 });
      await pruneEmptyParents(path.dirname(dir));
    },

    locationOf(key: string): string {
      return pathToFileURL(fileOf(key)).href;
    },
  };
}

/** Stores a JSON document (e.g. a backup manifest) under `key`. */
export function putJson(store: ArtifactStore, key: string, value: unknown, opts?: PutOptions): Promise<PutResult> {
  return store.put(key, Readable.from([Buffer.from(JSON.stringify(value))]), opts);
}
