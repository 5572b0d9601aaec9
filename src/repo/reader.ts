import { Readable } from 'node:stream';
import type pg from 'pg';
import type { ArtifactStore } from '../storage/types.js';
import { packKey } from './layout.js';
import type { SealPool } from './seal-pool.js';
import { IntegrityError, type ChunkId, type ChunkSource, type TenantKeys, type WriteFileJob } from './types.js';

export interface ReaderOptions {
  pool: pg.Pool;
  primary: ArtifactStore;
  /** Read where a pack's primary copy fails, if the pack was copied there. */
  secondary: ArtifactStore | null;
  seal: SealPool;
  keys: TenantKeys;
  tenantId: string;
  signal?: AbortSignal;
  /** Called once per pack read from the secondary because the primary failed. */
  onFallback?: (packId: string, problem: string) => void;
}

interface Location {
  id: ChunkId;
  packId: string;
  offset: number;
  length: number;
  rawLength: number;
  secondary: boolean;
}

/** Restored files get their owners only when the service runs as root (as tree-restore.ts). */
const AS_ROOT = process.getuid?.() === 0;

/** Chunk locations are looked up this many ids at a time ... */
const LOCATE_BATCH = 1024;
/** ... and fetched in windows of at most this many plaintext bytes (or one chunk), the next window while one is consumed. */
const WINDOW_BYTES = 8 * 1024 * 1024;
/** Packs of one window fetched at once. */
const PACKS_IN_FLIGHT = 4;
/** Adjacent ranges of one pack closer than this are fetched by one request. */
const COALESCE_GAP = 256 * 1024;

/**
 * The read side of a tenant's repository: chunk locations from PostgreSQL, byte ranges from the
 * store (never whole packs), every chunk opened and checked against its id before its bytes are
 * pushed. A pack whose primary range fails (missing, short, or a chunk in it does not verify) is
 * read from the secondary instead, if it has a copy there; otherwise the stream errors with an
 * IntegrityError that says which chunk and what went wrong.
 */
export function createChunkSource(opts: ReaderOptions): ChunkSource {
  async function locate(ids: readonly ChunkId[]): Promise<Map<ChunkId, Location>> {
    const res = await opts.pool.query<{ id: string; pack_id: string; pack_offset: number; length: number; raw_length: number; secondary_status: string | null }>(
      // an index probe per id and per chunk's pack, whatever the statistics (see refs.ts liveCte)
      `SELECT c.id, c.pack_id, c.pack_offset, c.length, c.raw_length, p.secondary_status
       FROM unnest($2::text[]) AS u(id)
       CROSS JOIN LATERAL (SELECT c.id, c.pack_id, c.pack_offset, c.length, c.raw_length FROM chunks c WHERE c.tenant_id = $1 AND c.id = u.id LIMIT 1) c
       CROSS JOIN LATERAL (SELECT p.secondary_status FROM packs p WHERE p.id = c.pack_id LIMIT 1) p`,
      [opts.tenantId, [...new Set(ids)]],
    );
    return new Map(
      res.rows.map((r) => [r.id, { id: r.id, packId: r.pack_id, offset: r.pack_offset, length: r.length, rawLength: r.raw_length, secondary: r.secondary_status === 'present' }]),
    );
  }

  /** Opens the sealed blobs of `locs` (all in one pack) fetched from `store`. */
  async function fetchFrom(store: ArtifactStore, locs: Location[]): Promise<Map<ChunkId, Buffer>> {
    const out = new Map<ChunkId, Buffer>();
    const sorted = [...locs].sort((a, b) => a.offset - b.offset);
    const key = packKey(opts.tenantId, sorted[0]!.packId);
    for (let i = 0; i < sorted.length; ) {
      let j = i + 1;
      let end = sorted[i]!.offset + sorted[i]!.length;
      while (j < sorted.length && sorted[j]!.offset - end <= COALESCE_GAP) {
        end = Math.max(end, sorted[j]!.offset + sorted[j]!.length);
        j++;
      }
      const start = sorted[i]!.offset;
      const bytes = await store.getRange(key, start, end);
      const group = sorted.slice(i, j);
      const plains = await opts.seal.open(
        opts.keys,
        group.map((l) => ({ id: l.id, blob: bytes.subarray(l.offset - start, l.offset - start + l.length) })),
      );
      group.forEach((l, k) => {
        const plain = plains[k]!;
        if (l.rawLength >= 0 && plain.length !== l.rawLength) throw new IntegrityError(`chunk ${l.id.slice(0, 12)}: ${plain.length} bytes, ${l.rawLength} recorded`);
        out.set(l.id, plain);
      });
      i = j;
    }
    return out;
  }

  async function fetchPack(locs: Location[]): Promise<Map<ChunkId, Buffer>> {
    try {
      return await fetchFrom(opts.primary, locs);
    } catch (err) {
      const problem = describe(err);
      const first = locs[0]!;
      if (!opts.secondary || !first.secondary) throw new IntegrityError(`pack ${first.packId.slice(0, 12)}: ${problem}`);
      opts.onFallback?.(first.packId, problem);
      try {
        return await fetchFrom(opts.secondary, locs);
      } catch (err2) {
        throw new IntegrityError(`pack ${first.packId.slice(0, 12)}: primary copy: ${problem}; secondary copy: ${describe(err2)}`);
      }
    }
  }

  /** The plaintext of a window of located chunks, in order; the packs of the window in parallel. */
  async function fetchWindow(window: Location[]): Promise<Buffer[]> {
    opts.signal?.throwIfAborted();
    const byPack = new Map<string, Map<ChunkId, Location>>();
    for (const l of window) {
      const m = byPack.get(l.packId) ?? new Map<ChunkId, Location>();
      m.set(l.id, l);
      byPack.set(l.packId, m);
    }
    const plains = new Map<ChunkId, Buffer>();
    const packs = [...byPack.values()];
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(PACKS_IN_FLIGHT, packs.length) }, async () => {
        for (let i = next++; i < packs.length; i = next++) for (const [id, p] of await fetchPack([...packs[i]!.values()])) plains.set(id, p);
      }),
    );
    return window.map((l) => plains.get(l.id)!);
  }

  /** The locations of `chunks`, in order, looked up LOCATE_BATCH at a time; a missing chunk is an IntegrityError. */
  async function* located(chunks: ChunkId[]): AsyncGenerator<Location> {
    for (let at = 0; at < chunks.length; at += LOCATE_BATCH) {
      const ids = chunks.slice(at, at + LOCATE_BATCH);
      const locs = await locate(ids);
      for (const id of ids) {
        const l = locs.get(id);
        if (!l) throw new IntegrityError(`chunk ${id.slice(0, 12)} is missing from the repository`);
        yield l;
      }
    }
  }

  /** Windows of at most WINDOW_BYTES of plaintext (at least one chunk). */
  async function* windows(chunks: ChunkId[]): AsyncGenerator<Location[]> {
    let window: Location[] = [];
    let bytes = 0;
    for await (const l of located(chunks)) {
      const size = l.rawLength >= 0 ? l.rawLength : l.length;
      if (window.length > 0 && bytes + size > WINDOW_BYTES) {
        yield window;
        window = [];
        bytes = 0;
      }
      window.push(l);
      bytes += size;
    }
    if (window.length > 0) yield window;
  }

  const localPath = opts.primary.localPath?.bind(opts.primary);
  const writeFiles = localPath
    ? async (jobs: WriteFileJob[]): Promise<number> => {
        opts.signal?.throwIfAborted();
        const ids = jobs.flatMap((j) => j.chunks);
        const locs = new Map<ChunkId, Location>();
        for (let at = 0; at < ids.length; at += LOCATE_BATCH) for (const [id, l] of await locate(ids.slice(at, at + LOCATE_BATCH))) locs.set(id, l);
        const packFiles = new Map<string, string>();
        const packFile = (packId: string) => {
          let f = packFiles.get(packId);
          if (f === undefined) packFiles.set(packId, (f = localPath(packKey(opts.tenantId, packId))));
          return f;
        };
        const located = jobs.map((j) => ({
          ...j,
          chunks: j.chunks.map((id) => {
            const l = locs.get(id);
            if (!l) throw new IntegrityError(`chunk ${id.slice(0, 12)} is missing from the repository`);
            return { id, pack: packFile(l.packId), offset: l.offset, length: l.length, rawLength: l.rawLength };
          }),
        }));
        return opts.seal.restore(opts.keys, located, { asRoot: AS_ROOT, now: Date.now() / 1000 });
      }
    : undefined;

  return {
    ...(writeFiles && { writeFiles }),
    read(chunks: ChunkId[]): Readable {
      async function* generate(): AsyncGenerator<Buffer> {
        const it = windows(chunks);
        const fetchNext = async (): Promise<Buffer[] | null> => {
          const w = await it.next();
          return w.done ? null : fetchWindow(w.value);
        };
        let next: Promise<Buffer[] | null> | null = fetchNext();
        try {
          while (next) {
            const current = await next;
            if (current === null) break;
            next = fetchNext();
            next.catch(() => {}); // surfaced when awaited
            for (const b of current) yield b;
          }
        } finally {
          await it.return(undefined);
        }
      }
      return Readable.from(generate(), { objectMode: false, highWaterMark: 1 << 20 });
    },
  };
}

function describe(err: unknown): string {
  if (err instanceof IntegrityError) return err.message;
  if (err instanceof Error) {
    if (err.name === 'ArtifactNotFoundError') return 'the pack is missing';
    if (err.name === 'RangeNotSatisfiableError') return 'the pack is truncated';
    return err.message;
  }
  return String(err);
}
