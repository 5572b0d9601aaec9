import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, chown, lchown, lstat, lutimes, mkdir, open, realpath, rename, rm, rmdir, symlink, utimes } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { checkRelativePath, errnoCode, isWithin, PathEscapeError } from '../components/paths.js';
import { childEnv } from '../components/process.js';
import { makeRestoreTemp, swapIntoPlace } from '../components/restore-swap.js';
import { diskLookup, follow, linkResolver, type LinkLookup } from '../components/symlinks.js';
import { ComponentError } from '../components/types.js';
import { writeBehind } from '../components/write-behind.js';
import { fsyncDirectory, fsyncTree } from '../lib/fsync.js';
import { removeTree } from '../lib/remove-tree.js';
import { comparePaths, isSameOrInside, ManifestValidator } from './manifest.js';
import { IntegrityError, type ChunkSource, type DirEntry, type Progress, type WriteFileJob } from './types.js';

/*
 * Manifest entries -> a directory tree, all or nothing.
 *
 * Whole restore: the tree is built in a sibling temp directory of the target (makeRestoreTemp),
 * every file written from `source.read(chunks)` (which verifies each chunk; a file whose bytes
 * do not add up to its size is an IntegrityError too), directories and symlinks created, then
 * owner (when running as root), mode and mtime applied: a directory's after its contents, so
 * read-only directories and mtimes come out as backed up. Every entry is checked as the manifest
 * decoder checks it (ManifestValidator): nothing below a symlink or a file, so nothing is ever
 * written through a symlink (files are also opened O_EXCL|O_NOFOLLOW). Every symlink must lead
 * inside the tenant's folder, judged where the kernel would take it once the tree is in place:
 * inside the target through the restored tree's own links, outside through the disk
 * (symlinks.ts `linkResolver`). Then the tree is made durable (fsync
 * per file and directory; write-behind starts the file flushes early) and swapped in by
 * `swapIntoPlace`. Any failure (an IntegrityError, a refused link, an abort) removes the temp
 * directory and leaves the target untouched.
 *
 * The component root is not an entry of a manifest: the restored root takes the mode (and, as
 * root, the owner) of the directory it replaces, 0755 when there is none; its mtime is the time
 * of the restore.
 *
 * Partial restore (`paths`): each path must be relative without `..` (PathEscapeError) and be an
 * entry of the manifest (PathNotInBackupError); a path inside another requested one is covered
 * by it. In one pass over the manifest each path's new version is built in a temp sibling of it
 * in the live tree (`.<name>.restore-XXXXXX`), its parents created where missing (modes, owners
 * and mtimes of the manifest, applied once the swaps are done); a parent that exists in the live
 * tree but is not a directory (a file, a symlink) is refused rather than written through. Only
 * once every path's data is read, verified, written and fsynced are they swapped in, one by one,
 * each atomically: a directory by swapIntoPlace, a file or symlink by rename over the old one.
 * A failure before the first swap removes the temps (and the parents it created, when empty),
 * leaving the tree as it was; a failure between two swaps (an I/O error) leaves the paths swapped
 * so far restored. The temps sit inside the component, where sweepRestoreLeftovers does not look.
 *
 * Times: Node's utimes keeps microseconds (libuv truncates tv_nsec), so a restored mtime is the
 * manifest's truncated to the microsecond, not ns-exact (the next backup re-reads restored files
 * anyway: their ctime and inode are new). atime is the time of the restore.
 */

export class PathNotInBackupError extends ComponentError {
  override name = 'PathNotInBackupError';
  constructor(readonly relPath: string) {
    super(`no such path in the backup: ${relPath}`);
  }
}

export interface RestoreTreeOptions {
  /** The manifest's entries, in path order. */
  entries: AsyncIterable<DirEntry>;
  source: ChunkSource;
  /** Absolute path of the component directory to replace (its parent must exist). */
  target: string;
  /** Real path of the tenant's folder: no restored symlink may lead outside it. */
  tenantRoot: string;
  /** Partial restore: only these paths of the manifest (files or directories) are replaced. */
  paths?: string[];
  signal?: AbortSignal;
  /** Throttled (about every 500 ms) and once at the end; totals are null (not known in advance). */
  onProgress?: (p: Progress) => void;
}

const WRITE_CONCURRENCY = 4;
const PROGRESS_INTERVAL_MS = 500;
const FILE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
const AS_ROOT = process.getuid?.() === 0;

/**
 * ns since the epoch (decimal string) -> seconds as utimes takes them. libuv keeps microseconds
 * only (it drops the rest of tv_nsec): aiming at the middle of the microsecond makes the double's
 * rounding error (~0.24 us today) land on the right one.
 */
function seconds(ns: string): number {
  const n = BigInt(ns);
  if (n < 0n) return Number(n) / 1e9;
  const frac = n % 1_000_000_000n;
  return Number(n / 1_000_000_000n) + Number(frac - (frac % 1000n) + 500n) / 1e9;
}

const nowSeconds = () => Date.now() / 1000;

function userFacing(err: unknown, rel: string): Error {
  if (err instanceof ComponentError || err instanceof IntegrityError || (err instanceof Error && err.name === 'AbortError')) return err;
  const code = errnoCode(err);
  if (code && /^E[A-Z0-9]+$/.test(code)) return new ComponentError(`restore failed: ${code} at ${JSON.stringify(rel === '' ? '.' : rel)}`);
  return err instanceof Error ? err : new Error(String(err));
}

/**
 * Above this many files, a restore is made durable by one syncfs(2) (`sync --file-system`)
 * rather than an fsync per entry: each fsync of a freshly written small file costs a journal
 * commit of its own, which for tens of thousands of files took longer than the restore itself,
 * while syncfs writes everything dirty on the file system in one pass (other writers' pages
 * too: the price, paid only for big trees). Where syncfs is unavailable or fails, fsyncTree.
 */
const SYNCFS_FILES = 1000;

async function syncfs(dir: string): Promise<boolean> {
  return promisify(execFile)('sync', ['--file-system', dir], { env: childEnv() }).then(
    () => true,
    () => false,
  );
}

/** Makes a tree durable (see SYNCFS_FILES): fsync per file and directory, or one syncfs; syncfs also where some entry would not open. */
async function syncTree(dir: string, files: number): Promise<void> {
  if (files > SYNCFS_FILES && (await syncfs(dir))) return;
  const { failed } = await fsyncTree(dir);
  if (failed > 0) await syncfs(dir);
}

/** Files at least this large are flushed early by the write-behind; smaller ones are left to the final sync (one flush each would cost a journal commit each). */
const WRITE_BEHIND_MIN = 256 * 1024;

async function applyDirMeta(abs: string, e: Pick<DirEntry, 'mode' | 'uid' | 'gid' | 'mtime_ns'>): Promise<void> {
  if (AS_ROOT) await chown(abs, e.uid, e.gid); // before chmod: chown clears setuid/setgid
  await chmod(abs, e.mode);
  await utimes(abs, nowSeconds(), seconds(e.mtime_ns));
}

class Progressor {
  readonly p: Progress = { bytes_done: 0, bytes_total: null, files_done: 0, files_total: null };
  private last = 0;
  constructor(private readonly cb: ((p: Progress) => void) | undefined) {}
  tick(force = false): void {
    if (!this.cb) return;
    const now = Date.now();
    if (!force && now - this.last < PROGRESS_INTERVAL_MS) return;
    this.last = now;
    this.cb({ ...this.p });
  }
}

interface WriteContext {
  source: ChunkSource;
  signal: AbortSignal | undefined;
  progress: Progressor;
}

/** A file's chunks are read this many at a time (the next slice fetched while one is written): bounds the plaintext in flight per file. */
const SLICE_CHUNKS = 4;
/** Files of one batch written at once (each is six file-system round trips). */
const FILES_IN_FLIGHT = 8;
/** Small files are restored in batches of up to this many files and bytes, one `source.read` per batch ... */
const BATCH_FILES = 256;
const BATCH_BYTES = 4 * 1024 * 1024;
/** ... a file larger than this is read on its own, slice by slice. */
const BATCH_FILE_MAX = 1024 * 1024;

/**
 * The verified plaintext of `chunks` as one byte stream, read SLICE_CHUNKS chunks per
 * `source.read` with the next slice started while one is consumed (so at most two slices of
 * plaintext are in memory, whatever the file's size).
 */
async function* readSliced(source: ChunkSource, chunks: string[]): AsyncGenerator<Buffer> {
  if (chunks.length <= SLICE_CHUNKS) {
    if (chunks.length === 0) return;
    const only = source.read(chunks);
    try {
      yield* only as AsyncIterable<Buffer>;
    } finally {
      only.destroy();
    }
    return;
  }
  const start = (at: number) => {
    const r = source.read(chunks.slice(at, at + SLICE_CHUNKS));
    r.on('error', () => {}); // surfaced when iterated
    r.read(0); // start fetching now
    return r;
  };
  let current = start(0);
  try {
    for (let at = 0; at < chunks.length; at += SLICE_CHUNKS) {
      const next = at + SLICE_CHUNKS < chunks.length ? start(at + SLICE_CHUNKS) : null;
      try {
        yield* current as AsyncIterable<Buffer>;
      } catch (err) {
        next?.destroy();
        throw err;
      }
      current.destroy();
      if (!next) break;
      current = next;
    }
  } finally {
    current.destroy();
  }
}

async function writeAll(handle: Awaited<ReturnType<typeof open>>, piece: Buffer, position: number): Promise<void> {
  let off = 0;
  while (off < piece.length) {
    const { bytesWritten } = await handle.write(piece, off, piece.length - off, position + off);
    off += bytesWritten;
  }
}

async function finishFile(handle: Awaited<ReturnType<typeof open>>, e: DirEntry, opts: { sync: boolean }): Promise<void> {
  if (AS_ROOT) await handle.chown(e.uid, e.gid);
  await handle.chmod(e.mode);
  await handle.utimes(nowSeconds(), seconds(e.mtime_ns));
  if (opts.sync) await handle.sync();
}

/** Writes one file of the manifest at `abs` (which must not exist), data verified by the source. */
async function writeFile(abs: string, e: DirEntry, ctx: WriteContext, opts: { sync: boolean }): Promise<void> {
  const handle = await open(abs, FILE_FLAGS, 0o600);
  try {
    let written = 0;
    if (e.size > 0) {
      for await (const piece of readSliced(ctx.source, e.chunks ?? [])) {
        ctx.signal?.throwIfAborted();
        if (written + piece.length > e.size) throw new IntegrityError(`file ${e.path}: the stored data is longer than its size (${e.size} bytes)`);
        await writeAll(handle, piece, written);
        written += piece.length;
        ctx.progress.p.bytes_done += piece.length;
        ctx.progress.tick();
      }
    }
    if (written !== e.size) throw new IntegrityError(`file ${e.path}: the stored data holds ${written} bytes, its size is ${e.size}`);
    await finishFile(handle, e, opts);
  } finally {
    await handle.close();
  }
  ctx.progress.p.files_done++;
  ctx.progress.tick();
}

/**
 * Writes small files (each at `dest/rel`, none existing yet) from ONE read of all their chunks,
 * in order: each file takes exactly its size in bytes from the stream. A stream that ends inside
 * a file, or goes on past the last, is an IntegrityError naming the file, as in writeFile.
 */
async function writeBatch(dest: string, files: { rel: string; e: DirEntry }[], ctx: WriteContext, onFile?: (rel: string, size: number) => void): Promise<void> {
  const chunks = files.flatMap((f) => f.e.chunks ?? []);
  const stream = chunks.length > 0 ? ctx.source.read(chunks) : null;
  const it = (stream as AsyncIterable<Buffer> | null)?.[Symbol.asyncIterator]();
  let pending: Buffer | null = null;
  /** The next `max` bytes or fewer (null at the end of the stream). */
  const take = async (max: number): Promise<Buffer | null> => {
    if (!pending || pending.length === 0) {
      const n = it ? await it.next() : { done: true as const, value: undefined };
      if (n.done) return null;
      pending = n.value;
    }
    const piece: Buffer = pending!.length <= max ? pending! : pending!.subarray(0, max);
    pending = pending!.length <= max ? null : pending!.subarray(max);
    return piece;
  };
  // Each file's bytes are taken from the stream in order; its writes (open, write, owner, mode,
  // times, close: six round trips to the file system) then run alongside the next files'.
  const jobs = new Set<Promise<void>>();
  let failed: unknown = null;
  const writeOne = async (rel: string, e: DirEntry, pieces: Buffer[]) => {
    const handle = await open(path.join(dest, rel), FILE_FLAGS, 0o600);
    try {
      let written = 0;
      for (const piece of pieces) {
        await writeAll(handle, piece, written);
        written += piece.length;
      }
      await finishFile(handle, e, { sync: false });
    } finally {
      await handle.close();
    }
    ctx.progress.p.bytes_done += e.size;
    ctx.progress.p.files_done++;
    ctx.progress.tick();
    onFile?.(rel, e.size);
  };
  try {
    for (const { rel, e } of files) {
      ctx.signal?.throwIfAborted();
      if (failed) throw failed;
      const pieces: Buffer[] = [];
      let got = 0;
      while (got < e.size) {
        const piece = await take(e.size - got);
        if (!piece) break;
        pieces.push(piece);
        got += piece.length;
      }
      if (got !== e.size) throw new IntegrityError(`file ${e.path}: the stored data holds ${got} bytes, its size is ${e.size}`);
      const job: Promise<void> = writeOne(rel, e, pieces).then(
        () => void jobs.delete(job),
        (err: unknown) => {
          jobs.delete(job);
          failed ??= err;
        },
      );
      jobs.add(job);
      while (jobs.size >= FILES_IN_FLIGHT) await Promise.race(jobs);
    }
    await Promise.all(jobs);
    if (failed) throw failed;
    if ((pending && (pending as Buffer).length > 0) || (it && !(await it.next()).done)) {
      const lastFile = files[files.length - 1]!.e;
      throw new IntegrityError(`file ${lastFile.path}: the stored data is longer than its size (${lastFile.size} bytes)`);
    }
  } finally {
    await Promise.all(jobs); // nothing is left writing when the caller cleans up
    stream?.destroy();
  }
}

/** A large file goes to source.writeFiles in ranges of this many chunks (one call each, in order). */
const RANGE_CHUNKS = 16;

const isAbort = (err: unknown) => err instanceof Error && err.name === 'AbortError';

function writeJob(abs: string, e: DirEntry, chunks: string[], at: { offset: number; create: boolean; finish: boolean }): WriteFileJob {
  return { abs, path: e.path, chunks, size: e.size, mode: e.mode, uid: e.uid, gid: e.gid, mtime: seconds(e.mtime_ns), ...at };
}

/**
 * writeBatch through source.writeFiles (one call for all the files). Should it fail, what it
 * wrote is removed and the batch goes writeBatch's way, which names any problem precisely.
 */
async function writeBatchFast(dest: string, files: { rel: string; e: DirEntry }[], ctx: WriteContext, onFile?: (rel: string, size: number) => void): Promise<void> {
  ctx.signal?.throwIfAborted();
  try {
    await ctx.source.writeFiles!(files.map(({ rel, e }) => writeJob(path.join(dest, rel), e, e.chunks ?? [], { offset: 0, create: true, finish: true })));
  } catch (err) {
    if (isAbort(err)) throw err;
    await Promise.all(files.map(({ rel }) => rm(path.join(dest, rel), { force: true })));
    return writeBatch(dest, files, ctx, onFile);
  }
  for (const { rel, e } of files) {
    ctx.progress.p.bytes_done += e.size;
    ctx.progress.p.files_done++;
    onFile?.(rel, e.size);
  }
  ctx.progress.tick();
}

/** writeFile through source.writeFiles, RANGE_CHUNKS chunks a call; on failure as writeBatchFast. */
async function writeFileFast(abs: string, e: DirEntry, ctx: WriteContext): Promise<void> {
  const chunks = e.chunks ?? [];
  let done = 0;
  try {
    let offset = 0;
    for (let at = 0; at < chunks.length || at === 0; at += RANGE_CHUNKS) {
      ctx.signal?.throwIfAborted();
      const part = chunks.slice(at, at + RANGE_CHUNKS);
      const written = await ctx.source.writeFiles!([writeJob(abs, e, part, { offset, create: at === 0, finish: at + RANGE_CHUNKS >= chunks.length })]);
      ctx.progress.p.bytes_done += written;
      done += written;
      offset += written;
      ctx.progress.tick();
    }
  } catch (err) {
    ctx.progress.p.bytes_done -= done;
    if (isAbort(err)) throw err;
    await rm(abs, { force: true });
    return writeFile(abs, e, ctx, { sync: false });
  }
  ctx.progress.p.files_done++;
  ctx.progress.tick();
}

async function makeSymlink(abs: string, e: DirEntry): Promise<void> {
  await symlink(e.link_target as string, abs);
  if (AS_ROOT) await lchown(abs, e.uid, e.gid);
  await lutimes(abs, nowSeconds(), seconds(e.mtime_ns));
}

/**
 * Builds entries into the directory `dest` (which exists), a few files at a time: small files in
 * batches (one read of their chunks per batch), larger ones each on its own. A directory's
 * metadata is applied once everything inside it is written, without holding up the entries that
 * follow it.
 */
class Materializer {
  private readonly dirs: { rel: string; entry: DirEntry }[] = [];
  /** Jobs under way: a file or a batch, with the paths they write. */
  private readonly inflight = new Map<Promise<void>, string[]>();
  /** Directories left behind, waiting for the jobs inside them before their metadata is applied. */
  private readonly closing = new Set<Promise<void>>();
  private batch: { rel: string; e: DirEntry }[] = [];
  private batchBytes = 0;
  private failure: unknown;

  constructor(
    private readonly dest: string,
    private readonly ctx: WriteContext,
    private readonly onFile?: (rel: string, size: number) => void,
  ) {}

  /** `rel`: the entry's path relative to `dest`. */
  async add(e: DirEntry, rel: string): Promise<void> {
    this.ctx.signal?.throwIfAborted();
    if (this.failure) throw this.failure;
    await this.closeDirsNotContaining(rel);
    const abs = path.join(this.dest, rel);
    if (e.type === 'directory') {
      await mkdir(abs, 0o700);
      this.dirs.push({ rel, entry: e });
    } else if (e.type === 'symlink') {
      await makeSymlink(abs, e);
    } else if (e.size <= BATCH_FILE_MAX) {
      if (this.batch.length >= BATCH_FILES || this.batchBytes + e.size > BATCH_BYTES) await this.dispatchBatch();
      this.batch.push({ rel, e });
      this.batchBytes += e.size;
    } else {
      await this.start(
        (this.ctx.source.writeFiles ? writeFileFast(abs, e, this.ctx) : writeFile(abs, e, this.ctx, { sync: false })).then(() => this.onFile?.(rel, e.size)),
        [rel],
      );
    }
  }

  private async start(job: Promise<void>, rels: string[]): Promise<void> {
    this.inflight.set(job, rels);
    job.then(
      () => this.inflight.delete(job),
      (err: unknown) => {
        this.inflight.delete(job);
        this.failure ??= err;
      },
    );
    while (this.inflight.size >= WRITE_CONCURRENCY) await this.waitOne();
  }

  private async dispatchBatch(): Promise<void> {
    if (this.batch.length === 0) return;
    const files = this.batch;
    this.batch = [];
    this.batchBytes = 0;
    await this.start(
      (this.ctx.source.writeFiles ? writeBatchFast : writeBatch)(this.dest, files, this.ctx, this.onFile),
      files.map((f) => f.rel),
    );
  }

  private async waitOne(): Promise<void> {
    await Promise.race([...this.inflight.keys()]).catch(() => {});
    if (this.failure) throw this.failure;
  }

  /** The jobs writing inside `dirRel` now (a batch still being filled is started first). */
  private async jobsInside(dirRel: string): Promise<Promise<void>[]> {
    if (this.batch.some((f) => isSameOrInside(dirRel, f.rel))) await this.dispatchBatch();
    return [...this.inflight].filter(([, rels]) => rels.some((rel) => isSameOrInside(dirRel, rel))).map(([job]) => job);
  }

  private async closeDirsNotContaining(rel: string | null): Promise<void> {
    for (let top = this.dirs[this.dirs.length - 1]; top && (rel === null || !isSameOrInside(top.rel, rel) || top.rel === rel); top = this.dirs[this.dirs.length - 1]) {
      this.dirs.pop();
      const dir = top;
      // Jobs inside it, and the closing of directories inside it, all started before now.
      const inside = [...(await this.jobsInside(dir.rel)), ...this.closing];
      const closed: Promise<void> = Promise.allSettled(inside)
        .then(() => {
          if (this.failure) return;
          return applyDirMeta(path.join(this.dest, dir.rel), dir.entry);
        })
        .catch((err: unknown) => {
          this.failure ??= err;
        })
        .finally(() => this.closing.delete(closed));
      this.closing.add(closed);
    }
  }

  /** Waits for every write and applies the metadata of the directories still open. */
  async finish(): Promise<void> {
    await this.dispatchBatch();
    await this.closeDirsNotContaining(null);
    while (this.inflight.size > 0 || this.closing.size > 0) await Promise.allSettled([...this.inflight.keys(), ...this.closing]);
    if (this.failure) throw this.failure;
  }

  /** After a failure: waits until nothing writes into `dest` any more. */
  async settle(): Promise<void> {
    this.batch = [];
    while (this.inflight.size > 0 || this.closing.size > 0) await Promise.allSettled([...this.inflight.keys(), ...this.closing]);
  }
}

const outside = (rel: string) => new ComponentError(`symbolic link ${rel} points outside the tenant's folder`);

/** Replaces the tree at `opts.target` (whole) or the given `opts.paths` of it (see the notes at the top). */
export async function restoreTree(opts: RestoreTreeOptions): Promise<void> {
  if (opts.paths !== undefined) return restorePaths(opts, opts.paths);
  return restoreWhole(opts);
}

async function restoreWhole(opts: RestoreTreeOptions): Promise<void> {
  const { target, signal } = opts;
  signal?.throwIfAborted();
  const tenantRootReal = await realpath(opts.tenantRoot);
  if (!isWithin(tenantRootReal, target) || target === tenantRootReal) throw new PathEscapeError("the restore target is not inside the tenant's folder");
  const progress = new Progressor(opts.onProgress);
  const ctx: WriteContext = { source: opts.source, signal, progress };
  let temp: string | undefined;
  let current = '';
  try {
    temp = await makeRestoreTemp(target);
    const flusher = writeBehind(temp);
    const building = new Materializer(temp, ctx, (rel, size) => size >= WRITE_BEHIND_MIN && flusher.file(rel, size));
    const links = new Map<string, string>();
    const validator = new ManifestValidator();
    try {
      let n = 0;
      for await (const raw of opts.entries) {
        const e = validator.check(raw, `manifest entry ${++n}`);
        current = e.path;
        if (e.type === 'symlink') links.set(e.path, e.link_target as string);
        await building.add(e, e.path);
      }
      current = '';
      await building.finish();
    } catch (err) {
      await building.settle();
      throw err;
    } finally {
      await flusher.stop();
    }
    // Every link must lead inside the tenant's folder once the tree is in place.
    const resolve = linkResolver(target, links);
    for (const rel of links.keys()) {
      const outcome = await resolve(rel);
      if ('resolved' in outcome && !isWithin(tenantRootReal, outcome.resolved)) throw outside(rel);
    }
    // The root: as the directory it replaces, or 0755.
    const old = await lstat(target).catch(() => null);
    if (old?.isDirectory()) {
      if (AS_ROOT) await chown(temp, old.uid, old.gid);
      await chmod(temp, old.mode & 0o7777);
    } else {
      await chmod(temp, 0o755);
    }
    await syncTree(temp, progress.p.files_done);
    signal?.throwIfAborted();
    const staged = temp;
    temp = undefined;
    await swapIntoPlace(staged, target);
    progress.tick(true);
  } catch (err) {
    if (temp) await removeTree(temp);
    throw userFacing(err, current);
  }
}

/** Requested paths: checked, deduplicated, those inside another dropped, in path order. */
function normalizePaths(paths: string[]): string[] {
  if (!Array.isArray(paths) || paths.length === 0) throw new PathEscapeError('paths must name at least one path');
  for (const p of paths) {
    const problem = checkRelativePath(p);
    if (problem) throw new PathEscapeError(`${problem}: ${JSON.stringify(String(p))}`);
  }
  const sorted = [...new Set(paths)].sort(comparePaths);
  const out: string[] = [];
  for (const p of sorted) {
    const last = out[out.length - 1];
    if (last === undefined || !isSameOrInside(last, p)) out.push(p);
  }
  return out;
}

interface Plan {
  rel: string;
  entry: DirEntry;
  /** Live absolute path to replace. */
  live: string;
  /** Where its new version is built (a sibling of `live`). */
  temp: string;
  building?: Materializer;
  swapped: boolean;
}

async function restorePaths(opts: RestoreTreeOptions, requested: string[]): Promise<void> {
  const { target, signal } = opts;
  const wanted = normalizePaths(requested);
  signal?.throwIfAborted();
  const tenantRootReal = await realpath(opts.tenantRoot);
  if (!isWithin(tenantRootReal, target) || target === tenantRootReal) throw new PathEscapeError("the restore target is not inside the tenant's folder");
  const progress = new Progressor(opts.onProgress);
  const ctx: WriteContext = { source: opts.source, signal, progress };
  const plans: Plan[] = [];
  /** Directories this restore created in the live tree (outermost first), with their manifest entries (none for the target). */
  const created: { abs: string; entry?: DirEntry }[] = [];
  const links = new Map<string, string>();
  let current = '';
  let swapping = false;

  /** Makes sure the live directory `abs` exists as a real directory, creating it when missing. */
  const ensureDir = async (abs: string, rel: string, entry?: DirEntry) => {
    let st;
    try {
      st = await lstat(abs);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
      await mkdir(abs, 0o700);
      created.push({ abs, ...(entry && { entry }) });
      return;
    }
    if (!st.isDirectory()) throw new ComponentError(`cannot restore below ${JSON.stringify(rel)}: it is not a directory in the current tree`);
  };

  const start = async (e: DirEntry, ancestors: DirEntry[]): Promise<Plan> => {
    await ensureDir(target, '.');
    for (const a of ancestors) await ensureDir(path.join(target, a.path), a.path, a);
    const live = path.join(target, e.path);
    if (e.type === 'directory') {
      const temp = await makeRestoreTemp(live);
      const plan: Plan = { rel: e.path, entry: e, live, temp, swapped: false, building: new Materializer(temp, ctx) };
      plans.push(plan);
      return plan;
    }
    const temp = path.join(path.dirname(live), `.${path.basename(live)}.restore-${randomBytes(4).toString('hex')}`);
    const plan: Plan = { rel: e.path, entry: e, live, temp, swapped: false };
    plans.push(plan);
    if (e.type === 'file') await writeFile(temp, e, ctx, { sync: true });
    else await makeSymlink(temp, e);
    return plan;
  };

  const finish = async (plan: Plan) => {
    if (!plan.building) return;
    await plan.building.finish();
    await applyDirMeta(plan.temp, plan.entry);
    await syncTree(plan.temp, progress.p.files_done);
  };

  try {
    const validator = new ManifestValidator();
    const ancestors: DirEntry[] = [];
    let open: Plan | undefined;
    let next = 0; // index into wanted
    let n = 0;
    for await (const raw of opts.entries) {
      const e = validator.check(raw, `manifest entry ${++n}`);
      current = e.path;
      while (ancestors.length > 0 && !isSameOrInside((ancestors[ancestors.length - 1] as DirEntry).path, e.path)) ancestors.pop();
      if (open && isSameOrInside(open.rel, e.path)) {
        if (e.type === 'symlink') links.set(e.path, e.link_target as string);
        await (open.building as Materializer).add(e, path.posix.relative(open.rel, e.path));
      } else {
        if (open) await finish(open);
        open = undefined;
        if (next < wanted.length && comparePaths(wanted[next] as string, e.path) < 0) throw new PathNotInBackupError(wanted[next] as string);
        if (next < wanted.length && wanted[next] === e.path) {
          next++;
          if (e.type === 'symlink') links.set(e.path, e.link_target as string);
          open = await start(e, ancestors);
          if (!open.building) open = undefined;
        }
      }
      if (e.type === 'directory') ancestors.push(e);
      if (!open && next >= wanted.length) break; // nothing further is needed
    }
    current = '';
    if (open) await finish(open);
    if (next < wanted.length) throw new PathNotInBackupError(wanted[next] as string);

    // Links judged where they will be after the swaps: the restored paths through their new
    // links, the rest of the tree (and beyond) through the disk.
    const onDisk = diskLookup();
    const linkAt: LinkLookup = (p) => {
      if (isWithin(target, p) && p !== target) {
        const rel = path.relative(target, p).split(path.sep).join('/');
        if (wanted.some((w) => isSameOrInside(w, rel))) return links.get(rel) ?? null;
      }
      return onDisk(p);
    };
    for (const [rel, linkTarget] of links) {
      const outcome = await follow(path.dirname(path.join(target, rel)), linkTarget, linkAt);
      if ('resolved' in outcome && !isWithin(tenantRootReal, outcome.resolved)) throw outside(rel);
    }
    signal?.throwIfAborted();

    // The point of no return: every path's new version is complete and durable.
    swapping = true;
    for (const plan of plans) {
      current = plan.rel;
      const old = await lstat(plan.live).catch(() => null);
      if (plan.entry.type === 'directory' || old?.isDirectory()) {
        await swapIntoPlace(plan.temp, plan.live);
      } else {
        await rename(plan.temp, plan.live);
        await fsyncDirectory(path.dirname(plan.live));
      }
      plan.swapped = true;
    }
    current = '';
    for (const dir of [...created].reverse()) {
      if (dir.entry) await applyDirMeta(dir.abs, dir.entry);
      else await chmod(dir.abs, 0o755);
      await fsyncDirectory(path.dirname(dir.abs));
    }
    progress.tick(true);
  } catch (err) {
    for (const plan of plans) {
      if (plan.swapped) continue;
      await plan.building?.settle();
      await removeTree(plan.temp);
    }
    if (!swapping) for (const dir of [...created].reverse()) await rmdir(dir.abs).catch(() => {});
    throw userFacing(err, current);
  }
}
