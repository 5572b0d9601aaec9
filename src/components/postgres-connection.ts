import { parseConnectionUrl, passwordRedactor, urlProblem } from './connection-url.js';

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

/**
 * Parses a postgresql:// URL into libpq environment variables. Errors never quote the URL, which
 * may hold a password.
 */
export function parsePostgresUrl(url: string): PostgresConnection {
  const { parsed, host, database, invalid, decode } = parseConnectionUrl(url, { kind: 'postgres', schemes: ['postgresql:', 'postgres:'], schemeProblem: 'scheme must be postgresql://' });

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

  const redactPassword = passwordRedactor(env.PGPASSWORD ?? '', parsed.password, /postgres(?:ql)?/);
  return {
    database,
    env,
    redact: (text: string) => redactPassword(text).replace(/(password\s*=\s*)\S+/gi, '$1***'),
  };
}

/** The problem with a postgres URL, or null; for API validation. */
export function checkPostgresUrl(url: string): string | null {
  return urlProblem(() => parsePostgresUrl(url), 'postgres');
}

/** `--dbname` value naming just the database, quoted so that a name containing '=' is not read as a connection string. */
export function dbnameArgument(database: string): string {
  return `--dbname=dbname='${database.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}
