import { ComponentError } from './types.js';

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

function invalid(reason: string): ComponentError {
  return new ComponentError(`invalid mysql URL: ${reason}`);
}

function decode(part: string, what: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw invalid(`${what} is not valid percent-encoding`);
  }
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export function parseMysqlUrl(url: string): MysqlConnection {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw invalid('not a URL');
  }
  if (parsed.protocol !== 'mysql:' && parsed.protocol !== 'mariadb:') throw invalid('scheme must be mysql:// or mariadb://');
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
  if (host === '') throw invalid('a host is required');
  if (/[,/\s]/.test(host)) throw invalid('only a single host name is supported');
  if (parsed.port !== '' && !/^\d{1,5}$/.test(parsed.port)) throw invalid('port must be a number');
  const port = parsed.port === '' ? 3306 : Number(parsed.port);
  if (port < 1 || port > 65535) throw invalid('port must be between 1 and 65535');
  const database = decode(parsed.pathname.replace(/^\//, ''), 'the database name');
  if (database === '' || database.includes('/')) throw invalid('the path must name one database');
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

  const secrets = new Set<string>();
  if (password) {
    secrets.add(password);
    secrets.add(encodeURIComponent(password));
    if (parsed.password) secrets.add(parsed.password);
  }
  const patterns = [...secrets].filter((s) => s.length > 0).sort((a, b) => b.length - a.length).map(escapeRegExp);
  const secretPattern = patterns.length > 0 ? new RegExp(patterns.join('|'), 'g') : undefined;
  return {
    host,
    port,
    user,
    password,
    database,
    ssl,
    redact(text: string): string {
      const withoutSecrets = secretPattern ? text.replace(secretPattern, '***') : text;
      return withoutSecrets.replace(/((?:mysql|mariadb):\/\/)[^@\s/]*@/gi, '$1***@');
    },
  };
}

/** The problem with a mysql URL's shape, or null; for API validation (nothing is resolved or connected). */
export function checkMysqlUrl(url: string): string | null {
  try {
    parseMysqlUrl(url);
    return null;
  } catch (err) {
    return err instanceof Error ? err.message : 'invalid mysql URL';
  }
}

/** Backtick-quotes an identifier (database, table, routine name) for SQL. */
export function quoteIdent(name: string): string {
  return '`' + name.replace(/`/g, '``') + '`';
}
