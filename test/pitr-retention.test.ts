import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatLsn } from '../src/components/pitr/lsn.js';
import { pruneWal } from '../src/modules/pitr/wal-prune.js';
import { createPruneJob } from '../src/modules/retention/retention.jobs.js';
import { createRetentionService } from '../src/modules/retention/retention.service.js';
import { createTenant, startStack, type Stack } from './helpers/stack.js';

// Retention of point-in-time recovery (SPEC section 13): the base backups of the recovery window
// are kept, and the stored WAL that no kept base backup needs is deleted. The rows are written
// directly (no tenant server): what is tested is which ones the prune keeps.
// No worker: the jobs the prune enqueues stay in the queue, where the test reads them.
let s: Stack;
let tenantId: string;
let token: string;
beforeAll(async () => {
  s = await startStack({ worker: false, env: { RECONCILE_INTERVAL_MS: '600000' } });
  const t = await createTenant(s);
  tenantId = t.tenantId;
  token = t.adminToken;
  await s.rt.repo.repositories.keysOf(tenantId); // the repository row that GC requests mark
});
afterAll(async () => s?.close());

const NOW = new Date('2024-05-06T12:00:00Z');
const SEG = 16n * 1024n * 1024n;
const at = (iso: string) => new Date(iso);

async function clusterWith(policy: { recoveryWindow: string | null; maxBackups?: number }) {
  const policyId = randomUUID();
  await s.rt.db.policy.create({
    data: {
      id: policyId,
      tenantId,
      name: `p-${policyId}`,
      timezone: 'UTC',
      schedule: [],
      maxBackups: policy.maxBackups ?? 10,
      manualCount: 0,
      manualRateLimit: null,
      failedCount: 0,
      recoveryWindow: policy.recoveryWindow,
    },
  });
  const id = randomUUID();
  await s.rt.db.cluster.create({
    data: { id, tenantId, name: `c-${id}`, environment: 'production', region: 'eu-1', backupLocation: 'same_region', policyId, components: [] },
  });
  return id;
}

async function stream(clusterId: string, component = 'db', status = 'active') {
  const id = randomUUID();
  await s.rt.db.walStream.create({ data: { id, tenantId, clusterId, component, slotName: `bk_pitr_${id.replace(/-/g, '')}`, urlEnc: 'x', status } });
  return id;
}

/** A stored (or writing) WAL file of the stream, with one chunk reference of its own. */
async function segment(streamId: string, name: string, start: bigint, end: bigint, o: { status?: string; partial?: boolean } = {}) {
  const id = randomUUID();
  await s.rt.db.walSegment.create({
    data: { id, streamId, tenantId, name, timeline: 1, startLsn: start, endLsn: end, partial: o.partial ?? false, coversUntil: NOW, status: o.status ?? 'stored' },
  });
  await s.rt.db.walChunk.create({ data: { segmentId: id, tenantId, chunkId: `chunk-${id}` } });
  return id;
}
const segName = (k: bigint) => `00000001${'0'.repeat(8)}${k.toString(16).toUpperCase().padStart(8, '0')}`;

/** A completed scheduled backup; with `base`, its artifact holds a base backup of component db. */
async function backup(clusterId: string, createdAt: string, base?: { stop: string; start: bigint; streamId: string | null }, status = 'completed') {
  const id = randomUUID();
  await s.rt.db.backup.create({
    data: { id, tenantId, clusterId, trigger: 'scheduled', status: status as 'completed', createdAt: at(createdAt), completedAt: at(createdAt), components: [] },
  });
  await s.rt.db.backupArtifact.create({
    data: {
      id: randomUUID(),
      backupId: id,
      component: 'db',
      key: `k-${id}`,
      bytes: 1n,
      sha256: '0'.repeat(64),
      locations: [],
      type: 'postgres',
      ...(base && {
        baseBackup: {
          start_lsn: formatLsn(base.start),
          end_lsn: formatLsn(base.start + 0x1000n),
          timeline: 1,
          stop_time: base.stop,
          server_version: 150000,
          ...(base.streamId && { stream_id: base.streamId }),
        },
      }),
    },
  });
  return id;
}

const remaining = async (streamId: string) =>
  (await s.rt.db.walSegment.findMany({ where: { streamId }, orderBy: [{ startLsn: 'asc' }, { name: 'asc' }] })).map((r) => `${r.name}:${r.status}`);
const statusOf = async (ids: string[]) => Promise.all(ids.map(async (id) => (await s.rt.db.backup.findUniqueOrThrow({ where: { id } })).status));
const queued = async (name: string) =>
  (await s.rt.queues.all.maintenance.getJobs(['waiting', 'delayed', 'prioritized'])).filter((j) => j.name === name).map((j) => j.data as Record<string, string>);

describe('point-in-time recovery retention', () => {
  it('keeps the base backups of the window and the WAL from the oldest of them on; the rest goes, with a GC', async () => {
    await s.rt.queues.all.maintenance.obliterate({ force: true });
    await s.rt.db.repository.update({ where: { tenantId }, data: { gcRequestedAt: null } });
    const clusterId = await clusterWith({ recoveryWindow: '3d' });
    const streamId = await stream(clusterId);
    // Daily base backups at 03:00 of May 1..6, each stopping at 03:10; day d starts in WAL segment d.
    const day = (d: number) => backup(clusterId, `2024-05-0${d}T03:00:00Z`, { stop: `2024-05-0${d}T03:10:00Z`, start: BigInt(d) * SEG + 0x28n, streamId });
    const b = [await day(1), await day(2), await day(3), await day(4), await day(5), await day(6)];
    const plain = await backup(clusterId, '2024-05-04T12:00:00Z'); // no base backup: nothing keeps it
    const failed = await backup(clusterId, '2024-05-05T12:00:00Z', { stop: '2024-05-05T12:10:00Z', start: 5n * SEG + 0x100n, streamId }, 'failed');
    // Segments 1..8, a partial of segment 2 ending exactly where May 2's base backup starts, an
    // old file still being written, and a timeline history file.
    for (let k = 1n; k <= 8n; k++) await segment(streamId, segName(k), k * SEG, (k + 1n) * SEG);
    const partial = await segment(streamId, `${segName(2n)}.partial`, 2n * SEG, 2n * SEG + 0x28n, { partial: true });
    await segment(streamId, segName(1n), SEG, 2n * SEG, { status: 'writing' });
    await segment(streamId, '00000002.history', SEG, SEG);
    // Another cluster's WAL is never touched.
    const otherCluster = await clusterWith({ recoveryWindow: '1h' });
    const otherStream = await stream(otherCluster);
    await segment(otherStream, segName(1n), SEG, 2n * SEG);

    // The view before the prune: R = May 6 03:00, the window starts May 3 03:00; May 2 stopped
    // before it, the latest such, so a restore to May 3 03:00 replays it.
    const view = await s.request('GET', `/v1/clusters/${clusterId}/retention`, { token });
    expect(view.status, view.text).toBe(200);
    expect(view.body.recovery_window).toEqual({ interval: '3d', start: '2024-05-03T03:00:00.000Z', replayed_backup_id: b[1] });
    const reasons = Object.fromEntries(view.body.items.map((i: { backup_id: string; reasons: string[] }) => [i.backup_id, i.reasons]));
    expect(reasons).toEqual({
      [b[0]!]: [],
      [b[1]!]: ['recovery_window'],
      [b[2]!]: ['recovery_window'],
      [b[3]!]: ['recovery_window'],
      [b[4]!]: ['recovery_window'],
      [b[5]!]: ['recovery_window', 'newest'],
      [plain]: [],
      [failed]: [],
    });
    const stops = Object.fromEntries(view.body.items.map((i: { backup_id: string; base_backup_stop: string | null }) => [i.backup_id, i.base_backup_stop]));
    expect(stops[b[1]!]).toBe('2024-05-02T03:10:00.000Z');
    expect(stops[plain]).toBeNull();
    expect(stops[failed]).toBeNull(); // a failed backup's base backup restores nothing

    // A preview with a shorter window keeps fewer, and saves nothing.
    const preview = await s.request('POST', `/v1/clusters/${clusterId}/retention/preview`, { token, body: { policy: { recovery_window: '1d' } } });
    expect(preview.status, preview.text).toBe(200);
    expect(preview.body.recovery_window).toEqual({ interval: '1d', start: '2024-05-05T03:00:00.000Z', replayed_backup_id: b[3] });
    expect(preview.body.items.filter((i: { keep: boolean }) => i.keep).map((i: { backup_id: string }) => i.backup_id).sort()).toEqual([b[3], b[4], b[5]].sort());

    const service = createRetentionService({ db: s.rt.db, ledger: s.rt.ledger, now: () => NOW });
    await createPruneJob({ service, queues: s.rt.queues })({ tenant_id: tenantId, cluster_id: clusterId });

    expect(await statusOf([...b, plain, failed])).toEqual(['deleting', 'completed', 'completed', 'completed', 'completed', 'completed', 'deleting', 'deleting']);
    expect((await queued('delete-backup')).map((j) => j.backup_id).sort()).toEqual([b[0], plain, failed].sort());
    // WAL is needed from May 2's start (in segment 2) on: segment 1 and the partial ending exactly
    // there go; the writing row and the history file stay.
    expect(await remaining(streamId)).toEqual([
      `${segName(1n)}:writing`,
      '00000002.history:stored',
      ...[2n, 3n, 4n, 5n, 6n, 7n, 8n].map((k) => `${segName(k)}:stored`),
    ]);
    expect(await s.rt.db.walChunk.count({ where: { segmentId: partial } })).toBe(0);
    expect(await s.rt.db.walChunk.count({ where: { segment: { streamId } } })).toBe(9); // one per remaining file
    expect(await remaining(otherStream)).toEqual([`${segName(1n)}:stored`]);
    expect((await s.rt.db.repository.findUniqueOrThrow({ where: { tenantId } })).gcRequestedAt).toEqual(NOW);
    expect(await queued('gc')).toEqual([{ tenant_id: tenantId }]);

    // Pruning again deletes nothing more and asks for no GC.
    await s.rt.queues.all.maintenance.obliterate({ force: true });
    await createPruneJob({ service, queues: s.rt.queues })({ tenant_id: tenantId, cluster_id: clusterId });
    expect(await remaining(streamId)).toHaveLength(9);
    expect(await queued('gc')).toEqual([]);
  });

  it('without a window, WAL before the oldest kept base backup still goes; max_backups never drops the one the window start replays', async () => {
    const clusterId = await clusterWith({ recoveryWindow: '2d', maxBackups: 2 });
    const streamId = await stream(clusterId);
    const day = (d: number) => backup(clusterId, `2024-05-0${d}T03:00:00Z`, { stop: `2024-05-0${d}T03:10:00Z`, start: BigInt(d) * SEG, streamId });
    const b = [await day(1), await day(2), await day(3), await day(4), await day(5)];
    for (let k = 1n; k <= 6n; k++) await segment(streamId, segName(k), k * SEG, (k + 1n) * SEG);
    const service = createRetentionService({ db: s.rt.db, ledger: s.rt.ledger, now: () => NOW });
    // W = May 3 03:00: May 2 is replayed (forced); May 3 and 4 are in the window but max_backups
    // 2 trims them, the oldest first, down to the forced ones (May 2 and the newest).
    await service.prune(tenantId, clusterId);
    expect(await statusOf(b)).toEqual(['deleting', 'completed', 'deleting', 'deleting', 'completed']);
    expect(await service.pruneWal(tenantId, clusterId)).toEqual({ deletedSegments: 1 });
    expect(await remaining(streamId)).toEqual([2n, 3n, 4n, 5n, 6n].map((k) => `${segName(k)}:stored`));

    // No window: retention keeps the newest only, and the WAL before it goes.
    await s.rt.db.policy.updateMany({ where: { clusters: { some: { id: clusterId } } }, data: { recoveryWindow: null } });
    await service.prune(tenantId, clusterId);
    expect(await statusOf(b)).toEqual(['deleting', 'deleting', 'deleting', 'deleting', 'completed']);
    expect(await service.pruneWal(tenantId, clusterId)).toEqual({ deletedSegments: 3 });
    expect(await remaining(streamId)).toEqual([5n, 6n].map((k) => `${segName(k)}:stored`));
  });

  it('keeps all WAL of a stream no kept base backup names, or when one of its component does not say its stream', async () => {
    const clusterId = await clusterWith({ recoveryWindow: '1d' });
    const old = await stream(clusterId, 'db', 'dropping'); // a re-pointed component's former server
    const current = await stream(clusterId, 'db');
    await backup(clusterId, '2024-05-05T03:00:00Z', { stop: '2024-05-05T03:10:00Z', start: 5n * SEG, streamId: current });
    for (const id of [old, current]) for (let k = 1n; k <= 3n; k++) await segment(id, segName(k), k * SEG, (k + 1n) * SEG);
    const o = { tenantId, clusterId, now: NOW };
    // `old` has no base backup of its own: its positions mean nothing against `current`'s.
    expect(await pruneWal(s.rt.db, o)).toEqual({ deletedSegments: 3 });
    expect(await remaining(old)).toHaveLength(3);
    expect(await remaining(current)).toEqual([]);

    // A base backup of db that does not name its stream might need either's WAL: nothing goes.
    const cluster2 = await clusterWith({ recoveryWindow: '1d' });
    const s2 = await stream(cluster2);
    await backup(cluster2, '2024-05-04T03:00:00Z', { stop: '2024-05-04T03:10:00Z', start: 4n * SEG, streamId: null });
    await backup(cluster2, '2024-05-05T03:00:00Z', { stop: '2024-05-05T03:10:00Z', start: 5n * SEG, streamId: s2 });
    for (let k = 1n; k <= 3n; k++) await segment(s2, segName(k), k * SEG, (k + 1n) * SEG);
    expect(await pruneWal(s.rt.db, { ...o, clusterId: cluster2 })).toEqual({ deletedSegments: 0 });
    expect(await remaining(s2)).toHaveLength(3);

    // Another tenant's call for this cluster deletes nothing.
    const other = (await createTenant(s)).tenantId;
    const cluster3 = await clusterWith({ recoveryWindow: '1d' });
    const s3 = await stream(cluster3);
    await backup(cluster3, '2024-05-05T03:00:00Z', { stop: '2024-05-05T03:10:00Z', start: 5n * SEG, streamId: s3 });
    await segment(s3, segName(1n), SEG, 2n * SEG);
    expect(await pruneWal(s.rt.db, { tenantId: other, clusterId: cluster3, now: NOW })).toEqual({ deletedSegments: 0 });
    expect(await remaining(s3)).toHaveLength(1);
  });
});
