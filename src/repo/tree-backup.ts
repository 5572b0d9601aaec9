import { constants, type BigIntStats, type Dirent } from 'node:fs';
import { lstat, open, readdir, readlink, realpath } from 'node:fs/promises';
import path from 'node:path';
import { errnoCode } from '../components/paths.js';
import { symlinkEscapes } from '../components/symlinks.js';
import { Semaphore } from '../lib/semaphore.js';
import { statOf } from './file-core.mjs';
import { ComponentError } from '../components/types.js';
import { comparePaths, compareSegments, entryProblem } from './manifest.js';
import type { ChunkId, ChunkSink, DirEntry, FileJob, FileStat, Progress, StoredFile } from './types.js';

/*
 * A directory tree -> the entries of its manifest, in path order, storing file data through the
 * sink. What is kept in memory at any time: one sorted directory listing per level of the current
 * path, a window of at most QUEUE_LIMIT entries between the walk and the consumer, at most
 * READ_CONCURRENCY files being read, and one reuse batch. Never the whole tree.
 *
 * - Files unchanged since `previous` (same path, type file, size, mtime_ns, ctime_ns and inode)
 *   are not read: their chunk lists are passed to `sink.reuse()` in batches of up to REUSE_BATCH
 *   files; a file whose chunks are no longer all there (answer false) is read after all.
 * - Other files are read through `sink.writeStream()`, READ_CONCURRENCY at a time, output order
 *   kept. A file whose size or mtime differs after reading from what lstat said before, or that is
 *   replaced meanwhile (another inode), fails the backup ("file changed as we read it"):
 *   a backup is a consistent copy or nothing.
 * - Symlinks are stored with their target as on disk (readlink); one that leads outside the
 *   tenant's folder once followed (judged by symlinks.ts `symlinkEscapes`, where the kernel would take it)
 *   fails the backup.
 * - Sockets, FIFOs and devices are skipped (not in the manifest): they hold no data and restores
 *   never create them.
 * - Hard links are stored as separate files, each with its own data (deduplicated by the chunk
 *   store anyway); a restore gives them separate inodes.
 * - Names must be valid UTF-8 (manifests are JSON); any other name fails the backup, naming it.
 * - A `previous` that fails to decode (IntegrityError) is dropped from there on: the rest of the
 *   tree is read, which is always correct, so one bad manifest cannot fail every later backup.
 * Errors of the file system become ComponentErrors naming the path relative to the component
 * (never the server path); errors of the sink and aborts pass through unchanged.
 */

export interface BackupTreeOptions {
  /** Real path of the component directory. */
  root: string;
  /** Real path of the tenant's folder: symlinks must not lead outside it. */
  tenantRoot: string;
  sink: ChunkSink;
  /** The last completed backup's manifest entries of this component, in path order. */
  previous?: AsyncIterable<DirEntry>;
  signal?: AbortSignal;
  /** At most every PROGRESS_INTERVAL_MS, and once at the end (totals then known). */
  onProgress?: (p: Progress) => void;
}

export const REUSE_BATCH = 1024;
export const READ_CONCURRENCY = 4;
const QUEUE_LIMIT = 4096;
const PROGRESS_INTERVAL_MS = 500;
const READ_CHUNK = 1024 * 1024;
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

const shown = (rel: string) => JSON.stringify(rel === '' ? '.' : rel);

function fsError(err: unknown, rel: string): Error {
  if (err instanceof ComponentError || (err instanceof Error && err.name === 'AbortError')) return err;
  const code = errnoCode(err);
  if (code && /^E[A-Z0-9]+$/.test(code)) return new ComponentError(`directory backup failed: ${code} at ${shown(rel)}`);
  return err instanceof Error ? err : new Error(String(err));
}

const changed = (rel: string) => new ComponentError(`directory backup failed: file changed as we read it: ${shown(rel)}`);

/** A manifest entry from file metadata (statOf's form); `size` only where the type has data. */
function entryOf(rel: string, type: DirEntry['type'], st: FileStat, size = 0): DirEntry {
  return { path: rel, type, mode: st.mode, uid: st.uid, gid: st.gid, mtime_ns: st.mtime_ns, ctime_ns: st.ctime_ns, ino: st.ino, size };
}

const baseEntry = (rel: string, type: DirEntry['type'], st: BigIntStats): DirEntry => entryOf(rel, type, statOf(st));

const UTF8 = new TextDecoder('utf-8', { fatal: true });

function utf8Name(raw: Buffer, where: string): string {
  try {
    return UTF8.decode(raw);
  } catch {
    throw new ComponentError(`directory backup failed: a name in ${shown(where)} is not valid UTF-8: ${JSON.stringify(raw.toString('utf8'))}`);
  }
}

/** A directory's names, sorted by compareSegments (so a depth-first walk is in path order), with whether the directory entry says "regular file". */
async function listDir(abs: string, rel: string): Promise<{ names: string[]; files: Set<string> }> {
  let raw: Dirent<Buffer>[];
  try {
    raw = await readdir(abs, { encoding: 'buffer', withFileTypes: true });
  } catch (err) {
    throw fsError(err, rel);
  }
  const files = new Set<string>();
  const names = raw.map((d) => {
    const name = utf8Name(d.name, rel);
    if (d.isFile()) files.add(name);
    return name;
  });
  return { names: names.sort(compareSegments), files };
}

/** `st` is absent for a regular file (by its directory entry) when the walk is asked not to lstat those: the sink's storeFiles does. */
type Walked = { rel: string; abs: string; st?: BigIntStats };

/** Depth-first, each directory's names sorted: yields every entry below `root` in path order. */
async function* walk(root: string, signal: AbortSignal, statFiles: boolean): AsyncGenerator<Walked> {
  const stack: { rel: string; names: string[]; files: Set<string>; i: number }[] = [{ rel: '', ...(await listDir(root, '')), i: 0 }];
  while (stack.length > 0) {
    signal.throwIfAborted();
    const top = stack[stack.length - 1] as (typeof stack)[number];
    if (top.i >= top.names.length) {
      stack.pop();
      continue;
    }
    const name = top.names[top.i++] as string;
    top.names[top.i - 1] = ''; // let the name go
    const rel = top.rel === '' ? name : `${top.rel}/${name}`;
    const abs = path.join(root, rel);
    if (!statFiles && top.files.has(name)) {
      yield { rel, abs };
      continue;
    }
    let st: BigIntStats;
    try {
      st = await lstat(abs, { bigint: true });
    } catch (err) {
      throw fsError(err, rel);
    }
    yield { rel, abs, st };
    if (st.isDirectory()) stack.push({ rel, ...(await listDir(abs, rel)), i: 0 });
  }
}

/** Files whose chunk lists go to one `sink.reuse()` call. */
class ReuseBatch {
  readonly files: ChunkId[][] = [];
  private readonly settle: { resolve: (ok: boolean) => void; reject: (err: unknown) => void }[] = [];
  flushed = false;
  constructor(private readonly sink: ChunkSink) {}
  add(chunks: ChunkId[]): Promise<boolean> {
    this.files.push(chunks);
    return new Promise((resolve, reject) => this.settle.push({ resolve, reject }));
  }
  /** Settles every file of an unflushed batch with `err`, asking the sink nothing. */
  cancel(err: unknown): void {
    if (this.flushed) return;
    this.flushed = true;
    for (const s of this.settle) s.reject(err);
  }
  flush(): void {
    if (this.flushed) return;
    this.flushed = true;
    if (this.files.length === 0) return;
    this.sink.reuse(this.files).then(
      (answers) => {
        if (!Array.isArray(answers) || answers.length !== this.files.length) {
          const err = new Error(`sink.reuse answered ${Array.isArray(answers) ? answers.length : typeof answers} results for ${this.files.length} files`);
          for (const s of this.settle) s.reject(err);
          return;
        }
        this.settle.forEach((s, i) => s.resolve(answers[i] === true));
      },
      (err: unknown) => {
        for (const s of this.settle) s.reject(err);
      },
    );
  }
}

/** Walks `previous` alongside the tree (both in path order). */
class PreviousCursor {
  private readonly it: AsyncIterator<DirEntry> | undefined;
  private current: DirEntry | undefined;
  private started = false;
  private done = false;
  constructor(previous: AsyncIterable<DirEntry> | undefined) {
    this.it = previous?.[Symbol.asyncIterator]();
    if (!this.it) this.done = true;
  }
  private async advance(): Promise<void> {
    try {
      const next = await (this.it as AsyncIterator<DirEntry>).next();
      if (next.done) {
        this.done = true;
        this.current = undefined;
      } else {
        this.current = next.value;
      }
    } catch {
      // A broken previous manifest only means reading more (see the notes at the top).
      this.done = true;
      this.current = undefined;
    }
  }
  async find(rel: string): Promise<DirEntry | undefined> {
    if (this.done && !this.current) return undefined;
    if (!this.started) {
      this.started = true;
      await this.advance();
    }
    while (this.current && comparePaths(this.current.path, rel) < 0) await this.advance();
    return this.current?.path === rel ? this.current : undefined;
  }
  async close(): Promise<void> {
    if (this.it?.return && !this.done) await this.it.return().catch(() => {});
  }
}

interface Slot {
  promise: Promise<DirEntry>;
  settled: boolean;
  batch?: ReuseBatch;
  /** A file read through sink.storeFiles. */
  work?: FileWork;
}

/** A regular file read through sink.storeFiles: where its next segment starts, its chunks so far. */
interface FileWork {
  rel: string;
  abs: string;
  /** The previous manifest's entry, when it is a valid file entry with chunks. */
  prev: DirEntry | undefined;
  /** Ask for 'unchanged' against `prev`, and hint its chunks. Off after the repository lost some of them. */
  usePrev: boolean;
  start: number;
  stat?: FileStat;
  chunks: ChunkId[];
  counted: number;
  /** Waiting in the batch not yet handed to storeFiles. */
  inBatch: boolean;
  /** Unchanged, waiting in the batch not yet handed to sink.reuse. */
  inReuse?: boolean;
  resolve: (e: DirEntry) => void;
  reject: (err: unknown) => void;
}

/** Files per storeFiles call (a call also stops reading after a few MiB: file-core.mjs). */
const FILE_JOBS_PER_CALL = 256;
/** storeFiles calls under way at once (the sink limits those on its pool; the others wait for lookups). */
const STORE_CONCURRENCY = 8;
/** Files with more chunks than this are read without hints (the list would be sent with every segment). */
const MAX_HINTS = 4096;


const withCode = (code: string) => Object.assign(new Error(code), { code });

/**
 * Backs up the tree at `opts.root`: yields its manifest entries in path order (see the notes at
 * the top of this file). The generator throws on any failure; stopping early (return) or a
 * failure stops the reads under way before it finishes.
 */
export async function* backupTree(opts: BackupTreeOptions): AsyncGenerator<DirEntry> {
  const { root, sink } = opts;
  const tenantRootReal = await realpath(opts.tenantRoot).catch((err: unknown) => {
    throw fsError(err, '');
  });
  const stop = new AbortController();
  const signal = opts.signal ? AbortSignal.any([opts.signal, stop.signal]) : stop.signal;
  const reads = new Semaphore(READ_CONCURRENCY);
  const previous = new PreviousCursor(opts.previous);
  const queue: Slot[] = [];
  let batch = new ReuseBatch(sink);
  let firstError: unknown;

  const progress: Progress = { bytes_done: 0, bytes_total: null, files_done: 0, files_total: null };
  let filesSeen = 0;
  let bytesSeen = 0;
  let lastReport = 0;
  const report = (force = false) => {
    if (!opts.onProgress) return;
    const now = Date.now();
    if (!force && now - lastReport < PROGRESS_INTERVAL_MS) return;
    lastReport = now;
    opts.onProgress({ ...progress });
  };

  const readFile = async (rel: string, abs: string, st: BigIntStats): Promise<DirEntry> => {
    await reads.acquire();
    let counted = 0;
    try {
      signal.throwIfAborted();
      let handle;
      try {
        handle = await open(abs, OPEN_FLAGS);
      } catch (err) {
        if (errnoCode(err) === 'ELOOP' || errnoCode(err) === 'ENOENT') throw changed(rel); // replaced or removed since lstat
        throw fsError(err, rel);
      }
      try {
        const before = await handle.stat({ bigint: true });
        if (!before.isFile() || before.ino !== st.ino || before.dev !== st.dev || before.size !== st.size || before.mtimeNs !== st.mtimeNs) throw changed(rel);
        const file = handle;
        async function* data(): AsyncGenerator<Buffer> {
          let position = 0;
          for (;;) {
            signal.throwIfAborted();
            // one byte more than expected: a file that grew is noticed here
            const want = Math.min(READ_CHUNK, Math.max(Number(st.size) - position, 0) + 1);
            let bytesRead: number;
            const buf = Buffer.allocUnsafe(want);
            try {
              ({ bytesRead } = await file.read(buf, 0, want, position));
            } catch (err) {
              throw fsError(err, rel);
            }
            if (bytesRead === 0) return;
            position += bytesRead;
            counted += bytesRead;
            progress.bytes_done += bytesRead;
            report();
            yield buf.subarray(0, bytesRead);
            // A short read of a regular file is its end (growth since is caught by the fstat after):
            // no second read that would answer 0, for every small file.
            if (bytesRead < want) return;
          }
        }
        const ref = await sink.writeStream(data());
        const after = await handle.stat({ bigint: true });
        if (after.size !== st.size || after.mtimeNs !== st.mtimeNs || ref.bytes !== Number(st.size) || counted !== Number(st.size)) throw changed(rel);
        progress.files_done++;
        report();
        return { ...baseEntry(rel, 'file', st), size: Number(st.size), chunks: ref.chunks };
      } finally {
        await handle.close().catch(() => {});
      }
    } catch (err) {
      progress.bytes_done -= counted;
      throw fsError(err, rel);
    } finally {
      reads.release();
    }
  };

  // ---- regular files through sink.storeFiles (when the sink has it) ----
  const storeFiles = sink.storeFiles?.bind(sink);
  const calls = new Semaphore(STORE_CONCURRENCY);
  let fileBatch: FileWork[] = [];
  /** Works handed out and not settled: rejected if the backup stops. */
  const works = new Set<FileWork>();
  /** storeFiles calls under way (and their follow-ups): awaited before the generator ends. */
  const inflight = new Set<Promise<void>>();

  const jobOf = (w: FileWork): FileJob => {
    const job: FileJob = { abs: w.abs };
    if (w.start > 0) {
      job.start = w.start;
      job.expect = w.stat as FileStat;
    }
    const p = w.usePrev ? w.prev : undefined;
    if (p) {
      if (w.start === 0) job.prev = { size: p.size, mtime_ns: p.mtime_ns, ctime_ns: p.ctime_ns, ino: p.ino };
      const hints = p.chunks as ChunkId[];
      if (hints.length <= MAX_HINTS) job.hints = hints;
    }
    return job;
  };

  const finishWork = (w: FileWork, settle: () => void) => {
    works.delete(w);
    settle();
  };

  const settleWork = (w: FileWork, answer: StoredFile, again: FileWork[], unchanged: { w: FileWork; stat: FileStat }[]) => {
    switch (answer.kind) {
      case 'error':
        return finishWork(w, () => w.reject(fsError(withCode(answer.code), w.rel)));
      case 'changed':
      case 'other': // no longer a regular file since the directory was listed
        return finishWork(w, () => w.reject(changed(w.rel)));
      case 'deferred':
        again.push(w);
        return;
      case 'unchanged':
        unchanged.push({ w, stat: answer.stat });
        return;
      case 'data': {
        if (answer.missing) {
          // the repository no longer holds some of the previous version's chunks: read it all again
          progress.bytes_done -= w.counted;
          Object.assign(w, { start: 0, chunks: [], counted: 0, usePrev: false, stat: undefined });
          again.push(w);
          return;
        }
        if (w.start === 0) w.stat = answer.stat;
        for (const id of answer.chunks) w.chunks.push(id);
        w.counted += answer.bytes;
        progress.bytes_done += answer.bytes;
        if (answer.next !== null) {
          w.start = answer.next;
          dispatch([w]); // the next segment, on its own
          return;
        }
        const st = w.stat as FileStat;
        if (w.counted !== st.size) return finishWork(w, () => w.reject(changed(w.rel)));
        bytesSeen += st.size;
        progress.files_done++;
        report();
        return finishWork(w, () => w.resolve({ ...entryOf(w.rel, 'file', st, st.size), chunks: w.chunks }));
      }
    }
  };

  const reuseUnchanged = async (list: { w: FileWork; stat: FileStat }[]): Promise<void> => {
    if (list.length === 0) return;
    await sink.reuse(list.map(({ w }) => w.prev!.chunks as ChunkId[])).then(
      (answers) => {
        const again: FileWork[] = [];
        list.forEach(({ w, stat }, i) => {
          if (answers[i] !== true) {
            w.usePrev = false; // some chunk is gone: read the file
            again.push(w);
            return;
          }
          bytesSeen += stat.size;
          progress.files_done++;
          progress.bytes_done += stat.size;
          finishWork(w, () => w.resolve({ ...entryOf(w.rel, 'file', stat, stat.size), chunks: [...(w.prev!.chunks as ChunkId[])] }));
        });
        report();
        dispatch(again);
      },
      (err: unknown) => {
        for (const { w } of list) finishWork(w, () => w.reject(err));
      },
    );
  };

  /**
   * Unchanged files of every answer, reused together (REUSE_BATCH a statement): flushed when full,
   * when the last storeFiles call under way ends (nothing else would), or when the consumer waits
   * for one of them.
   */
  let unchangedBatch: { w: FileWork; stat: FileStat }[] = [];
  let callsUnderWay = 0;
  const flushUnchanged = () => {
    if (unchangedBatch.length === 0) return;
    const list = unchangedBatch;
    unchangedBatch = [];
    for (const u of list) u.w.inReuse = false;
    const p = reuseUnchanged(list);
    inflight.add(p);
    void p.finally(() => inflight.delete(p));
  };

  function dispatch(list: FileWork[]): void {
    if (list.length === 0) return;
    for (const w of list) w.inBatch = false;
    callsUnderWay++;
    const call = (async () => {
      let answers: StoredFile[];
      await calls.acquire();
      try {
        signal.throwIfAborted();
        answers = await (storeFiles as NonNullable<typeof storeFiles>)(list.map(jobOf));
        if (!Array.isArray(answers) || answers.length !== list.length) throw new Error(`sink.storeFiles answered ${Array.isArray(answers) ? answers.length : typeof answers} results for ${list.length} files`);
      } catch (err) {
        for (const w of list) finishWork(w, () => w.reject(err));
        return;
      } finally {
        calls.release();
      }
      const again: FileWork[] = [];
      const unchanged: { w: FileWork; stat: FileStat }[] = [];
      list.forEach((w, i) => settleWork(w, answers[i]!, again, unchanged));
      dispatch(again);
      for (const u of unchanged) {
        u.w.inReuse = true;
        unchangedBatch.push(u);
      }
      if (unchangedBatch.length >= REUSE_BATCH || callsUnderWay === 1) flushUnchanged();
    })().finally(() => callsUnderWay--);
    inflight.add(call);
    void call.finally(() => inflight.delete(call));
  }

  const flushFiles = () => {
    const list = fileBatch;
    fileBatch = [];
    dispatch(list);
  };

  const fileSlot = async (rel: string, abs: string): Promise<Slot> => {
    filesSeen++;
    const prev = await previous.find(rel);
    const usable = prev && prev.type === 'file' && entryProblem(prev) === null && (prev.chunks as ChunkId[]).length > 0 ? prev : undefined;
    let work!: FileWork;
    const promise = new Promise<DirEntry>((resolve, reject) => {
      work = { rel, abs, prev: usable, usePrev: usable !== undefined, start: 0, chunks: [], counted: 0, inBatch: true, resolve, reject };
    });
    works.add(work);
    fileBatch.push(work);
    if (fileBatch.length >= FILE_JOBS_PER_CALL) flushFiles();
    return track(promise, { work });
  };

  const track = (promise: Promise<DirEntry>, extra: Partial<Slot> = {}): Slot => {
    const slot: Slot = { promise, settled: false, ...extra };
    promise.then(
      () => {
        slot.settled = true;
      },
      (err: unknown) => {
        slot.settled = true;
        firstError ??= err;
        stop.abort(err); // no point in reading on
      },
    );
    return slot;
  };

  const slotFor = async (item: Walked): Promise<Slot | null> => {
    const { rel, abs, st } = item;
    if (!st) return fileSlot(rel, abs);
    if (st.isDirectory()) return track(Promise.resolve(baseEntry(rel, 'directory', st)));
    if (st.isSymbolicLink()) {
      let target: string;
      try {
        target = utf8Name(await readlink(abs, { encoding: 'buffer' }), rel);
      } catch (err) {
        throw fsError(err, rel);
      }
      let escapes: boolean;
      try {
        escapes = await symlinkEscapes(tenantRootReal, abs, target);
      } catch (err) {
        throw fsError(err, rel);
      }
      if (escapes) throw new ComponentError(`symbolic link ${rel} points outside the tenant's folder`);
      return track(Promise.resolve({ ...baseEntry(rel, 'symlink', st), link_target: target }));
    }
    if (!st.isFile()) return null; // sockets, FIFOs, devices
    filesSeen++;
    bytesSeen += Number(st.size);
    const size = Number(st.size);
    if (size === 0) {
      // nothing to read or reuse; a file that grows meanwhile is the next backup's
      progress.files_done++;
      return track(Promise.resolve({ ...baseEntry(rel, 'file', st), chunks: [] }));
    }
    const prev = await previous.find(rel);
    if (
      prev &&
      prev.type === 'file' &&
      prev.size === size &&
      prev.mtime_ns === st.mtimeNs.toString() &&
      prev.ctime_ns === st.ctimeNs.toString() &&
      prev.ino === st.ino.toString() &&
      entryProblem(prev) === null &&
      (prev.chunks as ChunkId[]).length > 0
    ) {
      const chunks = [...(prev.chunks as ChunkId[])];
      const mine = batch;
      const promise = mine.add(chunks).then((ok) => {
        if (!ok) return readFile(rel, abs, st);
        progress.files_done++;
        progress.bytes_done += size;
        report();
        return { ...baseEntry(rel, 'file', st), size, chunks };
      });
      if (mine.files.length >= REUSE_BATCH) {
        mine.flush();
        batch = new ReuseBatch(sink);
      }
      return track(promise, { batch: mine });
    }
    return track(readFile(rel, abs, st));
  };

  const takeHead = async (): Promise<DirEntry> => {
    const slot = queue.shift() as Slot;
    if (slot.work?.inBatch) flushFiles();
    if (slot.work?.inReuse) flushUnchanged();
    if (slot.batch && !slot.batch.flushed) {
      slot.batch.flush();
      if (slot.batch === batch) batch = new ReuseBatch(sink);
    }
    try {
      return await slot.promise;
    } catch (err) {
      throw firstError ?? err;
    }
  };

  try {
    for await (const item of walk(root, signal, !storeFiles)) {
      if (firstError) throw firstError;
      const slot = await slotFor(item);
      if (slot) queue.push(slot);
      while (queue.length > 0 && (queue[0] as Slot).settled) yield await takeHead();
      while (queue.length >= QUEUE_LIMIT) yield await takeHead();
    }
    batch.flush();
    flushFiles();
    progress.files_total = filesSeen;
    // With storeFiles, a file's size is known once it is read: the total comes at the end.
    if (!storeFiles) progress.bytes_total = bytesSeen;
    report(true);
    while (queue.length > 0) yield await takeHead();
    progress.bytes_total = bytesSeen;
    report(true);
  } catch (err) {
    throw firstError ?? err;
  } finally {
    if (queue.length > 0) {
      const stopped = new ComponentError('directory backup stopped');
      stop.abort(stopped);
      for (const slot of queue) slot.batch?.cancel(stopped);
      for (const w of works) w.reject(stopped);
      works.clear();
      fileBatch = [];
      while (inflight.size > 0) await Promise.allSettled([...inflight]);
      await Promise.allSettled(queue.map((s) => s.promise));
    }
    await previous.close();
  }
}
