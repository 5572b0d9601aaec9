import { randomBytes } from 'node:crypto';
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

export async function mysqlAdmin(database?: string): Promise<mysql.Connection> {
  return mysql.createConnection({
    host: MYSQL_HOST,
    port: MYSQL_PORT,
    user: 'root',
    charset: 'utf8mb4',
    dateStrings: true,
    supportBigNumbers: true,
    bigNumberStrings: true,
    multipleStatements: true,
    ...(database ? { database } : {}),
  });
}

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
    await admin.query(`DROP DATABASE IF EXISTS \`${name}\``);
    await admin.query(`CREATE DATABASE \`${name}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci`);
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
      for (const leftover of await this.databasesLike(`${db}__bk_`)) await admin.query(`DROP DATABASE IF EXISTS \`${leftover}\``);
      await admin.query(`DROP DATABASE IF EXISTS \`${db}\``);
    }
    for (const user of this.users) await admin.query(`DROP USER IF EXISTS ?@'%'`, [user]);
    await admin.end();
    this.admin = undefined;
  }
}
