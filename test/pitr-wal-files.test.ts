import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb, type Db } from '../src/db/client.js';
import { storedWal, WalGap } from '../src/modules/pitr/wal-files.js';
import { createTestDatabase } from './helpers/db.js';

// storedWal (src/modules/pitr/wal-files.ts): which stored WAL files replay a base backup up to a
// point in time, on rows written directly (the archiver's own test covers real streaming).

const SEG = 16n * 1024n * 1024n;
let tdb: Awaited<ReturnType<typeof createTestDatabase>>;
let db: Db;
let tenantId: string;

beforeAll(async () => {
  tdb = await createTestDatabase();
  db = createDb(tdb.url, { poolSize: 2, connectTimeoutMs: 5000 });
  tenantId = randomUUID();
  await db.tenant.create({ data: { id: tenantId, name: `t-${tenantId.slice(0, 8)}`, dataDir: tenantId } });
});
afterAll(async () => {
  await db.$disconnect();
  await tdb.drop();
});

const t0 = new Date('2026-01-01T00:00:00Z');
const at = (s: number) => new Date(t0.getTime() + s * 1000);
const name = (tli: number, n: bigint) => `${tli.toString(16).toUpperCase().padStart(8, '0')}${(n / 256n).toString(16).toUpperCase().padStart(8, '0')}${(n % 256n).toString(16).toUpperCase().padStart(8, '0')}`;

async function streamWith(files: { n: bigint; tli?: number; partial?: number; covers: number; status?: string; name?: string }[]): Promise<string> {
  const id = randomUUID();
  await db.walStream.create({ data: { id, tenantId, clusterId: randomUUID(), component: 'db', slotName: `bk_pitr_${id.replace(/-/g, '')}`, urlEnc: 'x' } });
  for (const f of files) {
    const start = f.n * SEG;
    await db.walSegment.create({
      data: {
        id: randomUUID(),
        streamId: id,
        tenantId,
        name: f.name ?? name(f.tli ?? 1, f.n),
        timeline: f.tli ?? 1,
        startLsn: f.name ? 0n : start,
        endLsn: f.name ? 0n : f.partial !== undefined ? start + BigInt(f.partial) : start + SEG,
        partial: f.partial !== undefined,
        coversUntil: at(f.covers),
        status: f.status ?? 'stored',
        sha256: 'x',
        manifest: { chunks: [], bytes: 0 },
      },
    });
  }
  return id;
}

describe('storedWal', () => {
  it('gives the segment holding the start, then each next one, up to the first that covers the time', async () => {
    const id = await streamWith([{ n: 3n, covers: 0 }, { n: 4n, covers: 10 }, { n: 5n, covers: 20 }, { n: 6n, covers: 30 }, { n: 7n, partial: 4096, covers: 35 }, { n: 0n, name: '00000002.history', covers: 0 }]);
    const r = await storedWal(db, id, { fromLsn: 4n * SEG + 12345n, untilTime: at(15) });
    expect(r.segments.map((s) => s.name)).toEqual([name(1, 4n), name(1, 5n)]);
    expect(r.history.map((h) => h.name)).toEqual(['00000002.history']);
    // Up to the newest partial, which says how far its bytes go.
    const end = await storedWal(db, id, { fromLsn: 3n * SEG, untilTime: at(34) });
    expect(end.segments.map((s) => s.name)).toEqual([3n, 4n, 5n, 6n, 7n].map((n) => name(1, n)));
    expect(end.segments.at(-1)).toMatchObject({ partial: true, endLsn: 7n * SEG + 4096n });
    // A start exactly at a segment's beginning is in that segment, not the one before.
    expect((await storedWal(db, id, { fromLsn: 5n * SEG, untilTime: at(20) })).segments.map((s) => s.name)).toEqual([name(1, 5n)]);
  });

  it('refuses a time not stored yet, a start before the stored WAL, and a gap', async () => {
    const id = await streamWith([{ n: 3n, covers: 5 }, { n: 4n, covers: 10 }, { n: 6n, covers: 30 }, { n: 7n, partial: 100, covers: 40 }]);
    await expect(storedWal(db, id, { fromLsn: 3n * SEG, untilTime: at(20) })).rejects.toThrow(/gap at 0\/5000000/);
    await expect(storedWal(db, id, { fromLsn: 2n * SEG, untilTime: at(1) })).rejects.toThrow(WalGap);
    await expect(storedWal(db, id, { fromLsn: 6n * SEG, untilTime: at(41) })).rejects.toThrow(/reaches only 2026-01-01T00:00:40/);
    // Past a partial's stored end is not in it.
    await expect(storedWal(db, id, { fromLsn: 7n * SEG + 200n, untilTime: at(40) })).rejects.toThrow(WalGap);
    expect((await storedWal(db, id, { fromLsn: 6n * SEG, untilTime: at(40) })).segments).toHaveLength(2);
  });

  it('ignores files still being written, and takes the newest timeline of a position', async () => {
    const id = await streamWith([{ n: 3n, covers: 5 }, { n: 4n, covers: 10, status: 'writing' }, { n: 4n, covers: 10, tli: 2 }, { n: 5n, covers: 20, tli: 2 }]);
    const r = await storedWal(db, id, { fromLsn: 3n * SEG, untilTime: at(15) });
    expect(r.segments.map((s) => s.name)).toEqual([name(1, 3n), name(2, 4n), name(2, 5n)]);
    const bare = await streamWith([{ n: 3n, covers: 5 }, { n: 4n, covers: 10, status: 'writing' }]);
    await expect(storedWal(db, bare, { fromLsn: 3n * SEG, untilTime: at(8) })).rejects.toThrow(/reaches only/);
  });
});
