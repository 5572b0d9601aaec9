import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTenant, startStack, type Stack } from './helpers/stack.js';
import { createTenantDatabase, tenantServerUrl, tenantUrl } from './helpers/db.js';
import { slotNameOf } from '../src/modules/pitr/wal-streams.js';

// Turning continuous archiving on and off (SPEC section 13): the checks at save, the slot the
// service creates, and the slot dropped when the component or its cluster goes.

let s: Stack;
let token: string;
let db: Awaited<ReturnType<typeof createTenantDatabase>>;
const role = `bk_norepl_${randomBytes(4).toString('hex')}`;

async function onServer<T>(sql: string, params: unknown[] = []): Promise<pg.QueryResult> {
  const c = new pg.Client({ connectionString: `${tenantServerUrl()}/postgres` });
  await c.connect();
  try {
    return await c.query(sql, params);
  } finally {
    await c.end();
  }
}
const slotExists = async (slot: string) => (await onServer('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [slot])).rowCount === 1;
const pgc = (url: string, extra: object = { continuous: true }, name = 'db') => ({ name, type: 'postgres', config: { url, ...extra } });

beforeAll(async () => {
  s = await startStack({ worker: false });
  token = (await createTenant(s)).adminToken;
  db = await createTenantDatabase();
  await onServer(`CREATE ROLE ${role} LOGIN NOREPLICATION`);
});
afterAll(async () => {
  // Whatever a failed test left: no slot of this file's streams may stay on the shared server.
  const streams = await s.rt.db.walStream.findMany();
  for (const st of streams) await onServer('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', [st.slotName]).catch(() => {});
  await s.close();
  await db.drop();
  await onServer(`DROP ROLE IF EXISTS ${role}`);
});

async function activeStream(clusterId: string, component = 'db') {
  return s.rt.db.walStream.findFirst({ where: { clusterId, component, status: 'active' } });
}

describe('continuous postgres components', () => {
  it('a save creates the component\'s physical replication slot; the component shows continuous: true', async () => {
    const res = await s.request('POST', '/v1/clusters', { token, body: { name: 'pitr-on', components: [pgc(db.url)] } });
    expect(res.status, res.text).toBe(201);
    expect(res.body.components[0].config).toMatchObject({ continuous: true });
    const stream = await activeStream(res.body.id);
    expect(stream).not.toBeNull();
    expect(stream!.slotName).toBe(slotNameOf(stream!.id));
    const slot = await onServer('SELECT slot_type, restart_lsn IS NOT NULL AS reserved FROM pg_replication_slots WHERE slot_name = $1', [stream!.slotName]);
    expect(slot.rows).toEqual([{ slot_type: 'physical', reserved: true }]);

    // A component that is not continuous has neither a stream nor a slot.
    const plain = await s.request('POST', '/v1/clusters', { token, body: { name: 'pitr-off', components: [pgc(db.url, {})] } });
    expect(plain.status).toBe(201);
    expect(plain.body.components[0].config.continuous).toBe(false);
    expect(await activeStream(plain.body.id)).toBeNull();
  });

  it('a role without REPLICATION answers 422 naming the attribute and the statement that grants it; nothing is created', async () => {
    const before = await onServer('SELECT count(*)::int AS n FROM pg_replication_slots');
    const res = await s.request('POST', '/v1/clusters', { token, body: { name: 'pitr-norepl', components: [pgc(tenantUrl(db.name, { user: role }))] } });
    expect(res.status).toBe(422);
    expect(res.headers['content-type']).toMatch(/application\/problem\+json/);
    const problem = res.body.errors.find((e: { path: string }) => e.path === 'body.components.0.config.url');
    expect(problem?.message).toMatch(/REPLICATION/);
    expect(problem?.message).toContain(`ALTER ROLE ${role} REPLICATION`);
    expect((await s.request('GET', '/v1/clusters', { token })).body.items.map((c: { name: string }) => c.name)).not.toContain('pitr-norepl');
    expect((await onServer('SELECT count(*)::int AS n FROM pg_replication_slots')).rows[0].n).toBeLessThanOrEqual(before.rows[0].n);
    // The same role is fine for a component that is not continuous.
    const plain = await s.request('POST', '/v1/clusters', { token, body: { name: 'plain-norepl', components: [pgc(tenantUrl(db.name, { user: role }), {})] } });
    expect(plain.status, plain.text).toBe(201);
  });

  it('turning continuous on with PATCH is checked the same way', async () => {
    const c = await s.request('POST', '/v1/clusters', { token, body: { name: 'patch-norepl', components: [pgc(tenantUrl(db.name, { user: role }), {})] } });
    const res = await s.request('PATCH', `/v1/clusters/${c.body.id}`, { token, body: { components: [pgc(tenantUrl(db.name, { user: role }))] } });
    expect(res.status).toBe(422);
    expect(JSON.stringify(res.body.errors)).toMatch(/lacks the REPLICATION attribute/);
    expect(await activeStream(c.body.id)).toBeNull();
  });

  it('removing the component drops its slot, and so does turning continuous off; deleting the cluster drops its slot', async () => {
    const c = await s.request('POST', '/v1/clusters', { token, body: { name: 'pitr-remove', components: [pgc(db.url)] } });
    expect(c.status, c.text).toBe(201);
    const first = (await activeStream(c.body.id))!;
    expect(await slotExists(first.slotName)).toBe(true);

    // Continuous off: the slot goes, and the stream with it.
    const off = await s.request('PATCH', `/v1/clusters/${c.body.id}`, { token, body: { components: [pgc(db.url, { continuous: false })] } });
    expect(off.status, off.text).toBe(200);
    expect(await slotExists(first.slotName)).toBe(false);
    expect(await s.rt.db.walStream.count({ where: { id: first.id } })).toBe(0);

    // On again: a new stream and slot; then the component removed: gone.
    const on = await s.request('PATCH', `/v1/clusters/${c.body.id}`, { token, body: { components: [pgc(db.url)] } });
    expect(on.status, on.text).toBe(200);
    const second = (await activeStream(c.body.id))!;
    expect(second.id).not.toBe(first.id);
    expect(await slotExists(second.slotName)).toBe(true);
    const removed = await s.request('PATCH', `/v1/clusters/${c.body.id}`, { token, body: { components: [pgc(db.url, {}, 'other')] } });
    expect(removed.status, removed.text).toBe(200);
    expect(await slotExists(second.slotName)).toBe(false);

    // A new password for the same server and role keeps the stream (and its recovery window).
    const d = await s.request('POST', '/v1/clusters', { token, body: { name: 'pitr-delete', components: [pgc(db.url)] } });
    const third = (await activeStream(d.body.id))!;
    const u = new URL(db.url);
    u.password = 'ignored-by-trust';
    const repass = await s.request('PATCH', `/v1/clusters/${d.body.id}`, { token, body: { components: [pgc(u.href)] } });
    expect(repass.status, repass.text).toBe(200);
    expect((await activeStream(d.body.id))!.id).toBe(third.id);
    expect(await slotExists(third.slotName)).toBe(true);

    const del = await s.request('DELETE', `/v1/clusters/${d.body.id}`, { token });
    expect(del.status).toBe(202);
    expect(await slotExists(third.slotName)).toBe(false);
  });
});
