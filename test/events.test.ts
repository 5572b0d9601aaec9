import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, createTenant, startStack, waitFor, waitForBackup, type Res, type Stack } from './helpers/stack.js';
import { plantBackup } from './helpers/jobs.js';
import { corruptChunksOf } from './helpers/repo.js';
import { encodeEventCursor } from '../src/modules/events/events.cursor.js';

// A real stack: API, PostgreSQL, Redis and a real worker running the jobs.
let s: Stack;
let admin: string;
let viewer: string;
let tenantId: string;
let home: string;
let other: { tenantId: string; adminToken: string; dir: string };
let policyId: string;

beforeAll(async () => {
  s = await startStack();
  const t = await createTenant(s);
  admin = t.adminToken;
  tenantId = t.tenantId;
  home = t.dir;
  viewer = await createKey(s, admin, 'viewer');
  other = await createTenant(s);
  const p = await s.request('POST', '/v1/policies', { token: admin, body: { name: 'no-rate-limit', manual_rate_limit: null } });
  expect(p.status, p.text).toBe(201);
  policyId = p.body.id;
});
afterAll(async () => s.close());

interface Ev {
  id: string;
  type: string;
  occurred_at: string;
  cluster_id: string | null;
  data: { backup?: Record<string, unknown>; restore?: Record<string, unknown>; cluster?: Record<string, unknown> };
}

/** A cluster of one directory component with unique content (no chunk shared with other clusters). */
async function cluster(name: string, token = admin, dir = home): Promise<string> {
  await mkdir(path.join(dir, name, 'sub'), { recursive: true });
  await writeFile(path.join(dir, name, 'a.txt'), `${name} ${randomBytes(16).toString('hex')}`);
  await writeFile(path.join(dir, name, 'sub', 'b.bin'), randomBytes(4096));
  const body = { name, ...(token === admin && { policy_id: policyId }), components: [{ name: 'files', type: 'directory', config: { path: name } }] };
  const c = await s.request('POST', '/v1/clusters', { token, body });
  expect(c.status, c.text).toBe(201);
  return c.body.id;
}

async function events(query = '', token = viewer): Promise<Ev[]> {
  const r = await s.request('GET', `/v1/events${query ? `?${query}` : ''}`, { token });
  expect(r.status, r.text).toBe(200);
  return r.body.items;
}

/** Every event of a cluster, oldest first. */
async function eventsOf(clusterId: string, token = viewer): Promise<Ev[]> {
  return (await events(`cluster_id=${clusterId}&limit=100`, token)).reverse();
}

async function eventCount(where: string, ...params: unknown[]): Promise<number> {
  const { rows } = await s.rt.db.$pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM events WHERE ${where}`, params);
  return rows[0]!.n;
}

async function backupOf(clusterId: string, token = admin) {
  const b = await s.request('POST', `/v1/clusters/${clusterId}/backups`, { token });
  expect(b.status, b.text).toBe(202);
  return waitForBackup(s, token, clusterId, b.body.id);
}

function expectProblem(r: Res, status: number, detail?: RegExp) {
  expect(r.status, r.text).toBe(status);
  expect(String(r.headers['content-type'])).toMatch(/^application\/problem\+json/);
  expect(r.body.status).toBe(status);
  if (detail) expect(`${r.body.detail} ${JSON.stringify(r.body.errors ?? [])}`).toMatch(detail);
}

describe('events of backups and restores through the real worker', () => {
  let clusterId: string;
  let backup: Record<string, any>;

  it('a backup yields backup.started then backup.completed, each with the backup as the API showed it', async () => {
    clusterId = await cluster('ok');
    backup = await backupOf(clusterId);
    expect(backup.status).toBe('completed');
    const got = await s.request('GET', `/v1/clusters/${clusterId}/backups/${backup.id}`, { token: viewer });
    const evs = await eventsOf(clusterId);
    expect(evs.map((e) => e.type)).toEqual(['backup.started', 'backup.completed']);
    const [started, completed] = evs as [Ev, Ev];
    // The completed event is the backup exactly as GET shows it (artifacts recorded in the same transaction).
    expect(completed.data).toEqual({ backup: got.body });
    expect((completed.data.backup!.artifacts as unknown[]).length).toBe(1);
    expect(completed.occurred_at).toBe(got.body.completed_at);
    expect(completed.cluster_id).toBe(clusterId);
    // The started one shows it running, as of its start.
    expect(started.data.backup).toMatchObject({ id: backup.id, cluster_id: clusterId, status: 'running', started_at: got.body.started_at, completed_at: null, artifacts: [], error: null });
    expect(started.occurred_at).toBe(got.body.started_at);
    expect(new Set(evs.map((e) => e.id)).size).toBe(2);
  });

  it('a failing backup yields backup.started then backup.failed, the failure as GET shows it', async () => {
    const id = await cluster('doomed');
    await rm(path.join(home, 'doomed'), { recursive: true, force: true });
    const b = await backupOf(id);
    expect(b.status).toBe('failed');
    const got = await s.request('GET', `/v1/clusters/${id}/backups/${b.id}`, { token: viewer });
    const evs = await eventsOf(id);
    expect(evs.map((e) => e.type)).toEqual(['backup.started', 'backup.failed']);
    expect(evs[1]!.data).toEqual({ backup: got.body });
    expect(got.body.error.component).toBe('files');
  });

  it('a restore yields restore.started then restore.completed with the restore as GET shows it', async () => {
    const r = await s.request('POST', `/v1/clusters/${clusterId}/backups/${backup.id}/restore`, { token: admin, body: {} });
    expect(r.status, r.text).toBe(202);
    const done = await waitFor(async () => {
      const g = await s.request('GET', `/v1/clusters/${clusterId}/restores/${r.body.id}`, { token: viewer });
      return ['completed', 'failed'].includes(g.body.status) ? g.body : null;
    });
    expect(done.status).toBe('completed');
    const evs = (await eventsOf(clusterId)).filter((e) => e.type.startsWith('restore.'));
    expect(evs.map((e) => e.type)).toEqual(['restore.started', 'restore.completed']);
    expect(evs[1]!.data).toEqual({ restore: done });
    expect(evs[0]!.data.restore).toMatchObject({ id: done.id, status: 'running', started_at: done.started_at, completed_at: null });
    expect(evs.every((e) => e.cluster_id === clusterId)).toBe(true);
  });

  it('a damaged backup: verification.failed from the verifier, restore.failed from the restore, each as GET shows it', async () => {
    const id = await cluster('damaged');
    const b = await backupOf(id);
    expect(b.status).toBe('completed');
    expect(await corruptChunksOf(s, s.storageRoot, tenantId, b.id)).toBeGreaterThan(0);

    const v = await s.request('POST', `/v1/clusters/${id}/backups/${b.id}/verify`, { token: admin });
    expect(v.status, v.text).toBeLessThan(300);
    const verified = await waitFor(async () => {
      const g = await s.request('GET', `/v1/clusters/${id}/backups/${b.id}`, { token: viewer });
      return ['passed', 'failed'].includes(g.body.verification?.status) ? g.body : null;
    });
    expect(verified.verification.status).toBe('failed');
    const vf = (await eventsOf(id)).filter((e) => e.type === 'verification.failed');
    expect(vf).toHaveLength(1);
    expect(vf[0]!.data).toEqual({ backup: verified });
    expect(vf[0]!.occurred_at).toBe(verified.verification.checked_at);

    const r = await s.request('POST', `/v1/clusters/${id}/backups/${b.id}/restore`, { token: admin, body: {} });
    expect(r.status, r.text).toBe(202);
    const failed = await waitFor(async () => {
      const g = await s.request('GET', `/v1/clusters/${id}/restores/${r.body.id}`, { token: viewer });
      return ['completed', 'failed'].includes(g.body.status) ? g.body : null;
    });
    expect(failed.status).toBe('failed');
    const rf = (await eventsOf(id)).filter((e) => e.type.startsWith('restore.'));
    expect(rf.map((e) => e.type)).toEqual(['restore.started', 'restore.failed']);
    expect(rf[1]!.data).toEqual({ restore: failed });
  });

  it('deleting a backup yields one backup.deleted, the backup as last shown (deleting), once its row is gone', async () => {
    const id = await cluster('short-lived');
    const b = await backupOf(id);
    const del = await s.request('DELETE', `/v1/clusters/${id}/backups/${b.id}`, { token: admin });
    expect(del.status, del.text).toBe(202);
    await waitFor(async () => (await s.rt.db.backup.count({ where: { id: b.id } })) === 0, 20_000, 'the backup row to go');
    const gone = (await eventsOf(id)).filter((e) => e.type === 'backup.deleted');
    expect(gone).toHaveLength(1);
    expect(gone[0]!.data.backup).toEqual({ ...del.body, status: 'deleting' });
    // A second run of the deleter finds nothing: no second event.
    expect(await s.rt.ledger.removeDeleted(b.id)).toEqual({ count: 0 });
    expect(await eventCount(`type = 'backup.deleted' AND data->'backup'->>'id' = $1`, b.id)).toBe(1);
  });

  it('deleting a cluster yields backup.deleted for each of its backups, then cluster.deleted with the cluster as it was', async () => {
    const id = await cluster('leaving');
    const b1 = await backupOf(id);
    const b2 = await backupOf(id);
    const del = await s.request('DELETE', `/v1/clusters/${id}`, { token: admin });
    expect(del.status, del.text).toBe(202);
    await waitFor(async () => (await s.rt.db.cluster.count({ where: { id } })) === 0, 20_000, 'the cluster row to go');
    const evs = await eventsOf(id); // the cluster is gone; its events stay, under its id
    expect(evs.map((e) => e.type)).toEqual(['backup.started', 'backup.completed', 'backup.started', 'backup.completed', 'backup.deleted', 'backup.deleted', 'cluster.deleted']);
    expect(evs.slice(4, 6).map((e) => e.data.backup!.id)).toEqual([b1.id, b2.id]);
    expect(evs[4]!.data.backup).toEqual(b1);
    // The cluster as the DELETE answered it (and as GET showed it until it went).
    expect(evs[6]!.data).toEqual({ cluster: del.body });
    expect(evs[6]!.data.cluster).toMatchObject({ id, name: 'leaving', status: 'deleting' });
    expect(await eventCount(`type = 'cluster.deleted' AND cluster_id = $1`, id)).toBe(1);
  });

  it("queueing writes no event (queued is no event type), and each event’s resource is in the status its type names", async () => {
    const { rows } = await s.rt.db.$pool.query<{ type: string; status: string | null }>(
      `SELECT type, coalesce(data->'backup'->>'status', data->'restore'->>'status') AS status FROM events WHERE tenant_id = $1`,
      [tenantId],
    );
    expect(rows.length).toBeGreaterThan(10);
    expect(rows.filter((r) => r.status === 'queued')).toEqual([]);
    for (const r of rows) {
      const [kind, what] = r.type.split('.');
      // A backup's row goes as `deleting`, or as it was when its cluster went (a cluster's deletion cascades).
      if (r.type === 'backup.deleted') expect(['deleting', 'completed', 'failed'], r.type).toContain(r.status);
      else if (kind === 'backup' || kind === 'restore') expect({ running: 'started', completed: 'completed', failed: 'failed' }[r.status!], r.type).toBe(what);
    }
    // Written for the webhook dispatcher: undispatched until it fans them out (no webhook here).
    expect(await eventCount(`tenant_id = $1 AND dispatched_at IS NULL`, tenantId) + (await eventCount(`tenant_id = $1 AND dispatched_at IS NOT NULL`, tenantId))).toBe(rows.length);
  });
});

describe('the outbox: an event commits with its change, or neither does', () => {
  const running = async (name: string) => {
    const id = await cluster(name);
    // No BullMQ job and a lease far ahead: no worker or reaper touches it but this test.
    const b = await plantBackup(s.rt, {
      id: randomUUID(), tenantId, clusterId: id, trigger: 'manual', status: 'running', startedAt: new Date(), workerId: 'test', leaseExpiresAt: new Date(Date.now() + 3600_000),
      components: [{ name: 'files', status: 'running' }],
    });
    return { clusterId: id, id: b.id };
  };

  it('a transition whose transaction fails after the move leaves neither the change nor an event', async () => {
    const b = await running('rollback');
    await expect(
      s.rt.ledger.complete('backup', b.id, { completedAt: new Date() }, async () => {
        throw new Error('recording the artifacts failed');
      }),
    ).rejects.toThrow(/artifacts failed/);
    const row = await s.rt.db.backup.findUniqueOrThrow({ where: { id: b.id } });
    expect(row.status).toBe('running');
    expect((await s.rt.db.cluster.findUniqueOrThrow({ where: { id: b.clusterId } })).activeJobId).toBe(b.id);
    expect(await eventCount(`cluster_id = $1`, b.clusterId)).toBe(0);
    // The same transition without the failure commits the change with exactly one event.
    expect(await s.rt.ledger.complete('backup', b.id, { completedAt: new Date() }, async () => {})).toBe(true);
    expect((await eventsOf(b.clusterId)).map((e) => e.type)).toEqual(['backup.completed']);
  });

  it("an event that cannot be written rolls its change back: the move does not happen without its event", async () => {
    const b = await running('no-event-no-change');
    // The database refuses this backup's events (as a full disk or a dropped connection would).
    await s.rt.db.$executeRawUnsafe(`
      CREATE FUNCTION refuse_event() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.data->'backup'->>'id' = '${b.id}' THEN RAISE EXCEPTION 'events refused for the test'; END IF; RETURN NEW; END $$`);
    await s.rt.db.$executeRawUnsafe(`CREATE TRIGGER refuse_event BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse_event()`);
    try {
      await expect(s.rt.ledger.fail('backup', b.id, { component: 'files', message: 'boom' }, { now: new Date() })).rejects.toThrow(/events refused/);
      const row = await s.rt.db.backup.findUniqueOrThrow({ where: { id: b.id } });
      expect(row.status).toBe('running');
      expect(row.errorMessage).toBeNull();
      expect((await s.rt.db.cluster.findUniqueOrThrow({ where: { id: b.clusterId } })).activeJobId).toBe(b.id);
    } finally {
      await s.rt.db.$executeRawUnsafe(`DROP TRIGGER refuse_event ON events`);
      await s.rt.db.$executeRawUnsafe(`DROP FUNCTION refuse_event()`);
    }
    // Once events can be written, the same transition goes through with exactly one event.
    expect(await s.rt.ledger.fail('backup', b.id, { component: 'files', message: 'boom' }, { now: new Date() })).toBe(true);
    const evs = await eventsOf(b.clusterId);
    expect(evs.map((e) => e.type)).toEqual(['backup.failed']);
    const got = await s.request('GET', `/v1/clusters/${b.clusterId}/backups/${b.id}`, { token: viewer });
    expect(evs[0]!.data).toEqual({ backup: got.body });
  });

  it("a lost worker's backup, reaped by racing reapers and the reconciler, yields exactly one backup.failed", async () => {
    const id = await cluster('lost');
    const b = await plantBackup(s.rt, {
      id: randomUUID(), tenantId, clusterId: id, trigger: 'scheduled', status: 'running', startedAt: new Date(Date.now() - 60_000), workerId: 'gone', leaseExpiresAt: new Date(Date.now() - 1000), components: [],
    });
    const now = new Date();
    const reaped = await Promise.all([1, 2, 3, 4].map(() => s.rt.ledger.reapLost('backup', now, 100)));
    expect(reaped.flat().filter((r) => r.id === b.id)).toHaveLength(1);
    expect(await s.rt.ledger.reapLost('backup', new Date(), 100)).toEqual([]);
    const evs = await eventsOf(id);
    expect(evs.map((e) => e.type)).toEqual(['backup.failed']);
    const got = await s.request('GET', `/v1/clusters/${id}/backups/${b.id}`, { token: viewer });
    expect(evs[0]!.data).toEqual({ backup: got.body });
    expect(got.body.error.message).toMatch(/worker lost/);
    expect(evs[0]!.occurred_at).toBe(now.toISOString());
  });
});

describe('GET /v1/events', () => {
  it('pages newest first by keyset, with filters by type and cluster', async () => {
    const all = await events('limit=100');
    expect(all.length).toBeGreaterThan(15);
    const seen: Ev[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const r: Res = await s.request('GET', `/v1/events?limit=4${cursor ? `&cursor=${cursor}` : ''}`, { token: viewer });
      expect(r.status, r.text).toBe(200);
      expect(r.body.items.length).toBeLessThanOrEqual(4);
      seen.push(...r.body.items);
      cursor = r.body.next_cursor;
      pages++;
    } while (cursor && pages < 100);
    expect(seen.map((e) => e.id)).toEqual(all.map((e) => e.id));
    // Newest first: in the order of the outbox's sequence.
    const { rows } = await s.rt.db.$pool.query<{ id: string }>(`SELECT id::text FROM events WHERE tenant_id = $1 ORDER BY seq DESC`, [tenantId]);
    expect(all.map((e) => e.id)).toEqual(rows.map((r) => r.id));
    // An event that commits while a client pages does not shift the pages it has yet to read.
    const first = await s.request('GET', '/v1/events?limit=3', { token: viewer });
    await backupOf(await cluster('while-paging'));
    const next = await s.request('GET', `/v1/events?limit=3&cursor=${first.body.next_cursor}`, { token: viewer });
    expect(next.body.items.map((e: Ev) => e.id)).toEqual(all.slice(3, 6).map((e) => e.id));

    const completed = await events('type=backup.completed&limit=100');
    expect(completed.length).toBeGreaterThan(3);
    expect(completed.every((e) => e.type === 'backup.completed')).toBe(true);
    const one = completed[0]!.cluster_id!;
    const both = await events(`type=backup.completed&cluster_id=${one}`);
    expect(both.length).toBeGreaterThan(0);
    expect(both.every((e) => e.type === 'backup.completed' && e.cluster_id === one)).toBe(true);
    expect(await events(`cluster_id=${randomUUID()}`)).toEqual([]);
  });

  it("is the tenant's alone: another tenant sees none of these events, and filtering by this tenant's cluster gives an empty page", async () => {
    const theirs = await cluster('theirs', other.adminToken, other.dir);
    await backupOf(theirs, other.adminToken);
    const mine = (await events('limit=100')).map((e) => e.id);
    const seen = await events('limit=100', other.adminToken);
    expect(seen.map((e) => e.type)).toEqual(['backup.completed', 'backup.started']);
    expect(seen.every((e) => e.cluster_id === theirs)).toBe(true);
    expect(seen.filter((e) => mine.includes(e.id))).toEqual([]);
    const someOfMine = (await events('limit=1'))[0]!;
    expect(await events(`cluster_id=${someOfMine.cluster_id}`, other.adminToken)).toEqual([]);
    expect((await events(`cluster_id=${theirs}`)).length).toBe(0);
    // A cursor is only a position: another tenant's cursor shows it its own older events, never these.
    const page = await events(`cursor=${encodeEventCursor(10n ** 15n)}&limit=100`, other.adminToken);
    expect(page.map((e) => e.id).sort()).toEqual(seen.map((e) => e.id).sort());
  });

  it('needs a credential (viewer and up)', async () => {
    expectProblem(await s.request('GET', '/v1/events'), 401);
    expect((await s.request('GET', '/v1/events', { token: admin })).status).toBe(200);
    expect((await s.request('GET', '/v1/events', { token: await createKey(s, admin, 'operator') })).status).toBe(200);
  });

  it('answers a bad type, cluster_id, cursor or limit with a 422 problem naming it', async () => {
    expectProblem(await s.request('GET', '/v1/events?type=backup.exploded', { token: viewer }), 422, /type/);
    expectProblem(await s.request('GET', '/v1/events?type=', { token: viewer }), 422, /type/);
    expectProblem(await s.request('GET', '/v1/events?cluster_id=not-a-uuid', { token: viewer }), 422, /cluster_id/);
    for (const limit of ['0', '101', 'abc', '1.5', '-1']) expectProblem(await s.request('GET', `/v1/events?limit=${limit}`, { token: viewer }), 422, /limit/);
    const b64 = (t: string) => Buffer.from(t).toString('base64url');
    const badCursors = [
      'nonsense',
      'garbage!',
      b64('0'),
      b64('-5'),
      b64('012'),
      b64('12a'),
      b64(' 12'),
      b64('9223372036854775808'), // beyond bigint
      `${b64('12')}=`, // padded: not as issued
      Buffer.from('12').toString('base64'), // same bytes, standard alphabet with padding
      b64(JSON.stringify(['2026-12-02T00:00:00.000Z', randomUUID()])), // another list's cursor
      'x'.repeat(513),
    ];
    for (const c of badCursors) expectProblem(await s.request('GET', `/v1/events?cursor=${encodeURIComponent(c)}`, { token: viewer }), 422, /cursor/);
    // A well-formed cursor past every event is an empty page, not an error.
    expect((await s.request('GET', `/v1/events?cursor=${encodeEventCursor(1n)}`, { token: viewer })).body).toEqual({ items: [], next_cursor: null });
  });
});
