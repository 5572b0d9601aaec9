import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chown, mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import mysql from 'mysql2/promise';

/**
 * The tenants' test MariaDB (127.0.0.1:3306, root without a password), shared with other test
 * files: each fixture creates uniquely named databases and users, and drops them (and any
 * scratch database a restore left beside them) in `cleanup()`.
 */
export const MYSQL_HOST = '127.0.0.1';
export const MYSQL_PORT = 3306;

export function mysqlUrl(database: string, user = 'root', password?: string, host = MYSQL_HOST, port = MYSQL_PORT): string {
  const auth = password === undefined ? encodeURIComponent(user) : `${encodeURIComponent(user)}:${encodeURIComponent(password)}`;
  return `mysql://${auth}@${host}:${port}/${encodeURIComponent(database)}`;
}

export async function mysqlAdmin(database?: string, port = MYSQL_PORT): Promise<mysql.Connection> {
  return mysql.createConnection({
    host: MYSQL_HOST,
    port,
    user: 'root',
    charset: 'utf8mb4',
    dateStrings: true,
    supportBigNumbers: true,
    bigNumberStrings: true,
    multipleStatements: true,
    ...(database ? { database } : {}),
  });
}

const ident = (name: string) => '`' + name.replace(/`/g, '``') + '`';

export class MysqlFixture {
  readonly suffix = randomBytes(4).toString('hex');
  private readonly databases = new Set<string>();
  private readonly users = new Set<string>();
  private admin: mysql.Connection | undefined;

  constructor(private readonly prefix: string) {}

  /** A name unique to this fixture: `<prefix>_<what>_<suffix>`. */
  name(what: string): string {
    return `${this.prefix}_${what}_${this.suffix}`;
  }

  async connection(): Promise<mysql.Connection> {
    this.admin ??= await mysqlAdmin();
    return this.admin;
  }

  async createDatabase(what: string): Promise<string> {
    const name = this.name(what);
    this.databases.add(name);
    const admin = await this.connection();
    await admin.query(`DROP DATABASE IF EXISTS ${ident(name)}`);
    await admin.query(`CREATE DATABASE ${ident(name)} CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci`);
    return name;
  }

  /** A user `<prefix>_<what>_<suffix>`@'%' with these GRANT statements' privileges (`{user}` stands for the account). */
  async createUser(what: string, password: string, grants: string[]): Promise<string> {
    const name = this.name(what).slice(0, 80);
    this.users.add(name);
    const admin = await this.connection();
    await admin.query(`DROP USER IF EXISTS ?@'%'`, [name]);
    await admin.query(`CREATE USER ?@'%' IDENTIFIED BY ?`, [name, password]);
    for (const g of grants) await admin.query(g.replace('{user}', `'${name}'@'%'`));
    return name;
  }

  /** Databases on the server whose name starts with `prefix` (scratch databases of restores, say). */
  async databasesLike(prefix: string): Promise<string[]> {
    const admin = await this.connection();
    const [rows] = await admin.query<mysql.RowDataPacket[]>('SELECT SCHEMA_NAME AS name FROM information_schema.SCHEMATA WHERE LEFT(SCHEMA_NAME, ?) = ?', [prefix.length, prefix]);
    return rows.map((r) => String(r.name));
  }

  async cleanup(): Promise<void> {
    const admin = await this.connection();
    for (const db of this.databases) {
      for (const leftover of await this.databasesLike(`${db}__bk_`)) await admin.query(`DROP DATABASE IF EXISTS ${ident(leftover)}`);
      await admin.query(`DROP DATABASE IF EXISTS ${ident(db)}`);
    }
    for (const user of this.users) await admin.query(`DROP USER IF EXISTS ?@'%'`, [user]);
    await admin.end();
    this.admin = undefined;
  }
}

/** A private mariadbd (random port, temp datadir) a test may kill, restart or give TLS. */
export interface ScratchMariadb {
  port: number;
  /** Self-signed certificate (CN=localhost) when started with `ssl`. */
  ssl: boolean;
  /** SIGKILL: the server dies as in a crash; `start()` brings it back on the same data. */
  kill(): Promise<void>;
  start(): Promise<void>;
  /** Stops it and removes its files. */
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise((r) => probe.close(r));
  return port;
}

export async function startScratchMariadb(opts: { ssl?: boolean } = {}): Promise<ScratchMariadb> {
  const dir = await mkdtemp(path.join(tmpdir(), 'bk-mariadb-'));
  const asRoot = process.getuid?.() === 0;
  const userArgs = asRoot ? ['--user=mysql'] : [];
  if (asRoot) {
    const passwd = await readFile('/etc/passwd', 'utf8');
    const entry = passwd.split('\n').find((l) => l.startsWith('mysql:'))?.split(':');
    await chown(dir, Number(entry?.[2]), Number(entry?.[3]));
  }
  execFileSync('mariadb-install-db', ['--no-defaults', ...userArgs, `--datadir=${dir}/data`, '--auth-root-authentication-method=normal', '--skip-test-db'], { stdio: 'ignore' });
  const sslArgs: string[] = [];
  if (opts.ssl) {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${dir}/key.pem`, '-out', `${dir}/cert.pem`, '-days', '1', '-subj', '/CN=localhost'], { stdio: 'ignore' });
    if (asRoot) execFileSync('chown', ['mysql', `${dir}/key.pem`, `${dir}/cert.pem`]);
    sslArgs.push(`--ssl-cert=${dir}/cert.pem`, `--ssl-key=${dir}/key.pem`);
  }
  const port = await freePort();
  let child: ChildProcess | undefined;
  const start = async () => {
    child = spawn(
      'mariadbd',
      ['--no-defaults', ...userArgs, `--datadir=${dir}/data`, `--socket=${dir}/sock`, `--port=${port}`, '--bind-address=127.0.0.1', `--pid-file=${dir}/pid`, '--skip-log-bin', '--innodb-buffer-pool-size=32M', ...sslArgs],
      { stdio: 'ignore' },
    );
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        const c = await mysqlAdmin(undefined, port);
        await c.end();
        return;
      } catch (err) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`scratch mariadbd did not start: ${String(err)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  };
  const stopWith = async (signal: NodeJS.Signals) => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill(signal);
    await exited;
  };
  await start();
  return {
    port,
    ssl: opts.ssl === true,
    kill: () => stopWith('SIGKILL'),
    start,
    async stop() {
      await stopWith('SIGTERM');
      await rm(dir, { recursive: true, force: true });
    },
  };
}
