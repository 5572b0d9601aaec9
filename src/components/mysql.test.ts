import net from 'node:net';
import { tmpdir } from 'node:os';
import type mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MysqlFixture, mysqlAdmin, mysqlUrl, startScratchMariadb, type ScratchMariadb } from '../../test/helpers/mysql.js';
import { decodeStreamManifest, encodeStreamManifest } from '../repo/manifest.js';
import { MemoryRepo, collectAll, fromArray } from '../repo/memory-repo.test-helper.js';
import { IntegrityError, type ChunkSink } from '../repo/types.js';
import { checkMysqlConnection, checkMysqlUrl, createMysqlDriver, mysqlDriver } from './mysql.js';
import { unqualifyTriggerLine } from './mysql-dump-filter.js';
import { createTargetPolicy, parseAllowedHosts } from './postgres-targets.js';
import { ComponentError, type BackupContext, type ComponentBackupContext } from './types.js';

const fx = new MysqlFixture('bk_my');
const ctx: BackupContext = { dataRoot: tmpdir() };
const PASSWORD = 'Sup3r/S3cret pa$$ "q\'';
const targets = createTargetPolicy({
  allowedHosts: parseAllowedHosts('127.0.0.1'),
  ownDatabaseUrl: 'postgresql://postgres@127.0.0.1:5432/x',
  ownRedisUrl: 'redis://127.0.0.1:6379',
});

let SRC: string;
let DST: string;
const repo = new MemoryRepo({ chunkSize: 8 * 1024 });

async function backup(url: string, extra: Partial<ComponentBackupContext> = {}, sink: ChunkSink = repo) {
  const snap = mysqlDriver.backup({ url }, { ...ctx, sink, previous: null, ...extra });
  const manifest = Buffer.concat(await collectAll(snap.manifest));
  return { manifest, bytes: snap.logicalBytes() };
}

function restore(url: string, manifest: Buffer, source = repo, driver = mysqlDriver, extra: Partial<BackupContext> = {}) {
  return driver.restore({ url }, { ...ctx, source, manifest: fromArray([manifest]), ...extra });
}

async function dumpText(manifest: Buffer, source = repo): Promise<Buffer> {
  const ref = await decodeStreamManifest(fromArray([manifest]));
  return Buffer.concat(await collectAll(source.read(ref.chunks)));
}

async function onDb<T>(db: string, fn: (c: mysql.Connection) => Promise<T>, port?: number): Promise<T> {
  const c = await mysqlAdmin(db, port);
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

async function q(c: mysql.Connection, sql: string, values: unknown[] = []): Promise<mysql.RowDataPacket[]> {
  const [rows] = await c.query<mysql.RowDataPacket[]>(sql, values);
  return rows;
}

/** Everything a restore must reproduce: every table's definition, rows and checksum, every view, routine, trigger and event. */
async function state(db: string, port?: number): Promise<Record<string, unknown>> {
  return onDb(db, async (c) => {
    const out: Record<string, unknown> = {};
    const tables = await q(c, "SELECT TABLE_NAME AS n, TABLE_TYPE AS t FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME", [db]);
    out.tables = tables.map((t) => `${t.n}:${t.t}`);
    for (const t of tables) {
      const name = String(t.n);
      if (t.t === 'VIEW') {
        out[`view ${name}`] = (await q(c, `SHOW CREATE VIEW \`${name}\``))[0]?.['Create View'];
        out[`view ${name} rows`] = await q(c, `SELECT * FROM \`${name}\` ORDER BY 1`);
        continue;
      }
      out[`table ${name}`] = (await q(c, `SHOW CREATE TABLE \`${name}\``))[0]?.['Create Table'];
      out[`rows ${name}`] = await q(c, `SELECT * FROM \`${name}\` ORDER BY 1`);
      out[`checksum ${name}`] = (await q(c, `CHECKSUM TABLE \`${name}\``))[0]?.Checksum;
    }
    for (const r of await q(c, 'SELECT ROUTINE_NAME AS n, ROUTINE_TYPE AS t FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ? ORDER BY 1, 2', [db])) {
      const row = (await q(c, `SHOW CREATE ${r.t} \`${r.n}\``))[0];
      out[`${r.t} ${r.n}`] = [row?.[r.t === 'FUNCTION' ? 'Create Function' : 'Create Procedure'], row?.sql_mode, row?.character_set_client];
    }
    for (const r of await q(
      c,
      'SELECT TRIGGER_NAME, EVENT_MANIPULATION, EVENT_OBJECT_TABLE, ACTION_ORDER, ACTION_STATEMENT, ACTION_TIMING, SQL_MODE, DEFINER, CHARACTER_SET_CLIENT FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? ORDER BY 1',
      [db],
    )) {
      out[`trigger ${r.TRIGGER_NAME}`] = r;
    }
    for (const r of await q(c, 'SELECT EVENT_NAME AS n FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ? ORDER BY 1', [db])) {
      const row = (await q(c, `SHOW CREATE EVENT \`${r.n}\``))[0];
      out[`event ${r.n}`] = [row?.['Create Event'], row?.sql_mode, row?.time_zone];
    }
    // Plain data (Buffers as their bytes), so that a difference is one that shows.
    return JSON.parse(JSON.stringify(out)) as Record<string, unknown>;
  }, port);
}

/** Compares two states key by key, so that a failure names what differs. */
function expectSameState(actual: Record<string, unknown>, expected: Record<string, unknown>): void {
  expect(Object.keys(actual).sort()).toEqual(Object.keys(expected).sort());
  for (const key of Object.keys(expected)) expect(actual[key], key).toEqual(expected[key]);
}

const SCHEMA = `
CREATE TABLE parents (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100) NOT NULL) ENGINE=InnoDB;
CREATE TABLE kinds (
  id INT PRIMARY KEY,
  parent_id INT NULL,
  i INT, u INT UNSIGNED, big BIGINT, dec1 DECIMAL(20,6), f FLOAT, d DOUBLE,
  c CHAR(10), vc VARCHAR(255), tx TEXT, bl BLOB,
  dt DATE, dtm DATETIME(6), ts TIMESTAMP NULL DEFAULT NULL, tm TIME,
  js JSON, en ENUM('a','b','c'), st SET('x','y','z'), bt BIT(10),
  CONSTRAINT kinds_parent FOREIGN KEY (parent_id) REFERENCES parents(id) ON DELETE CASCADE
) ENGINE=InnoDB;
CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, what VARCHAR(100), at DATETIME(6)) ENGINE=InnoDB;
CREATE VIEW kinds_view AS SELECT k.id, p.name, k.vc FROM kinds k JOIN parents p ON p.id = k.parent_id;
CREATE VIEW counts AS SELECT COUNT(*) AS n FROM kinds_view;
CREATE PROCEDURE add_parent(IN n VARCHAR(100)) BEGIN INSERT INTO parents (name) VALUES (n); END;
CREATE FUNCTION double_it(x INT) RETURNS INT DETERMINISTIC RETURN x * 2;
CREATE TRIGGER kinds_ai AFTER INSERT ON kinds FOR EACH ROW INSERT INTO audit (what, at) VALUES (CONCAT('kind ', NEW.id), '2024-01-01 00:00:00');
CREATE EVENT purge_audit ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00' ON COMPLETION PRESERVE DISABLE DO DELETE FROM audit WHERE at < '2000-01-01';
INSERT INTO parents (name) SELECT CONCAT('parent ', seq) FROM seq_1_to_300;
INSERT INTO kinds (id, parent_id, i, u, big, dec1, f, d, c, vc, tx, bl, dt, dtm, ts, tm, js, en, st, bt)
  SELECT seq, 1 + seq % 300, CAST(seq AS SIGNED) - 1000, seq * 3, seq * 1000000007, seq / 7, seq / 4, seq / 9,
    CONCAT('c', seq % 10), CONCAT('vc ', seq, ' ünï 😀'), REPEAT('text ', seq % 50), UNHEX(CONCAT('00FF', LPAD(HEX(seq), 8, '0'), '00')),
    '2024-02-29' + INTERVAL seq DAY, '2024-01-01 12:34:56.123456' + INTERVAL seq SECOND, '2024-06-01 00:00:00' + INTERVAL seq MINUTE, '-12:30:15',
    JSON_OBJECT('n', seq, 'a', JSON_ARRAY(1, 'two', NULL), 'e', '😀'), ELT(1 + seq % 3, 'a', 'b', 'c'), 'x,z', b'1010101010'
  FROM seq_1_to_2000;
INSERT INTO kinds (id) VALUES (5000);
INSERT INTO kinds (id, vc, bl, tx) VALUES (5001, 'quotes '' " \\\\ and\\nnewline\\ttab', 0x00, '');
`;

beforeAll(async () => {
  SRC = await fx.createDatabase('src');
  DST = await fx.createDatabase('dst');
  await onDb(SRC, async (c) => {
    await c.query(SCHEMA);
    // Qualified with the database's name, as tenants may write it: mariadb-dump keeps it so.
    await c.query(`CREATE TRIGGER \`${SRC}\`.parents_bi BEFORE INSERT ON \`${SRC}\`.parents FOR EACH ROW SET NEW.name = TRIM(NEW.name)`);
  });
});

afterAll(async () => {
  await fx.cleanup();
});

describe('mysql URL', () => {
  it('checks the shape only', () => {
    expect(checkMysqlUrl('mysql://u:p@db.example.com:3307/shop')).toBeNull();
    expect(checkMysqlUrl('mariadb://u@db.example.com/shop?ssl=verify')).toBeNull();
    expect(checkMysqlUrl('postgresql://u@h/db')).toBe('invalid mysql URL: scheme must be mysql:// or mariadb://');
    expect(checkMysqlUrl('mysql://u@h')).toBe('invalid mysql URL: the path must name one database');
    expect(checkMysqlUrl('mysql://u@h:0/db')).toBe('invalid mysql URL: port must be between 1 and 65535');
    expect(checkMysqlUrl('mysql://h/db')).toBe('invalid mysql URL: a user name is required');
    expect(checkMysqlUrl('mysql://u:secret@h/db?socket=/tmp/x')).toBe('invalid mysql URL: unsupported parameter socket');
    expect(checkMysqlUrl('not a url')).toBe('invalid mysql URL: not a URL');
  });
});

describe('trigger qualifiers in the dump', () => {
  it('are dropped from the trigger name and its table only', () => {
    const line = (s: string) => unqualifyTriggerLine(Buffer.from(s, 'latin1')).toString('latin1');
    expect(line('/*!50003 CREATE*/ /*!50017 DEFINER=`root`@`%`*/ /*!50003 TRIGGER shop.tr BEFORE INSERT ON shop.c FOR EACH ROW SET NEW.x = shop.f(1)\n')).toBe(
      '/*!50003 CREATE*/ /*!50017 DEFINER=`root`@`%`*/ /*!50003 TRIGGER tr BEFORE INSERT ON c FOR EACH ROW SET NEW.x = shop.f(1)\n',
    );
    expect(line('/*!50003 CREATE*/ /*!50017 DEFINER=`a`@`b`*/ /*!50003 TRIGGER `s``x`.`t r` AFTER UPDATE ON `s``x` . `tab` FOR EACH ROW BEGIN\n')).toBe(
      '/*!50003 CREATE*/ /*!50017 DEFINER=`a`@`b`*/ /*!50003 TRIGGER `t r` AFTER UPDATE ON `tab` FOR EACH ROW BEGIN\n',
    );
    const plain = '/*!50003 CREATE*/ /*!50017 DEFINER=`a`@`b`*/ /*!50003 TRIGGER `t` AFTER DELETE ON `tab` FOR EACH ROW SET @x = 1\n';
    expect(line(plain)).toBe(plain);
    expect(line("INSERT INTO `t` VALUES ('/*!50003 CREATE*/ TRIGGER a.b BEFORE INSERT ON a.c');\n")).toBe("INSERT INTO `t` VALUES ('/*!50003 CREATE*/ TRIGGER a.b BEFORE INSERT ON a.c');\n");
  });
});

describe('mysql backup and restore', () => {
  let first: { manifest: Buffer; bytes: number };
  let original: Record<string, unknown>;

  it('dumps every object, deterministically, without the password or the server address in argv or dump', async () => {
    original = await state(SRC);
    const progress: number[] = [];
    let consistentAt = -1;
    first = await backup(mysqlUrl(SRC), {
      onProgress: (p) => progress.push(p.bytes_done),
      onConsistent: () => (consistentAt = progress.at(-1) ?? 0),
    });
    expect(first.bytes).toBeGreaterThan(200_000);
    expect(progress.at(-1)).toBe(first.bytes);
    expect(consistentAt).toBeGreaterThanOrEqual(0);
    expect(consistentAt).toBeLessThan(first.bytes);
    const text = (await dumpText(first.manifest)).toString('utf8');
    for (const s of ['CREATE TABLE `kinds`', 'CONSTRAINT `kinds_parent`', 'VIEW `kinds_view`', 'PROCEDURE `add_parent`', 'FUNCTION `double_it`', 'TRIGGER kinds_ai', 'EVENT `purge_audit`', '0x00FF']) {
      expect(text).toContain(s);
    }
    expect(text).not.toMatch(/CREATE DATABASE|^USE /m);
    expect(text).not.toMatch(/^-- /m); // no header comments: they name the server's address
    // Unchanged data, same bytes: the same chunks.
    const again = await backup(mysqlUrl(SRC));
    expect(again.manifest.equals(first.manifest)).toBe(true);
    // The export is the dump itself.
    const exported = Buffer.concat(await collectAll(await mysqlDriver.exportArchive(fromArray([first.manifest]), repo)));
    expect(exported.toString('utf8')).toBe(text);
    expect(mysqlDriver.archive).toEqual({ extension: 'sql', mediaType: 'application/sql' });
  });

  it('restores into another database: the same tables, rows, checksums, views, routines, triggers and events', async () => {
    await restore(mysqlUrl(DST), first.manifest);
    expectSameState(await state(DST), original);
    expect(await fx.databasesLike(`${DST}__bk_`)).toEqual([]);
    // The restored objects work.
    await onDb(DST, async (c) => {
      expect((await q(c, 'SELECT double_it(21) AS v'))[0]?.v).toBe(42);
      await c.query("CALL add_parent('  trimmed  ')");
      expect((await q(c, 'SELECT name FROM parents ORDER BY id DESC LIMIT 1'))[0]?.name).toBe('trimmed');
      expect((await q(c, 'SELECT n FROM counts'))[0]?.n).toBe('2000');
    });
  });

  it('a restore over a changed database removes the changes: rows, tables, views, routines and events added after the backup are gone', async () => {
    await onDb(DST, async (c) => {
      await c.query(`
        UPDATE kinds SET vc = 'changed' WHERE id < 100; DELETE FROM kinds WHERE id > 1900; INSERT INTO parents (name) VALUES ('new');
        CREATE TABLE extra (id INT PRIMARY KEY); INSERT INTO extra VALUES (1);
        CREATE VIEW extra_view AS SELECT * FROM extra; DROP VIEW counts;
        CREATE PROCEDURE extra_proc() SELECT 1; DROP FUNCTION double_it;
        CREATE TRIGGER extra_tr BEFORE INSERT ON extra FOR EACH ROW SET NEW.id = NEW.id + 1;
        CREATE EVENT extra_ev ON SCHEDULE EVERY 1 HOUR DISABLE DO SELECT 1; ALTER TABLE audit ADD COLUMN more INT;
      `);
    });
    expect(await state(DST)).not.toEqual(original);
    await restore(mysqlUrl(DST), first.manifest);
    expectSameState(await state(DST), original);
  });

  it('restores into the database it came from, its qualified trigger included, through the target policy', async () => {
    await onDb(SRC, async (c) => {
      await c.query(`UPDATE kinds SET js = NULL; CREATE TABLE later (id INT); DROP TRIGGER parents_bi;`);
    });
    await restore(mysqlUrl(SRC), first.manifest, repo, mysqlDriver, { targets });
    expectSameState(await state(SRC), original);
  });

  it('restores into a database whose name needs quoting, and an empty backup empties a database', async () => {
    const odd = await fx.createDatabase('odd name-$`x');
    await restore(mysqlUrl(odd), first.manifest);
    expectSameState(await state(odd), original);
    const empty = await fx.createDatabase('empty');
    await restore(mysqlUrl(odd), (await backup(mysqlUrl(empty))).manifest);
    expectSameState(await state(odd), await state(empty));
    expect((await state(odd)).tables).toEqual([]);
    expect(await fx.databasesLike(`${odd}__bk_`)).toEqual([]);
  });

  it('DOUBLE values come back bit for bit; FLOAT values as the 6 significant digits mariadb-dump writes (what the server shows)', async () => {
    const a = await fx.createDatabase('fa');
    const b = await fx.createDatabase('fb');
    await onDb(a, (c) => c.query('CREATE TABLE n (id INT PRIMARY KEY, f FLOAT, d DOUBLE); INSERT INTO n SELECT seq, seq / 3, seq / 3 FROM seq_1_to_100'));
    await restore(mysqlUrl(b), (await backup(mysqlUrl(a))).manifest);
    await onDb(a, async (c) => {
      const same = (col: string) => q(c, `SELECT COUNT(*) AS n FROM \`${a}\`.n x JOIN \`${b}\`.n y USING (id) WHERE x.${col} = y.${col}`);
      expect((await same('d'))[0]?.n).toBe('100');
      expect(Number((await same('f'))[0]?.n)).toBeLessThan(100);
      const shown = (db: string) => q(c, `SELECT CAST(f AS CHAR) AS f FROM \`${db}\`.n ORDER BY id`);
      expect(await shown(b)).toEqual(await shown(a));
    });
  });
});

describe('a failed restore leaves the target exactly as it was', () => {
  let good: Buffer;
  let before: Record<string, unknown>;

  beforeAll(async () => {
    good = (await backup(mysqlUrl(SRC))).manifest;
    // The target has a state of its own, with triggers on its tables, views, routines and events.
    await restore(mysqlUrl(DST), good);
    await onDb(DST, async (c) => {
      await c.query(`UPDATE kinds SET vc = 'target state' WHERE id % 3 = 0; CREATE TABLE only_here (id INT PRIMARY KEY); INSERT INTO only_here VALUES (7);
        CREATE TRIGGER only_here_bi BEFORE INSERT ON only_here FOR EACH ROW SET NEW.id = NEW.id * 10; CREATE PROCEDURE only_here_p() SELECT 2;`);
    });
    before = await state(DST);
  });

  async function expectUnchanged(): Promise<void> {
    expectSameState(await state(DST), before);
    expect(await fx.databasesLike(`${DST}__bk_`)).toEqual([]);
  }

  it('when a chunk turns out corrupted at the end of the dump (after the load)', async () => {
    const own = new MemoryRepo({ chunkSize: 8 * 1024 });
    const { manifest } = await backup(mysqlUrl(SRC), {}, own);
    const ref = await decodeStreamManifest(fromArray([manifest]));
    own.corrupt(ref.chunks.at(-1) as string);
    await expect(restore(mysqlUrl(DST), manifest, own)).rejects.toBeInstanceOf(IntegrityError);
    await expectUnchanged();
  });

  it('when the dump fails to load halfway', async () => {
    const text = await dumpText(good);
    const cut = text.indexOf('INSERT INTO `kinds`');
    const broken = Buffer.concat([text.subarray(0, cut), Buffer.from('INSERT INTO `kinds` VALUES (1, broken;\n'), text.subarray(cut)]);
    const ref = await repo.writeStream(fromArray([broken]));
    const manifest = Buffer.concat(await collectAll(encodeStreamManifest(ref)));
    const err = await restore(mysqlUrl(DST), manifest).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ComponentError);
    expect((err as Error).message).toMatch(/^loading the dump failed: the server reported an error: .*syntax/);
    await expectUnchanged();
  });

  it('when another session holds a target table past the lock wait timeout, so the RENAME cannot happen', async () => {
    const holder = await mysqlAdmin(DST);
    try {
      await holder.query('START TRANSACTION');
      await holder.query('SELECT * FROM only_here');
      const driver = createMysqlDriver({ lockWaitTimeoutS: 1 });
      await expect(restore(mysqlUrl(DST), good, repo, driver)).rejects.toThrow("the target's tables stayed locked by other sessions for more than 1 s; nothing was restored");
    } finally {
      await holder.query('ROLLBACK');
      await holder.end();
    }
    await expectUnchanged();
  });

  it('when the user may not create the scratch databases', async () => {
    const user = await fx.createUser('noscratch', PASSWORD, [`GRANT ALL PRIVILEGES ON \`${DST}\`.* TO {user}`]);
    await expect(restore(mysqlUrl(DST, user, PASSWORD), good)).rejects.toThrow(/^missing privileges SELECT, INSERT, CREATE, .* on the scratch databases a restore creates/);
    await expectUnchanged();
  });

  it('when aborted during the load', async () => {
    const slow = new MemoryRepo({ chunkSize: 8 * 1024 });
    const { manifest } = await backup(mysqlUrl(SRC), {}, slow);
    slow.readDelayMs = 20;
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 300);
    await expect(restore(mysqlUrl(DST), manifest, slow, mysqlDriver, { signal: ac.signal })).rejects.toThrow(/abort/i);
    await expectUnchanged();
  });
});

describe('mysql failures a tenant can cause', () => {
  let silent: net.Server;
  let silentPort: number;
  let closedPort: number;
  let users: Record<string, string>;

  beforeAll(async () => {
    silent = net.createServer(() => {}); // accepts, never greets
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    silentPort = (silent.address() as net.AddressInfo).port;
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    closedPort = (probe.address() as net.AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const all = ['SELECT', 'SHOW VIEW', 'LOCK TABLES', 'TRIGGER', 'EVENT'];
    const without = (p: string) => all.filter((x) => x !== p).join(', ');
    users = {
      ok: await fx.createUser('ok', PASSWORD, [`GRANT ${all.join(', ')} ON \`${SRC}\`.* TO {user}`]),
      noselect: await fx.createUser('nosel', PASSWORD, [`GRANT ${without('SELECT')} ON \`${SRC}\`.* TO {user}`]),
      noshowview: await fx.createUser('noview', PASSWORD, [`GRANT ${without('SHOW VIEW')} ON \`${SRC}\`.* TO {user}`]),
      nolock: await fx.createUser('nolock', PASSWORD, [`GRANT ${without('LOCK TABLES')} ON \`${SRC}\`.* TO {user}`]),
    };
  });

  afterAll(async () => {
    await new Promise((r) => silent.close(r));
  });

  /** The backup's manifest rejects with exactly `message`, and the save-time check answers it too. */
  async function expectProblem(url: string, message: string, opts: { connectTimeoutMs?: number } = {}): Promise<void> {
    const driver = createMysqlDriver(opts);
    const snap = driver.backup({ url }, { ...ctx, sink: new MemoryRepo(), previous: null });
    const err = await collectAll(snap.manifest).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ComponentError);
    expect((err as Error).message).toBe(message);
    expect(await checkMysqlConnection(url, opts)).toBe(message);
  }

  it('a user with the rights a backup needs passes, and its backup restores', async () => {
    expect(await checkMysqlConnection(mysqlUrl(SRC, users.ok, PASSWORD))).toBeNull();
    const { manifest } = await backup(mysqlUrl(SRC, users.ok, PASSWORD));
    expect((await dumpText(manifest)).toString()).toContain('CREATE TABLE `kinds`');
  });

  it('wrong password', async () => {
    await expectProblem(mysqlUrl(SRC, users.ok, 'wrong password'), 'authentication failed');
  });

  it('missing database', async () => {
    await expectProblem(mysqlUrl(`${SRC}_nope`), `database ${SRC}_nope does not exist`);
  });

  it('nothing listening on the port', async () => {
    await expectProblem(mysqlUrl(SRC, 'root', undefined, '127.0.0.1', closedPort), 'server unreachable (connection refused)');
  });

  it('a server that never answers within the connect timeout', async () => {
    await expectProblem(mysqlUrl(SRC, 'root', undefined, '127.0.0.1', silentPort), 'server unreachable (timed out)', { connectTimeoutMs: 500 });
  });

  it('a user lacking SELECT, SHOW VIEW or LOCK TABLES', async () => {
    await expectProblem(mysqlUrl(SRC, users.noselect as string, PASSWORD), `missing privilege SELECT on database ${SRC}`);
    await expectProblem(mysqlUrl(SRC, users.noshowview as string, PASSWORD), `missing privilege SHOW VIEW on database ${SRC}`);
    await expectProblem(mysqlUrl(SRC, users.nolock as string, PASSWORD), `missing privilege LOCK TABLES on database ${SRC}`);
  });

  it('a restore by a user who may only back up names what it lacks', async () => {
    expect(await checkMysqlConnection(mysqlUrl(SRC, users.ok, PASSWORD), { restore: true })).toMatch(new RegExp(`^missing privileges INSERT, CREATE, DROP, ALTER, INDEX, CREATE VIEW, CREATE ROUTINE, ALTER ROUTINE on database ${SRC}$`));
  });

  it('the target policy refuses servers the operator did not allow, and the service own servers', async () => {
    const refused = async (url: string) => {
      const snap = mysqlDriver.backup({ url }, { ...ctx, targets, sink: new MemoryRepo(), previous: null });
      return collectAll(snap.manifest).catch((e: unknown) => e as Error);
    };
    expect(((await refused('mysql://root@10.1.2.3:3306/x')) as Error).message).toMatch(/^mysql target refused: /);
    expect(((await refused('mysql://root@127.0.0.1:5432/x')) as Error).message).toBe("mysql target refused: that is the backup service's own database server");
    expect(((await refused('mysql://root@127.0.0.1:6379/x')) as Error).message).toBe("mysql target refused: that is the backup service's own Redis server");
    expect(await checkMysqlConnection('mysql://root@127.0.0.1:6379/x', { targets })).toBe("mysql target refused: that is the backup service's own Redis server");
    expect(await checkMysqlConnection(mysqlUrl(SRC), { targets })).toBeNull();
  });

  it('no message holds the password', async () => {
    const url = mysqlUrl(`${SRC}_nope`, users.ok, PASSWORD);
    const problem = await checkMysqlConnection(url);
    expect(problem).not.toContain(PASSWORD);
    const snap = mysqlDriver.backup({ url: url.replace('_nope', '') + '?bogus=1' }, { ...ctx, sink: new MemoryRepo(), previous: null });
    const err = (await collectAll(snap.manifest).catch((e: unknown) => e)) as Error;
    expect(err.message).toBe('invalid mysql URL: unsupported parameter bogus');
  });

  it('the dump gets the password through MYSQL_PWD only: not in its argv, and nothing else of our environment', async () => {
    // A dump of a few MB, and a sink that reads nothing until the running tool was looked at:
    // the tool stays alive (its output does not fit the pipe and stdbuf's buffer) while we look.
    const big = await fx.createDatabase('pwd');
    const admin = await fx.connection();
    await admin.query(`CREATE TABLE \`${big}\`.t (x LONGTEXT)`);
    await admin.query(`INSERT INTO \`${big}\`.t VALUES (REPEAT('x', 1500000)), (REPEAT('y', 1500000)), (REPEAT('z', 1500000))`);
    const user = await fx.createUser('pwd', PASSWORD, [`GRANT SELECT, SHOW VIEW, LOCK TABLES, TRIGGER, EVENT ON \`${big}\`.* TO {user}`]);
    const url = mysqlUrl(big, user, PASSWORD);
    let seen: { argv: string; env: string[] } | undefined;
    const look = async () => {
      const { readdir, readFile } = await import('node:fs/promises');
      for (const pid of await readdir('/proc')) {
        if (!/^\d+$/.test(pid)) continue;
        const argv = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
        if (!argv.includes(user) || !argv.startsWith('mariadb-dump')) continue;
        const env = (await readFile(`/proc/${pid}/environ`, 'utf8').catch(() => '')).split('\0').filter(Boolean);
        seen = { argv, env };
      }
    };
    const sink: ChunkSink = {
      writeStream: async (source) => {
        // The tool starts when its output is first read; past the first piece, it is held up.
        let first = true;
        const inner = async function* () {
          for await (const b of source) {
            for (let i = 0; first && i < 100 && !seen; i++) {
              await look();
              if (!seen) await new Promise((r) => setTimeout(r, 10));
            }
            first = false;
            yield b;
          }
        };
        return repo.writeStream(inner());
      },
      reuse: (f) => repo.reuse(f),
    };
    process.env.BK_MYSQL_TEST_SECRET = 'must not leak';
    try {
      await backup(url, {}, sink);
    } finally {
      delete process.env.BK_MYSQL_TEST_SECRET;
    }
    expect(seen).toBeDefined();
    expect(seen?.argv).not.toContain(PASSWORD);
    expect(seen?.env).toContain(`MYSQL_PWD=${PASSWORD}`);
    const names = (seen?.env ?? []).map((e) => e.slice(0, e.indexOf('=')));
    for (const name of names) expect(['LC_ALL', 'PATH', 'HOME', 'TMPDIR', 'TZ', 'MYSQL_PWD', 'LD_PRELOAD', '_STDBUF_O']).toContain(name);
  });

  it('aborting mid-backup kills the dump and errors the manifest', async () => {
    const ac = new AbortController();
    // A slow sink: the dump cannot finish before the abort.
    const slowSink: ChunkSink = {
      ...repo,
      writeStream: async (source) => {
        const inner = async function* () {
          for await (const b of source) {
            await new Promise((r) => setTimeout(r, 50));
            yield b;
          }
        };
        return repo.writeStream(inner());
      },
      reuse: (f) => repo.reuse(f),
    };
    const snap = mysqlDriver.backup({ url: mysqlUrl(SRC) }, { ...ctx, sink: slowSink, previous: null, signal: ac.signal, onProgress: () => ac.abort() });
    await expect(collectAll(snap.manifest)).rejects.toThrow(/abort/i);
    // The tool is gone (SIGTERM on abort).
    const { readdir, readFile } = await import('node:fs/promises');
    const dumps = async () => {
      let n = 0;
      for (const pid of await readdir('/proc')) {
        if (!/^\d+$/.test(pid)) continue;
        const argv = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
        if (argv.startsWith('mariadb-dump') && argv.includes(SRC)) n++;
      }
      return n;
    };
    for (let i = 0; i < 50 && (await dumps()) > 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await dumps()).toBe(0);
  });
});

describe('on a private server (TLS, a crash mid-restore)', () => {
  let server: ScratchMariadb;
  const url = (db: string, query = '', host = '127.0.0.1') => `mysql://root@${host}:${server.port}/${db}${query}`;

  beforeAll(async () => {
    server = await startScratchMariadb({ ssl: true });
    const c = await mysqlAdmin(undefined, server.port);
    await c.query('CREATE DATABASE src CHARACTER SET utf8mb4; CREATE DATABASE target CHARACTER SET utf8mb4');
    await c.query('USE src');
    await c.query(SCHEMA);
    await c.query('USE target');
    await c.query(SCHEMA);
    await c.query("UPDATE target.kinds SET vc = 'the target before' WHERE id < 50");
    await c.end();
  }, 120_000);

  afterAll(async () => {
    await server?.stop();
  });

  it('ssl=require: checked, backed up and restored over TLS; ssl=verify refuses a self-signed certificate', async () => {
    expect(await checkMysqlConnection(url('src', '?ssl=require'))).toBeNull();
    const own = new MemoryRepo({ chunkSize: 8 * 1024 });
    const { manifest } = await backup(url('src', '?ssl=require'), {}, own);
    const c = await mysqlAdmin(undefined, server.port);
    await c.query('CREATE DATABASE copy CHARACTER SET utf8mb4');
    await c.end();
    await restore(url('copy', '?ssl=require'), manifest, own);
    expectSameState(await state('copy', server.port), await state('src', server.port));
    await expectProblemOn(url('src', '?ssl=verify', 'localhost'), 'TLS certificate verification failed');
  });

  async function expectProblemOn(u: string, message: string): Promise<void> {
    const snap = mysqlDriver.backup({ url: u }, { ...ctx, sink: new MemoryRepo(), previous: null });
    await expect(collectAll(snap.manifest)).rejects.toThrow(message);
    expect(await checkMysqlConnection(u)).toBe(message);
  }

  it('a server killed mid-restore comes back with the target as it was; the next restore sweeps the leftovers and succeeds', async () => {
    const before = await state('target', server.port);
    const slow = new MemoryRepo({ chunkSize: 8 * 1024 });
    const { manifest } = await backup(url('src'), {}, slow);
    slow.readDelayMs = 40;
    const restoring = restore(url('target'), manifest, slow).catch((e: unknown) => e);
    // Kill it once the load into the scratch database is under way.
    const c = await mysqlAdmin(undefined, server.port);
    for (let i = 0; i < 200; i++) {
      const [rows] = await c.query<mysql.RowDataPacket[]>("SELECT COUNT(*) AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA LIKE 'target\\_\\_bk\\_r\\_%'");
      if (Number(rows[0]?.n) > 0) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    await c.end().catch(() => {});
    await server.kill();
    const err = await restoring;
    expect(err).toBeInstanceOf(ComponentError);
    await server.start();
    // A crash itself resets InnoDB's AUTO_INCREMENT counters to MAX(id) + 1 (the server's doing, not the restore's).
    const counters = (st: Record<string, unknown>) => JSON.parse(JSON.stringify(st).replace(/ AUTO_INCREMENT=\d+/g, '')) as Record<string, unknown>;
    expectSameState(counters(await state('target', server.port)), counters(before));
    const leftovers = async () => {
      const a = await mysqlAdmin(undefined, server.port);
      const [rows] = await a.query<mysql.RowDataPacket[]>("SELECT SCHEMA_NAME AS n FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'target\\_\\_bk\\_%'");
      await a.end();
      return rows.map((r) => String(r.n));
    };
    expect((await leftovers()).length).toBeGreaterThan(0); // the crash left its scratch databases
    slow.readDelayMs = 0;
    await restore(url('target'), manifest, slow);
    expect(await leftovers()).toEqual([]);
    expectSameState(counters(await state('target', server.port)), counters(await state('src', server.port)));
  }, 60_000);
});
