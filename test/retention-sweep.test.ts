import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb } from '../src/db/client.js';
import { asLeader } from '../src/db/leader.js';
import { startSchedulerRole } from '../src/roles/scheduler.js';
import { createRetentionService } from '../src/modules/retention/retention.service.js';
import { sweepRetention } from '../src/modules/retention/retention.sweep.js';
import { createTenant, startStack, waitFor, type Stack } from './helpers/stack.js';

// No worker: the prune jobs a sweep enqueues stay in the queue, where the test reads them.
let s: Stack;
let tenantId: string;
let policyId: string;
beforeAll(async () => {
  s = await startStack({ worker: false, env: { RETENTION_SWEEP_MS: '1000', RECONCILE_INTERVAL_MS: '60000' } });
  tenantId = (await createTenant(s)).tenantId;
  policyId = randomUUID();
  await s.rt.db.policy.create({
    data: { id: policyId, tenantId, name: 'keep-one', timezone: 'UTC', schedule: [], maxBackups: 10, manualCount: 1, manualRateLimit: null, failedCount: 1 },
  });
});
afterAll(async () => s.close());

const ago = (ms: number) => new Date(Date.now() - ms);

/** A cluster with three completed manual backups (manual_count 1 keeps the newest), dirty or not. */
async function cluster(dirty: boolean) {
  const id = randomUUID();
  await s.rt.db.cluster.create({
    data: { id, tenantId, name: `c-${id}`, environment: 'production', region: 'eu-1', backupLocation: 'same_region', policyId, components: [], retentionDirty: dirty },
  });
  const backups: string[] = [];
  for (let i = 3; i >= 1; i--) {
    const b = await s.rt.db.backup.create({
      data: { id: randomUUID(), tenantId, clusterId: id, trigger: 'manual', status: 'completed', createdAt: ago(i * 3600_000), completedAt: ago(i * 3600_000), components: [] },
    });
    backups.push(b.id);
  }
  return { id, backups };
}

const dirty = async (id: string) => (await s.rt.db.cluster.findUniqueOrThrow({ where: { id } })).retentionDirty;
const statuses = async (ids: string[]) => Promise.all(ids.map(async (id) => (await s.rt.db.backup.findUniqueOrThrow({ where: { id } })).status));

async function queuedPrunes(): Promise<string[]> {
  const jobs = await s.rt.queues.all.maintenance.getJobs(['waiting', 'delayed', 'prioritized']);
  return jobs.filter((j) => j.name === 'prune').map((j) => (j.data as { cluster_id: string }).cluster_id);
}

describe('retention sweep: dirty clusters only', () => {
  it('enqueues a prune for each dirty cluster and none for a clean one; the prune clears the marker', async () => {
    await s.rt.queues.all.maintenance.obliterate({ force: true });
    const a = await cluster(true);
    const clean = await cluster(false); // prunable, but nothing changed since its last prune
    const b = await cluster(true);
    expect(await sweepRetention(s.rt)).toBe(2);
    expect((await queuedPrunes()).sort()).toEqual([a.id, b.id].sort());

    const retention = createRetentionService({ db: s.rt.db, ledger: s.rt.ledger });
    expect((await retention.prune(tenantId, a.id)).sort()).toEqual(a.backups.slice(0, 2).sort());
    expect(await dirty(a.id)).toBe(false);
    expect(await statuses(a.backups)).toEqual(['deleting', 'deleting', 'completed']);
    expect(await dirty(b.id)).toBe(true);
    expect(await statuses(clean.backups)).toEqual(['completed', 'completed', 'completed']);

    // Next period: only b is still dirty.
    await s.rt.queues.all.maintenance.obliterate({ force: true });
    expect(await sweepRetention(s.rt)).toBe(1);
    expect(await queuedPrunes()).toEqual([b.id]);
  });

  it('pages through more dirty clusters than one batch, each once, and a second sweep in the same slot adds no job', async () => {
    await s.rt.queues.all.maintenance.obliterate({ force: true });
    await s.rt.db.cluster.updateMany({ data: { retentionDirty: false } });
    const c = new pg.Client({ connectionString: s.databaseUrl });
    await c.connect();
    try {
      await c.query(
        `INSERT INTO clusters (id, tenant_id, name, environment, region, backup_location, policy_id, components, retention_dirty)
         SELECT gen_random_uuid(), $1, 'bulk-' || g, 'production', 'eu-1', 'same-region', $2, '[]', g % 2 = 0 FROM generate_series(1, 5000) g`,
        [tenantId, policyId],
      );
      // A cluster being deleted needs no prune: its deletion removes every backup.
      await c.query(`UPDATE clusters SET status = 'deleting' WHERE name = 'bulk-2'`);
      const expected = (await c.query(`SELECT id::text FROM clusters WHERE retention_dirty AND status <> 'deleting' ORDER BY id`)).rows.map((r) => r.id as string);
      expect(expected).toHaveLength(2499);
      const fixed = new Date();
      const rt = { ...s.rt, now: () => fixed };
      expect(await sweepRetention(rt)).toBe(2499);
      expect(await sweepRetention(rt)).toBe(2499); // the same ids: BullMQ keeps one job each
      const queued = await queuedPrunes();
      expect(queued).toHaveLength(2499);
      expect(queued.sort()).toEqual([...expected].sort());
    } finally {
      await c.query(`DELETE FROM clusters WHERE name LIKE 'bulk-%'`);
      await c.end();
    }
  });

  it('a prune clears the marker it evaluated, but a cluster dirtied again while the prune runs stays dirty', async () => {
    const a = await cluster(true);
    const retention = createRetentionService({ db: s.rt.db, ledger: s.rt.ledger });
    const blocker = new pg.Client({ connectionString: s.databaseUrl });
    const writer = new pg.Client({ connectionString: s.databaseUrl });
    await blocker.connect();
    await writer.connect();
    const pid = async (c: pg.Client) => (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
    const [blockerPid, writerPid] = [await pid(blocker), await pid(writer)];
    /** Until some backend (or `waiter`) waits for a lock that `holder` holds. */
    const blockedBy = (holder: number, waiter?: number) =>
      waitFor(
        async () => (await blocker.query(`SELECT 1 FROM pg_stat_activity WHERE ($2::int IS NULL OR pid = $2) AND $1 = ANY (pg_blocking_pids(pid))`, [holder, waiter ?? null])).rowCount,
        10_000,
        `a backend to wait for a lock of ${holder}`,
      );
    try {
      // Hold the oldest backup's row, so the prune stops half-way: after it cleared the marker and
      // read the backups, while it moves the ones it drops to `deleting`.
      await blocker.query('BEGIN');
      await blocker.query('SELECT 1 FROM backups WHERE id = $1 FOR UPDATE', [a.backups[0]]);
      const pruning = retention.prune(tenantId, a.id);
      await blockedBy(blockerPid);
      // Meanwhile a backup of the cluster ends and marks it dirty (as the ledger does, under the
      // cluster's row lock, which the prune holds: it waits for the prune to commit).
      const redirty = writer.query('UPDATE clusters SET retention_dirty = true WHERE id = $1', [a.id]);
      const prunePid = (await blocker.query('SELECT pid FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))', [blockerPid])).rows[0].pid as number;
      await blockedBy(prunePid, writerPid);
      await blocker.query('COMMIT');
      expect((await pruning).sort()).toEqual(a.backups.slice(0, 2).sort());
      await redirty;
      expect(await dirty(a.id)).toBe(true); // the new change still gets its prune

      // A prune that fails after clearing the marker (here: its lock wait on a backup it drops
      // times out) rolls back and keeps the marker.
      const old = await s.rt.db.backup.create({
        data: { id: randomUUID(), tenantId, clusterId: a.id, trigger: 'manual', status: 'completed', createdAt: ago(5 * 3600_000), completedAt: ago(5 * 3600_000), components: [] },
      });
      const url = new URL(s.databaseUrl);
      url.searchParams.set('options', '-c lock_timeout=300ms');
      const impatient = createDb(url.href, { poolSize: 1, connectTimeoutMs: 5000 });
      try {
        await blocker.query('BEGIN');
        await blocker.query('SELECT 1 FROM backups WHERE id = $1 FOR UPDATE', [old.id]);
        await expect(createRetentionService({ db: impatient, ledger: s.rt.ledger }).prune(tenantId, a.id)).rejects.toThrow(/lock/);
        await blocker.query('ROLLBACK');
      } finally {
        await impatient.$disconnect();
      }
      expect(await dirty(a.id)).toBe(true);
      expect(await statuses([old.id])).toEqual(['completed']);

      // Then the prune succeeds and clears the marker.
      expect(await retention.prune(tenantId, a.id)).toEqual([old.id]);
      expect(await dirty(a.id)).toBe(false);
    } finally {
      await blocker.query('ROLLBACK').catch(() => {});
      await blocker.end();
      await writer.end();
    }
  });
});

describe('the periodic sweeps run on one scheduler at a time', () => {
  it('asLeader runs one holder at a time and lets the next in once the first is done', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let runs = 0;
    const first = asLeader(s.rt.db, 'retentionSweep', 60_000, async () => {
      runs++;
      await gate;
      return 'first';
    });
    await waitFor(async () => runs === 1, 5_000, 'the first holder to run');
    expect(await asLeader(s.rt.db, 'retentionSweep', 60_000, async () => runs++)).toEqual({ ran: false });
    // Another sweep's lock is independent.
    expect(await asLeader(s.rt.db, 'reconcile', 60_000, async () => 'other')).toEqual({ ran: true, value: 'other' });
    release();
    expect(await first).toEqual({ ran: true, value: 'first' });
    expect(await asLeader(s.rt.db, 'retentionSweep', 60_000, async () => 'next')).toEqual({ ran: true, value: 'next' });
    expect(runs).toBe(1);
  });

  it('a scheduler skips the retention sweep while another process holds its lock, and sweeps once it is released', async () => {
    await s.rt.queues.all.maintenance.obliterate({ force: true });
    await s.rt.db.cluster.updateMany({ data: { retentionDirty: false } });
    const a = await cluster(true);
    // Another scheduler (another process: its own connection) is sweeping.
    const other = new pg.Client({ connectionString: s.databaseUrl });
    await other.connect();
    await other.query('BEGIN');
    await other.query(`SELECT pg_advisory_xact_lock(${0x626b7570}, 2)`);
    const sched = startSchedulerRole(s.rt, { tickMs: 50 });
    try {
      await new Promise((r) => setTimeout(r, 1500)); // more than one RETENTION_SWEEP_MS
      expect(await queuedPrunes()).toEqual([]);
      await other.query('COMMIT');
      await waitFor(async () => (await queuedPrunes()).includes(a.id), 10_000, 'the sweep once the lock is free');
    } finally {
      await sched.close();
      await other.query('ROLLBACK').catch(() => {});
      await other.end();
    }
  });
});
