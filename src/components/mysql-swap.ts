import type mysql from 'mysql2/promise';
import { quoteIdent as q } from './mysql-connection.js';
import { describeMysqlError } from './mysql-errors.js';
import { ComponentError } from './types.js';

/**
 * The second half of a mysql restore: the dump is loaded (and every chunk verified) in the
 * scratch database; this moves it into the target.
 *
 * Before the point of no return nothing of the target changes but in one case (below): the
 * scratch database's events and triggers are read and dropped there (an event must not fire in
 * the scratch database; a table with triggers cannot move to another database, "Trigger in wrong
 * schema"), and the definitions of its routines and views are read. The point of no return is ONE
 * `RENAME TABLE` statement, atomic in MariaDB and MySQL, that moves every table of the target out
 * (`placeOldTables`) and every table of the scratch database in under its own name; foreign keys
 * follow their tables; the target's views are renamed within it (views cannot change database).
 * If that statement fails (a lock held past `lockWaitTimeoutS`, a name the server refuses) the
 * target is as it was. After it, the old tables and views left in the target are dropped (their
 * triggers with them), the old routines and events too, and the backup's routines, views (in
 * dependency order), triggers (in their action order) and events are created in the target with
 * the sql_mode, character set and time zone each was created with.
 */

export interface ObjectDefinition {
  kind: 'VIEW' | 'TRIGGER' | 'PROCEDURE' | 'FUNCTION' | 'EVENT';
  name: string;
  create: string;
  sqlMode?: string;
  charsetClient?: string;
  collationConnection?: string;
  timeZone?: string;
}

type Rows = mysql.RowDataPacket[];

async function rows(sql: mysql.Connection, query: string, values: unknown[] = []): Promise<Rows> {
  const [r] = await sql.query<Rows>(query, values);
  return r;
}

const CREATE_COLUMN: Record<ObjectDefinition['kind'], string> = {
  VIEW: 'Create View',
  TRIGGER: 'SQL Original Statement',
  PROCEDURE: 'Create Procedure',
  FUNCTION: 'Create Function',
  EVENT: 'Create Event',
};

/** SHOW CREATE of an object of the current database (so that its own tables are not qualified with the database's name). */
export async function showCreate(sql: mysql.Connection, kind: ObjectDefinition['kind'], name: string): Promise<ObjectDefinition> {
  const [row] = await rows(sql, `SHOW CREATE ${kind} ${q(name)}`);
  const create = row?.[CREATE_COLUMN[kind]];
  if (typeof create !== 'string' || create === '') throw new ComponentError(`could not read the definition of ${kind.toLowerCase()} ${name} (the user needs the right to see it)`);
  const def: ObjectDefinition = { kind, name, create };
  if (typeof row?.sql_mode === 'string') def.sqlMode = row.sql_mode;
  if (typeof row?.character_set_client === 'string') def.charsetClient = row.character_set_client;
  if (typeof row?.collation_connection === 'string') def.collationConnection = row.collation_connection;
  if (typeof row?.time_zone === 'string') def.timeZone = row.time_zone;
  return def;
}

/** What the backup holds besides its tables, read from the scratch database (current), whose triggers and events are then dropped. */
async function takeObjects(sql: mysql.Connection, scratch: string): Promise<ObjectDefinition[]> {
  const defs: ObjectDefinition[] = [];
  // Events first: dropped at once, they cannot fire in the scratch database any more.
  for (const r of await rows(sql, 'SELECT EVENT_NAME AS name FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ? ORDER BY EVENT_NAME', [scratch])) {
    const name = String(r.name);
    defs.push(await showCreate(sql, 'EVENT', name));
    await sql.query(`DROP EVENT ${q(scratch)}.${q(name)}`);
  }
  for (const r of await rows(sql, "SELECT ROUTINE_NAME AS name, ROUTINE_TYPE AS type FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ? AND ROUTINE_TYPE IN ('PROCEDURE', 'FUNCTION') ORDER BY ROUTINE_TYPE, ROUTINE_NAME", [scratch])) {
    defs.push(await showCreate(sql, r.type === 'FUNCTION' ? 'FUNCTION' : 'PROCEDURE', String(r.name)));
  }
  for (const r of await rows(sql, "SELECT TABLE_NAME AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'VIEW' ORDER BY TABLE_NAME", [scratch])) {
    defs.push(await showCreate(sql, 'VIEW', String(r.name)));
  }
  const triggers = await rows(
    sql,
    'SELECT TRIGGER_NAME AS name FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER',
    [scratch],
  );
  for (const r of triggers) {
    const name = String(r.name);
    defs.push(await showCreate(sql, 'TRIGGER', name));
    await sql.query(`DROP TRIGGER ${q(scratch)}.${q(name)}`);
  }
  return defs;
}

const TABLE_TYPES = "('BASE TABLE', 'SEQUENCE', 'SYSTEM VERSIONED')";

async function tablesOf(sql: mysql.Connection, db: string, types: string): Promise<string[]> {
  return (await rows(sql, `SELECT TABLE_NAME AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE IN ${types} ORDER BY TABLE_NAME`, [db])).map((r) => String(r.name));
}

/** Creates an object in the current database with the session settings it was created with, then puts the session's back. */
async function createObject(sql: mysql.Connection, def: ObjectDefinition, session: Record<string, string>): Promise<void> {
  const settings: [string, string | undefined][] = [
    ['sql_mode', def.sqlMode],
    ['character_set_client', def.charsetClient],
    ['collation_connection', def.collationConnection],
    ['time_zone', def.timeZone],
  ];
  const wanted = settings.filter((s): s is [string, string] => s[1] !== undefined);
  if (wanted.length > 0) await sql.query(`SET ${wanted.map(([n]) => `SESSION ${n} = ?`).join(', ')}`, wanted.map(([, v]) => v));
  try {
    await sql.query(def.create);
  } catch (err) {
    throw Object.assign(err instanceof Error ? err : new Error(String(err)), { object: def });
  } finally {
    if (wanted.length > 0) await sql.query(`SET ${wanted.map(([n]) => `SESSION ${n} = ?`).join(', ')}`, wanted.map(([n]) => session[n]));
  }
}

/** Views may use views: create those that can be, until none is left or a round makes no progress. */
async function createViews(sql: mysql.Connection, views: ObjectDefinition[], session: Record<string, string>): Promise<void> {
  let pending = views;
  while (pending.length > 0) {
    const failed: { def: ObjectDefinition; err: unknown }[] = [];
    for (const def of pending) {
      try {
        await createObject(sql, def, session);
      } catch (err) {
        failed.push({ def, err });
      }
    }
    if (failed.length === pending.length) throw (failed[0] as { err: unknown }).err;
    pending = failed.map((f) => f.def);
  }
}

export interface SwapOptions {
  /** How long each statement may wait for other sessions' locks on the target's tables before the restore gives up (nothing changed). */
  lockWaitTimeoutS: number;
  /** Random tag of this restore, for the old tables' temporary names. */
  tag: string;
  /** An empty scratch database the old tables move to (the caller drops it). */
  old: string;
}

interface OldTable {
  name: string;
  /** Where the RENAME puts it: the `old` database, or a temporary name in the target (tables whose triggers stay with them). */
  to: { db: string; name: string };
}

/**
 * Where each of the target's tables goes in the RENAME. To the `old` database, unless it has
 * triggers ("Trigger in wrong schema"): then it stays in the target under a temporary name,
 * which keeps its triggers, unless one of its foreign keys is named like one of the backup's
 * (InnoDB's foreign key names are per database: the RENAME would fail). Only in that last case
 * are its triggers dropped before the RENAME (returned in `dropTriggers`), and put back if the
 * RENAME fails.
 */
async function placeOldTables(sql: mysql.Connection, target: string, scratch: string, opts: SwapOptions) {
  const oldTables = await tablesOf(sql, target, TABLE_TYPES);
  const fks = async (db: string) => rows(sql, 'SELECT TABLE_NAME AS t, CONSTRAINT_NAME AS n FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = ?', [db]);
  const newFkNames = new Set((await fks(scratch)).map((r) => String(r.n)));
  const collidingTables = new Set((await fks(target)).filter((r) => newFkNames.has(String(r.n))).map((r) => String(r.t)));
  const triggers = await rows(
    sql,
    'SELECT TRIGGER_NAME AS name, EVENT_OBJECT_TABLE AS t FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER',
    [target],
  );
  const withTriggers = new Set(triggers.map((r) => String(r.t)));
  const placed: OldTable[] = oldTables.map((name, i) =>
    withTriggers.has(name) && !collidingTables.has(name) ? { name, to: { db: target, name: `bk_old_${opts.tag}_${i}` } } : { name, to: { db: opts.old, name } },
  );
  const dropTriggers: ObjectDefinition[] = [];
  await sql.query(`USE ${q(target)}`);
  for (const r of triggers) if (collidingTables.has(String(r.t))) dropTriggers.push(await showCreate(sql, 'TRIGGER', String(r.name)));
  return { placed, dropTriggers };
}

function lockedOut(err: unknown, opts: SwapOptions): ComponentError | null {
  if ((err as { errno?: number }).errno !== 1205) return null;
  return new ComponentError(`the target's tables stayed locked by other sessions for more than ${opts.lockWaitTimeoutS} s; nothing was restored`);
}

export async function swapIntoTarget(sql: mysql.Connection, target: string, scratch: string, opts: SwapOptions): Promise<void> {
  await sql.query(`USE ${q(scratch)}`);
  const objects = await takeObjects(sql, scratch);
  const newTables = await tablesOf(sql, scratch, TABLE_TYPES);
  const oldViews = (await tablesOf(sql, target, "('VIEW')")).map((name, i) => ({ name, temp: `bk_oldv_${opts.tag}_${i}` }));
  const oldRoutines = await rows(sql, "SELECT ROUTINE_NAME AS name, ROUTINE_TYPE AS type FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ? AND ROUTINE_TYPE IN ('PROCEDURE', 'FUNCTION')", [target]);
  const oldEvents = await rows(sql, 'SELECT EVENT_NAME AS name FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ?', [target]);
  const [sessionRow] = await rows(sql, 'SELECT @@session.sql_mode AS sql_mode, @@session.character_set_client AS character_set_client, @@session.collation_connection AS collation_connection, @@session.time_zone AS time_zone');
  const session = Object.fromEntries(Object.entries(sessionRow ?? {}).map(([k, v]) => [k, String(v)]));
  await sql.query('SET SESSION lock_wait_timeout = ?', [opts.lockWaitTimeoutS]);
  const { placed, dropTriggers } = await placeOldTables(sql, target, scratch, opts);

  const renames = [
    ...placed.map(({ name, to }) => `${q(target)}.${q(name)} TO ${q(to.db)}.${q(to.name)}`),
    ...oldViews.map(({ name, temp }) => `${q(target)}.${q(name)} TO ${q(target)}.${q(temp)}`),
    ...newTables.map((name) => `${q(scratch)}.${q(name)} TO ${q(target)}.${q(name)}`),
  ];
  const dropped: ObjectDefinition[] = [];
  try {
    for (const def of dropTriggers) {
      await sql.query(`DROP TRIGGER ${q(target)}.${q(def.name)}`);
      dropped.push(def);
    }
    if (renames.length > 0) await sql.query(`RENAME TABLE ${renames.join(', ')}`);
  } catch (err) {
    // Nothing moved: put back what was dropped, in its order.
    for (const def of dropped) {
      try {
        await createObject(sql, def, session);
      } catch (again) {
        throw new ComponentError(`the restore failed and trigger ${def.name} could not be put back: ${describeMysqlError(again, target)}`);
      }
    }
    throw lockedOut(err, opts) ?? new ComponentError(`moving the restored tables into the database failed: ${describeMysqlError(err, target)}; nothing was restored`);
  }

  // Past the point of no return: the target holds the backup's tables.
  try {
    await sql.query('SET SESSION foreign_key_checks = 0');
    if (oldViews.length > 0) await sql.query(`DROP VIEW IF EXISTS ${oldViews.map(({ temp }) => `${q(target)}.${q(temp)}`).join(', ')}`);
    const kept = placed.filter((t) => t.to.db === target);
    if (kept.length > 0) await sql.query(`DROP TABLE IF EXISTS ${kept.map(({ to }) => `${q(target)}.${q(to.name)}`).join(', ')}`);
    for (const r of oldRoutines) await sql.query(`DROP ${r.type === 'FUNCTION' ? 'FUNCTION' : 'PROCEDURE'} IF EXISTS ${q(target)}.${q(String(r.name))}`);
    for (const r of oldEvents) await sql.query(`DROP EVENT IF EXISTS ${q(target)}.${q(String(r.name))}`);
    await sql.query(`USE ${q(target)}`);
    const byKind = (kind: ObjectDefinition['kind'][]) => objects.filter((o) => kind.includes(o.kind));
    for (const def of byKind(['PROCEDURE', 'FUNCTION'])) await createObject(sql, def, session);
    await createViews(sql, byKind(['VIEW']), session);
    for (const def of byKind(['TRIGGER', 'EVENT'])) await createObject(sql, def, session);
  } catch (err) {
    if (err instanceof ComponentError) throw err;
    const object = (err as { object?: ObjectDefinition }).object;
    const what = object ? ` (${object.kind.toLowerCase()} ${object.name})` : '';
    throw new ComponentError(`the tables were restored, but recreating the database's other objects failed${what}: ${describeMysqlError(err, target)}`);
  }
}
