import { Readable } from 'node:stream';
import type pg from 'pg';
import type { ArtifactStore } from '../storage/types.js';
import { packKey } from './layout.js';
import type { SealPool } from './seal-pool.js';
import { IntegrityError, type ChunkId, type ChunkSource, type TenantKeys } from './types.js';

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

/** Chunks are located and fetched this many at a time; the next window is fetched while one is consumed. */
const WINDOW = 32;
/** Adjacent ranges of one pack closer than this are fetched by one request. */
const COALESCE_GAP = 256 * 1024;

/**
 * The read side of a tenant's repository: chunk locations from PostgreSQL, byte ranges from the
 * store (never whole packs), every chunk opened and checked against its id before its bytes are
 * pushed. A pack whose primary range fails (missing, short, or a chunk in it does not verify) is
 * read from the secondary instead, if it has a copy there; otherwise the stream errors with an
 * IntegrityError that says which chunk and what went wrong.
 */
export function createChunkSource(opts: ReaderOptions): ChunkSource & { locate(ids: readonly ChunkId[]): Promise<Map<ChunkId, Location>> } {
  async function locate(ids: readonly ChunkId[]): Promise<Map<ChunkId, Location>> {
    const res = await opts.pool.query<{ id: string; pack_id: string; pack_offset: number; length: number; raw_length: number; secondary_status: string | null }>(
      `SELECT c.id, c.pack_id, c.pack_offset, c.length, c.raw_length, p.secondary_status
       FROM chunks c JOIN packs p ON p.id = c.pack_id WHERE c.tenant_id = $1 AND c.id = ANY($2::text[])`,
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

  async function fetchWindow(ids: ChunkId[]): Promise<Buffer[]> {
    opts.signal?.throwIfAborted();
    const locs = await locate(ids);
    const byPack = new Map<string, Location[]>();
    for (const id of new Set(ids)) {
      const l = locs.get(id);
      if (!l) throw new IntegrityError(`chunk ${id.slice(0, 12)} is missing from the repository`);
      const list = byPack.get(l.packId) ?? [];
      list.push(l);
      byPack.set(l.packId, list);
    }
    const plains = new Map<ChunkId, Buffer>();
    for (const list of byPack.values()) for (const [id, p] of await fetchPack(list)) plains.set(id, p);
    return ids.map((id) => plains.get(id)!);
  }

  return {
    locate,
    read(chunks: ChunkId[]): Readable {
      async function* generate(): AsyncGenerator<Buffer> {
        let next: Promise<Buffer[]> | null = chunks.length > 0 ? fetchWindow(chunks.slice(0, WINDOW)) : null;
        for (let at = 0; next; ) {
          const current = next;
          at += WINDOW;
          next = at < chunks.length ? fetchWindow(chunks.slice(at, at + WINDOW)) : null;
          next?.catch(() => {}); // surfaced when awaited
          for (const b of await current) yield b;
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
