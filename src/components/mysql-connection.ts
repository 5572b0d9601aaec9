import { parseConnectionUrl, passwordRedactor, urlProblem } from './connection-url.js';

/**
 * A tenant's MySQL / MariaDB server as its component URL names it:
 * `mysql://user:pass@host:port/db` (or `mariadb://`), optional `?ssl=require|verify`.
 * The password lives only here and in the children's MYSQL_PWD; errors never quote the URL.
 */
export interface MysqlConnection {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** `require`: TLS, certificate not checked; `verify`: TLS with the certificate checked against `host`. */
  ssl: 'off' | 'require' | 'verify';
  /** Removes the password, in any spelling, from text meant for users or logs. */
  redact(text: string): string;
}

const SSL_VALUES: Record<string, MysqlConnection['ssl']> = {
  false: 'off',
  disable: 'off',
  true: 'require',
  require: 'require',
  required: 'require',
  verify: 'verify',
  'verify-identity': 'verify',
  verify_identity: 'verify',
};

/** Longest database name whose scratch names (`<db>__bk_r_<8 hex>`, 15 more) stay within MySQL's 64. */
export const MAX_DATABASE_NAME = 64 - 15;

export function parseMysqlUrl(url: string): MysqlConnection {
  const { parsed, host, database, invalid, decode } = parseConnectionUrl(url, { kind: 'mysql', schemes: ['mysql:', 'mariadb:'], schemeProblem: 'scheme must be mysql:// or mariadb://' });
  if (parsed.port !== '' && !/^\d{1,5}$/.test(parsed.port)) throw invalid('port must be a number');
  const port = parsed.port === '' ? 3306 : Number(parsed.port);
  if (port < 1 || port > 65535) throw invalid('port must be between 1 and 65535');
  if (database.length > MAX_DATABASE_NAME) throw invalid(`the database name may have at most ${MAX_DATABASE_NAME} characters`);
  if (/[\0]|\s$/.test(database)) throw invalid('the database name has characters MySQL does not allow');
  const user = parsed.username ? decode(parsed.username, 'the user name') : '';
  if (user === '') throw invalid('a user name is required');
  const password = parsed.password ? decode(parsed.password, 'the password') : '';
  let ssl: MysqlConnection['ssl'] = 'off';
  for (const [name, value] of parsed.searchParams) {
    if (name !== 'ssl' && name !== 'ssl-mode' && name !== 'sslmode') throw invalid(`unsupported parameter ${name}`);
    const mode = SSL_VALUES[value.toLowerCase()];
    if (!mode) throw invalid('ssl must be one of false, require, verify');
    ssl = mode;
  }

  const redact = passwordRedactor(password, parsed.password, /(?:mysql|mariadb)/);
  return {
    host,
    port,
    user,
    password,
    database,
    ssl,
    redact,
  };
}

/** The problem with a mysql URL's shape, or null; for API validation (nothing is resolved or connected). */
export function checkMysqlUrl(url: string): string | null {
  return urlProblem(() => parseMysqlUrl(url), 'mysql');
}

/** Backtick-quotes an identifier (database, table, routine name) for SQL. */
export function quoteIdent(name: string): string {
  return '`' + name.replace(/`/g, '``') + '`';
}
