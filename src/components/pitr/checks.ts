import { createHash } from 'node:crypto';
import { userInfo } from 'node:os';
import pg from 'pg';
import type { PostgresConnection } from '../postgres-connection.js';
import { describePostgresFailure } from '../postgres-errors.js';
import { ComponentError } from '../types.js';

/**
 * What continuous archiving needs from a tenant's server (SPEC section 13), and its replication
 * slot. Every step is bounded (STEP_MS): a server that stops answering cannot hold a check, a
 * slot creation or an archiver's start.
 */
const STEP_MS = 5_000;

/**
 * node-postgres clients for a connection, in the order libpq would try them: each pinned address
 * (PGHOSTADDR, with PGHOST naming the server for TLS), and for sslmode=prefer/allow with and
 * without TLS. Every setting is given explicitly: node-postgres would otherwise fill gaps from
 * the service's own PG* variables and ~/.pgpass.
 */
function clientConfigs(conn: PostgresConnection, opts: { replication?: boolean; timeoutMs: number }): pg.ClientConfig[] {
  const env = conn.env;
  const hosts = (env.PGHOST ?? 'localhost').split(',');
  const addrs = env.PGHOSTADDR ? env.PGHOSTADDR.split(',') : hosts;
  const timeoutS = Number(env.PGCONNECT_TIMEOUT);
  const connectMs = Number.isFinite(timeoutS) && timeoutS > 0 ? Math.min(timeoutS * 1000, opts.timeoutMs) : opts.timeoutMs;
  const password = env.PGPASSWORD ?? '';
  const configs: pg.ClientConfig[] = [];
  addrs.forEach((addr, i) => {
    const servername = hosts[i] ?? hosts[0] ?? addr;
    const tls = {
      servername,
      ...(env.PGSSLMODE === 'verify-full' ? { rejectUnauthorized: true } : env.PGSSLMODE === 'verify-ca' ? { rejectUnauthorized: true, checkServerIdentity: () => undefined } : { rejectUnauthorized: false }),
    };
    const modes: (false | typeof tls)[] = env.PGSSLMODE === 'disable' ? [false] : env.PGSSLMODE === 'allow' ? [false, tls] : env.PGSSLMODE === undefined || env.PGSSLMODE === 'prefer' ? [tls, false] : [tls];
    for (const ssl of modes) {
      configs.push({
        host: addr,
        port: Number(env.PGPORT ?? 5432),
        user: env.PGUSER ?? userInfo().username,
        database: conn.database,
        password: async () => password,
        ssl,
        application_name: env.PGAPPNAME ?? 'backup-service',
        ...(env.PGOPTIONS ? { options: env.PGOPTIONS } : {}),
        ...(env.PGCHANNELBINDING === 'require' ? { enableChannelBinding: true } : {}),
        ...(opts.replication ? { replication: 'true' } : {}),
        connectionTimeoutMillis: connectMs,
        query_timeout: opts.timeoutMs,
      } as pg.ClientConfig);
    }
  });
  return configs;
}

/** Whether the next configuration (another address, or the other side of sslmode=prefer/allow) is worth trying. */
function tryNext(err: Error): boolean {
  const code = (err as { code?: string }).code;
  // The server answered and refused us for a reason another address would repeat.
  if (code === '28P01' || code === '3D000' || code === '42501') return false;
  return true;
}

/** A connected node-postgres client on the tenant's server, or the error of the last attempt. */
export async function connectClient(conn: PostgresConnection, opts: { replication?: boolean; timeoutMs?: number } = {}): Promise<pg.Client> {
  let last: Error = new Error('no address to connect to');
  for (const config of clientConfigs(conn, { ...opts, timeoutMs: opts.timeoutMs ?? STEP_MS })) {
    const client = new pg.Client(config);
    client.on('error', () => {}); // a dropped idle connection surfaces on its next query
    try {
      await client.connect();
      return client;
    } catch (err) {
      last = err as Error;
      await client.end().catch(() => {});
      if (!tryNext(last)) break;
    }
  }
  throw last;
}

/** A tenant-fit ComponentError for a failed step (libpq-like messages lose addresses and ports). */
export function stepError(conn: PostgresConnection, what: string, err: unknown): ComponentError {
  const raw = conn.redact(err instanceof Error ? err.message : String(err));
  const isServer = typeof (err as { code?: unknown }).code === 'string' && /^[0-9A-Z]{5}$/.test((err as { code: string }).code);
  return new ComponentError(`postgres: ${what}: ${describePostgresFailure(isServer ? `ERROR:  ${raw}` : raw)}`, { detail: raw });
}

export async function withClient<T>(conn: PostgresConnection, what: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  let client: pg.Client;
  try {
    client = await connectClient(conn);
  } catch (err) {
    throw stepError(conn, what, err);
  }
  try {
    return await fn(client);
  } catch (err) {
    if (err instanceof ComponentError) throw err;
    throw stepError(conn, what, err);
  } finally {
    await client.end().catch(() => {});
  }
}

function quoteIdent(name: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}

interface ServerFacts {
  rolname: string;
  can_replicate: boolean;
  wal_level: string;
  max_senders: number;
  senders: number;
  max_slots: number;
  slots: number;
  own_slot: boolean;
  own_active: boolean;
}

const FACTS_SQL = `
SELECT r.rolname, (r.rolreplication OR r.rolsuper) AS can_replicate,
       current_setting('wal_level') AS wal_level,
       current_setting('max_wal_senders')::int AS max_senders,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender')::int AS senders,
       current_setting('max_replication_slots')::int AS max_slots,
       (SELECT count(*) FROM pg_replication_slots)::int AS slots,
       EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1) AS own_slot,
       EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active) AS own_active
  FROM pg_roles r WHERE r.rolname = current_user`;

/**
 * Every problem that stops continuous archiving on this server, each a sentence saying what is
 * missing and how to fix it; [] when streaming can start. `slot`: the component's slot, which
 * then needs no free slot, and whose orphaned walsender (taken over on start) no free sender.
 * The replication connection is opened for real: only that proves pg_hba.conf lets it in.
 */
export async function checkContinuous(conn: PostgresConnection, opts: { slot?: string } = {}): Promise<string[]> {
  let client: pg.Client;
  try {
    client = await connectClient(conn);
  } catch (err) {
    return [`cannot connect to the server: ${describePostgresFailure(conn.redact((err as Error).message))}`];
  }
  let facts: ServerFacts;
  try {
    const r = await client.query<ServerFacts>(FACTS_SQL, [opts.slot ?? '']);
    facts = r.rows[0] as ServerFacts;
  } catch (err) {
    return [`cannot read the server's replication settings: ${stepError(conn, 'reading settings', err).message.replace(/^postgres: reading settings: /, '')}`];
  } finally {
    await client.end().catch(() => {});
  }

  const role = quoteIdent(facts.rolname);
  const problems: string[] = [];
  const lacksRole = `role ${role} lacks the REPLICATION attribute, which streaming WAL needs: as a superuser run ALTER ROLE ${role} REPLICATION;`;
  const walLevel = `wal_level is ${facts.wal_level}, continuous archiving needs replica: run ALTER SYSTEM SET wal_level = replica; and restart the server`;
  const senders = `no free WAL sender (max_wal_senders is ${facts.max_senders}, ${facts.senders} in use): raise it with ALTER SYSTEM SET max_wal_senders = ${Math.max(facts.senders + 2, 10)}; and restart the server`;
  if (!facts.can_replicate) problems.push(lacksRole);
  if (facts.wal_level === 'minimal') problems.push(walLevel);
  if (facts.max_senders - facts.senders + (facts.own_active ? 1 : 0) < 1) problems.push(senders);
  if (!facts.own_slot && facts.slots >= facts.max_slots) {
    problems.push(
      `no free replication slot (max_replication_slots is ${facts.max_slots}, all taken): drop unused slots (pg_drop_replication_slot) or raise it with ALTER SYSTEM SET max_replication_slots = ${facts.max_slots + 1}; and restart the server`,
    );
  }

  const refused = await replicationRefusal(conn);
  if (refused === null) return problems;
  const hba = `the server refuses replication connections for role ${role}: add a line for it to pg_hba.conf, such as "host replication ${role} <the backup service's address>/32 scram-sha-256", and reload (SELECT pg_reload_conf();)`;
  if (/no pg_hba\.conf entry|pg_hba\.conf rejects/i.test(refused)) problems.push(hba);
  else if (/must be superuser or replication role|permission denied to start WAL sender/i.test(refused)) {
    if (!problems.includes(lacksRole)) problems.push(lacksRole);
  } else if (/exceeds max_wal_senders/i.test(refused)) {
    if (!problems.includes(senders) && !problems.includes(walLevel)) problems.push(senders);
  } else if (/password authentication failed|authentication failed|no password supplied/i.test(refused)) {
    problems.push(`a replication connection for role ${role} failed authentication although a normal one succeeded: pg_hba.conf's replication line for the role must accept the same credentials`);
  } else {
    problems.push(`a replication connection could not be opened: ${describePostgresFailure(refused)}`);
  }
  return problems;
}

/** Why a physical replication connection (what pg_receivewal opens) fails, redacted; null when IDENTIFY_SYSTEM answers. */
async function replicationRefusal(conn: PostgresConnection): Promise<string | null> {
  let client: pg.Client | undefined;
  try {
    client = await connectClient(conn, { replication: true });
    await client.query('IDENTIFY_SYSTEM');
    return null;
  } catch (err) {
    return conn.redact((err as Error).message);
  } finally {
    await client?.end().catch(() => {});
  }
}

const SLOT_NAME = /^[a-z0-9_]{1,63}$/;
const UUID = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;

/**
 * The replication slot of one component of a cluster: `bk_<cluster id hex>_<8 hex of
 * sha256(component)>` (44 characters). A cluster id that is not a UUID is hashed too, so any id
 * gives a valid, stable name.
 */
export function slotNameFor(clusterId: string, component: string): string {
  const cluster = UUID.test(clusterId) ? clusterId.replace(/-/g, '').toLowerCase() : createHash('sha256').update(clusterId).digest('hex').slice(0, 32);
  return `bk_${cluster}_${createHash('sha256').update(component).digest('hex').slice(0, 8)}`;
}

function checkSlotName(slot: string): void {
  if (!SLOT_NAME.test(slot)) throw new ComponentError(`invalid replication slot name ${JSON.stringify(slot)}`);
}

/** A physical slot that holds WAL from now on (reserved at once); nothing happens if it exists. */
export async function createSlot(conn: PostgresConnection, slot: string): Promise<void> {
  checkSlotName(slot);
  await withClient(conn, `creating replication slot ${slot}`, async (c) => {
    try {
      await c.query('SELECT pg_create_physical_replication_slot($1, true)', [slot]);
    } catch (err) {
      if ((err as { code?: string }).code !== '42710') throw err;
      const r = await c.query<{ slot_type: string }>('SELECT slot_type FROM pg_replication_slots WHERE slot_name = $1', [slot]);
      const type = r.rows[0]?.slot_type;
      if (type !== undefined && type !== 'physical') throw new ComponentError(`postgres: replication slot ${slot} exists but is ${type}, not physical`);
    }
  });
}

/**
 * Ends the walsender holding `slot`, if any (an orphaned pg_receivewal of a dead archiver, or
 * one of another), and waits until the slot is inactive. A role may terminate its own backends.
 */
export async function releaseSlot(conn: PostgresConnection, slot: string): Promise<void> {
  checkSlotName(slot);
  await withClient(conn, `releasing replication slot ${slot}`, (c) => releaseOn(c, slot));
}

async function releaseOn(c: pg.Client, slot: string): Promise<void> {
  const deadline = Date.now() + 2 * STEP_MS;
  for (;;) {
    const r = await c.query<{ active_pid: number | null }>('SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1', [slot]);
    const pid = r.rows[0]?.active_pid ?? null;
    if (pid === null) return;
    if (Date.now() > deadline) throw new ComponentError(`postgres: replication slot ${slot} is still in use by another connection`);
    // Waits (up to 1 s) for the walsender to exit; the slot is released as it exits.
    await c.query('SELECT pg_terminate_backend($1, 1000)', [pid]).catch((err: { code?: string }) => {
      if (err.code !== '57014' && err.code !== '01000') throw err;
    });
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Drops the slot, ending its walsender first; nothing happens if there is no such slot. */
export async function dropSlot(conn: PostgresConnection, slot: string): Promise<void> {
  checkSlotName(slot);
  await withClient(conn, `dropping replication slot ${slot}`, async (c) => {
    for (let attempt = 0; ; attempt++) {
      await releaseOn(c, slot);
      try {
        await c.query('SELECT pg_drop_replication_slot($1)', [slot]);
        return;
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code === '42704') return; // absent: already dropped
        // 55006: a receiver took the slot again between the release and the drop.
        if (code !== '55006' || attempt >= 5) throw err;
      }
    }
  });
}
