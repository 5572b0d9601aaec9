import { ComponentError } from './types.js';

export interface PostgresConnection {
  database: string;
  /** libpq variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE, ...): secrets travel by environment, never argv. */
  env: Record<string, string>;
  /** Removes the password, in any spelling, from text meant for users. */
  redact(text: string): string;
}

/** Query parameters we accept, and the libpq variable each becomes. */
const QUERY_TO_ENV: Record<string, string> = {
  user: 'PGUSER',
  password: 'PGPASSWORD',
  port: 'PGPORT',
  sslmode: 'PGSSLMODE',
  connect_timeout: 'PGCONNECT_TIMEOUT',
  application_name: 'PGAPPNAME',
  options: 'PGOPTIONS',
  target_session_attrs: 'PGTARGETSESSIONATTRS',
  channel_binding: 'PGCHANNELBINDING',
  gssencmode: 'PGGSSENCMODE',
};
/** These would let a tenant point libpq at sockets or files on the backup server itself. */
const REFUSED_PARAMS = new Set(['host', 'hostaddr', 'sslrootcert', 'sslcert', 'sslkey', 'sslcrl', 'sslcrldir', 'passfile', 'service']);
const SSL_MODES = new Set(['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full']);

function invalid(reason: string): ComponentError {
  return new ComponentError(`invalid postgres URL: ${reason}`);
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

/**
 * Parses a postgresql:// URL into libpq environment variables. Errors never quote the URL, which
 * may hold a password.
 */
export function parsePostgresUrl(url: string): PostgresConnection {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw invalid('not a URL');
  }
  if (parsed.protocol !== 'postgresql:' && parsed.protocol !== 'postgres:') throw invalid('scheme must be postgresql://');
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
  if (host === '') throw invalid('a host is required');
  if (/[,/\s]/.test(host)) throw invalid('only a single host name is supported');
  const database = decode(parsed.pathname.replace(/^\//, ''), 'the database name');
  if (database === '' || database.includes('/')) throw invalid('the path must name one database');

  const env: Record<string, string> = { PGHOST: host, PGDATABASE: database };
  if (parsed.port) env.PGPORT = parsed.port;
  if (parsed.username) env.PGUSER = decode(parsed.username, 'the user name');
  if (parsed.password) env.PGPASSWORD = decode(parsed.password, 'the password');
  for (const [name, value] of parsed.searchParams) {
    if (REFUSED_PARAMS.has(name)) throw invalid(`parameter ${name} is not allowed`);
    const variable = QUERY_TO_ENV[name];
    if (!variable) throw invalid(`unsupported parameter ${name}`);
    env[variable] = value;
  }
  if (env.PGSSLMODE !== undefined && !SSL_MODES.has(env.PGSSLMODE)) throw invalid('unknown sslmode');
  if (env.PGPORT !== undefined && !/^\d{1,5}$/.test(env.PGPORT)) throw invalid('port must be a number');
  env.PGCONNECT_TIMEOUT ??= '30';
  env.PGAPPNAME ??= 'backup-service';
  // No ~/.pgpass of the service user may ever answer for a tenant's URL; this path can never exist.
  env.PGPASSFILE = '/dev/null/pgpass';

  const secrets = new Set<string>();
  if (env.PGPASSWORD) {
    secrets.add(env.PGPASSWORD);
    secrets.add(encodeURIComponent(env.PGPASSWORD));
    if (parsed.password) secrets.add(parsed.password);
  }
  const patterns = [...secrets].filter((s) => s.length > 0).sort((a, b) => b.length - a.length).map(escapeRegExp);
  const secretPattern = patterns.length > 0 ? new RegExp(patterns.join('|'), 'g') : undefined;
  return {
    database,
    env,
    redact(text: string): string {
      const withoutSecrets = secretPattern ? text.replace(secretPattern, '***') : text;
      return withoutSecrets.replace(/(postgres(?:ql)?:\/\/)[^@\s/]*@/gi, '$1***@').replace(/(password\s*=\s*)\S+/gi, '$1***');
    },
  };
}

/** The problem with a postgres URL, or null; for API validation. */
export function checkPostgresUrl(url: string): string | null {
  try {
    parsePostgresUrl(url);
    return null;
  } catch (err) {
    return err instanceof Error ? err.message : 'invalid postgres URL';
  }
}

/** `--dbname` value naming just the database, quoted so that a name containing '=' is not read as a connection string. */
export function dbnameArgument(database: string): string {
  return `--dbname=dbname='${database.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}
