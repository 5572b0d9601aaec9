/**
 * MySQL phase of the backup benchmark: our `mysql` backup (mariadb-dump streamed into the
 * repository, src/components/mysql.ts) against `mariadb-dump --single-transaction <db>` to
 * /dev/null (the same tool reading the same snapshot, its output written nowhere), on a scratch
 * database of ~sizeMB of mixed rows on the tenants' MariaDB (BENCH_MYSQL_SERVER, default
 * mysql://root@127.0.0.1:3306). Medians of 3 rounds each, interleaved (mariadb-dump first in odd
 * rounds). Target: ours >= 0.9 of mariadb-dump's throughput (ratio = mariadb-dump's time / ours).
 *
 * bench/backup.ts calls `mysqlBenchPhase` with `runOurs` backing the component up through the
 * service's own path. Run alone (`tsx bench/mysql.ts`, BENCH_MYSQL_MB, default 512) it backs up
 * into a sink that only counts, which measures the driver and not the repository.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { openSync, closeSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import mysql from 'mysql2/promise';
import { mysqlDriver } from '../src/components/mysql.js';
import { countingBackup, interleavedRounds, median, timeIt, verdict } from './support.js';

export interface MysqlBenchComponent {
  name: string;
  type: 'mysql';
  config: { url: string };
}

export interface MysqlBenchOptions {
  sizeMB: number;
  log(line: string): void;
  note(line: string): void;
  /** One backup of the component by the service's code path: its wall time and logical bytes. */
  runOurs(component: MysqlBenchComponent): Promise<{ ms: number; logical: number }>;
  rounds?: number;
}

const TARGET = 0.9;
const SERVER = new URL(process.env.BENCH_MYSQL_SERVER ?? 'mysql://root@127.0.0.1:3306');

function connect(database?: string): Promise<mysql.Connection> {
  return mysql.createConnection({
    host: SERVER.hostname,
    port: Number(SERVER.port || 3306),
    user: decodeURIComponent(SERVER.username || 'root'),
    password: decodeURIComponent(SERVER.password),
    charset: 'utf8mb4',
    ...(database ? { database } : {}),
  });
}

/**
 * ~sizeMB of rows of ~1 KB (integers, decimals, doubles, dates, short and long utf8mb4 text,
 * random binary, JSON), made by doubling a seed table with INSERT ... SELECT (fast: no row
 * crosses the client), each copy's values shifted so rows stay distinct.
 */
async function fill(db: string, sizeMB: number): Promise<number> {
  const c = await connect(db);
  try {
    await c.query(`CREATE TABLE rows_ (
      id BIGINT AUTO_INCREMENT PRIMARY KEY, n INT NOT NULL, d DECIMAL(14,2), f DOUBLE, dt DATETIME(6), s VARCHAR(100),
      t TEXT, b BLOB, j JSON, KEY (n)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`);
    await c.query(`CREATE TABLE small (id INT PRIMARY KEY, label VARCHAR(40)) ENGINE=InnoDB`);
    await c.query(`INSERT INTO small SELECT seq, CONCAT('label ', seq) FROM seq_1_to_1000`);
    await c.query(`INSERT INTO rows_ (n, d, f, dt, s, t, b, j)
      SELECT seq, seq * 1.25, seq / 7, '2024-01-01' + INTERVAL seq SECOND, CONCAT('name ', seq, ' ünï'),
        REPEAT(MD5(seq), 18), RANDOM_BYTES(200), JSON_OBJECT('k', seq, 'v', MD5(seq))
      FROM seq_1_to_1024`);
    const targetRows = Math.max(1024, Math.ceil((sizeMB * 1e6) / 1050));
    let rows = 1024;
    while (rows < targetRows) {
      const take = Math.min(rows, targetRows - rows);
      await c.query(
        `INSERT INTO rows_ (n, d, f, dt, s, t, b, j)
         SELECT n + ?, d + 1, f * 1.0001, dt + INTERVAL 1 DAY, CONCAT(LEFT(s, 80), '+'), CONCAT(LEFT(t, 560), LPAD(HEX(id), 16, '0')), b, JSON_SET(j, '$.r', ?)
         FROM rows_ ORDER BY id LIMIT ?`,
        [rows, rows, take],
      );
      rows += take;
    }
    return rows;
  } finally {
    await c.end();
  }
}

function mariadbDump(db: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const out = openSync('/dev/null', 'w');
    const password = decodeURIComponent(SERVER.password);
    const child = spawn(
      'mariadb-dump',
      ['--no-defaults', '--protocol=TCP', `--host=${SERVER.hostname}`, `--port=${SERVER.port || 3306}`, `--user=${decodeURIComponent(SERVER.username || 'root')}`, '--single-transaction', db],
      { stdio: ['ignore', out, 'pipe'], env: { PATH: process.env.PATH, ...(password ? { MYSQL_PWD: password } : {}) } },
    );
    closeSync(out);
    let err = '';
    child.stderr?.on('data', (b: Buffer) => (err += b.toString()));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`mariadb-dump exited ${code}: ${err.slice(-500)}`))));
  });
}

export async function mysqlBenchPhase(opts: MysqlBenchOptions): Promise<{ ok: boolean; ratio: number }> {
  const rounds = opts.rounds ?? 3;
  const db = `bk_bench_${randomBytes(4).toString('hex')}`;
  const admin = await connect();
  try {
    await admin.query(`CREATE DATABASE \`${db}\``);
    let rows = 0;
    const t = await timeIt(async () => (rows = await fill(db, opts.sizeMB)));
    await admin.query(`ANALYZE TABLE \`${db}\`.rows_`);
    const [[size]] = await admin.query<mysql.RowDataPacket[]>('SELECT SUM(DATA_LENGTH + INDEX_LENGTH) AS bytes FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?', [db]);
    opts.log(`mysql: filled ${db} with ${rows} rows (~${opts.sizeMB} MB asked, ${(Number(size?.bytes ?? 0) / 1e6).toFixed(0)} MB on disk) in ${(t / 1000).toFixed(1)} s`);
    const url = `mysql://${SERVER.username || 'root'}${SERVER.password ? `:${SERVER.password}` : ''}@${SERVER.hostname}:${SERVER.port || 3306}/${db}`;
    const component: MysqlBenchComponent = { name: 'bench-mysql', type: 'mysql', config: { url } };
    const r = await interleavedRounds(rounds, () => mariadbDump(db), () => opts.runOurs(component));
    const { theirs, ours, ratio, logical } = r;
    const [mt, mo] = [median(theirs), median(ours)];
    const ok = ratio >= TARGET;
    const mbps = (ms: number) => (logical / 1e6 / (ms / 1000)).toFixed(1);
    opts.log(`mysql: mariadb-dump --single-transaction > /dev/null ${theirs.map((x) => (x / 1000).toFixed(2)).join(', ')} s; ours ${ours.map((x) => (x / 1000).toFixed(2)).join(', ')} s`);
    opts.note(`${verdict(ok)} mysql backup of a ${(logical / 1e6).toFixed(0)} MB dump: ours ${mbps(mo)} MB/s vs mariadb-dump > /dev/null ${mbps(mt)} MB/s, ratio ${ratio.toFixed(2)} (target >= ${TARGET})`);
    return { ok, ratio };
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS \`${db}\``);
    await admin.end();
  }
}

// Alone: the driver into a sink that only counts.
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const sizeMB = Number(process.env.BENCH_MYSQL_MB ?? 512);
  await mysqlBenchPhase({
    sizeMB,
    log: (l) => console.log(l),
    note: (l) => console.log(l),
    runOurs: (component) => countingBackup(mysqlDriver, component.config),
  });
}
