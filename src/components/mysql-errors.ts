import { isIP } from 'node:net';

/**
 * What a tenant learns when a connection, a query or a tool (mariadb-dump, mariadb) fails: a
 * category, never the raw text, which names the address the server saw us connect from
 * (`'user'@'10.0.0.7'`) and the address we tried (`Can't connect to server on '10.0.0.9'`).
 * The raw text goes to ComponentError.detail and the debug log only.
 */

export const AUTHENTICATION_FAILED = 'authentication failed';
export const databaseMissing = (database: string) => `database ${database} does not exist`;

/** Whatever could name a machine or a port of the service's network. */
export function scrubNetwork(text: string): string {
  return text
    .replace(/'([^'@\s]*)'@'[^']*'/g, "'$1'")
    .replace(/`([^`@\s]*)`@`[^`]*`/g, '`$1`')
    .replace(/\b\d{1,3}(\.\d{1,3}){3}(\/\d+)?\b/g, '<address>')
    .replace(/(?<![\w.:])\[?[0-9a-f:.]*:[0-9a-f:.]*:[0-9a-f:.]*(%\w+)?\]?(?![\w:])/gi, (m) => (isIP(m.replace(/^\[|\]$/g, '').replace(/%\w+$/, '')) === 6 ? '<address>' : m))
    .replace(/\bon '[^']*'(:\d+)?/gi, 'on <host>')
    .replace(/\bport\s+\d+/gi, 'port <port>');
}

/** The privileges a server's "denied" message names, upper case, or null when it names none. */
export function deniedPrivileges(message: string): string[] | null {
  const command = /\b([A-Z]+(?: [A-Z]+)*) command denied to user/i.exec(message);
  if (command?.[1]) return [command[1].toUpperCase()];
  const need = /you need (?:at least one of )?the ([A-Z, ]+?) privilege/i.exec(message);
  if (need?.[1]) return need[1].split(/\s*,\s*/).map((p) => p.toUpperCase());
  return null;
}

interface SqlishError {
  code?: string;
  errno?: number;
  sqlMessage?: string;
  message?: string;
}

const NETWORK_CODES: Record<string, string> = {
  ECONNREFUSED: 'server unreachable (connection refused)',
  ETIMEDOUT: 'server unreachable (timed out)',
  EHOSTUNREACH: 'server unreachable (no route to the server)',
  ENETUNREACH: 'server unreachable (no route to the server)',
  ENOTFOUND: 'server unreachable (the host name does not resolve)',
  EAI_AGAIN: 'server unreachable (the host name does not resolve)',
};

/** The tenant-visible reason for a failed mysql2 connection or query. */
export function describeMysqlError(err: unknown, database: string): string {
  const e = (err ?? {}) as SqlishError;
  const code = e.code ?? '';
  const net = NETWORK_CODES[code];
  if (net) return net;
  if (code === 'ER_ACCESS_DENIED_ERROR' || code === 'ER_ACCESS_DENIED_NO_PASSWORD_ERROR' || e.errno === 1045 || e.errno === 1698) return AUTHENTICATION_FAILED;
  if (code === 'ER_BAD_DB_ERROR' || e.errno === 1049) return databaseMissing(database);
  if (code === 'ER_DBACCESS_DENIED_ERROR' || e.errno === 1044) return `the user has no privileges on database ${database}`;
  if (code === 'ER_CON_COUNT_ERROR' || code === 'ER_TOO_MANY_USER_CONNECTIONS' || e.errno === 1040) return 'the server refused the connection: too many connections';
  if (code === 'HANDSHAKE_NO_SSL_SUPPORT') return 'the server does not support TLS, which the URL requires';
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ALTNAME/.test(code)) return 'TLS certificate verification failed';
  if (code === 'HANDSHAKE_SSL_ERROR') return /certificate|self[- ]signed|altname|verify|issuer/i.test(e.message ?? '') ? 'TLS certificate verification failed' : 'TLS handshake failed';
  if (code === 'PROTOCOL_CONNECTION_LOST' || code === 'ECONNRESET' || code === 'EPIPE') return 'the connection to the server was lost';
  if (/^HANDSHAKE|^PROTOCOL/.test(code)) return 'server unreachable (it did not answer as a MySQL server)';
  const message = e.sqlMessage ?? e.message ?? '';
  const privileges = deniedPrivileges(message);
  if (privileges) return `missing privilege ${privileges.join(', ')}: ${scrubNetwork(message).slice(0, 300)}`;
  return message ? `the server reported an error: ${scrubNetwork(message).slice(0, 500)}` : 'unexpected error';
}

/** Ordered: a server that answered (authentication, missing database) outranks one that did not. */
const TOOL_RULES: { test: RegExp; category: (database: string) => string }[] = [
  { test: /\b(1045|1698)\b.*Access denied|Access denied for user [^\n]*\(using password/i, category: () => AUTHENTICATION_FAILED },
  { test: /\b1049\b|Unknown database/i, category: databaseMissing },
  { test: /\b1044\b.*Access denied|Access denied for user [^\n]* to database/i, category: (db) => `the user has no privileges on database ${db}` },
  { test: /\b1040\b|Too many connections/i, category: () => 'the server refused the connection: too many connections' },
  { test: /SSL is required, but the server does not support it|SSL connection error: SSL is required/i, category: () => 'the server does not support TLS, which the URL requires' },
  { test: /certificate verify failed|self[- ]signed certificate|TLS\/SSL error: .*certificate/i, category: () => 'TLS certificate verification failed' },
  { test: /Can't connect to (?:MySQL )?server[^\n]*\(111\)|Connection refused/i, category: () => 'server unreachable (connection refused)' },
  { test: /Can't connect to (?:MySQL )?server[^\n]*\(110\)|timed out/i, category: () => 'server unreachable (timed out)' },
  { test: /Unknown (?:MySQL )?server host/i, category: () => 'server unreachable (the host name does not resolve)' },
  { test: /Can't connect to (?:MySQL )?server|\b200[23]\b/i, category: () => 'server unreachable' },
  { test: /Lost connection to (?:MySQL )?server|server has gone away|\b20(06|13)\b/i, category: () => 'the connection to the server was lost' },
];

/** The server's own complaint in a tool's stderr (`ERROR 1064 (42000) at line 3: ...`, `Couldn't execute '...': ... (1142)`). */
function serverComplaint(stderr: string): string | null {
  for (const line of stderr.split('\n')) {
    const cli = /^ERROR \d+ \([0-9A-Z]+\)(?: at line \d+)?: (.*)$/.exec(line.trim());
    if (cli?.[1]) return cli[1];
    const dump = /Couldn't execute '(?:[^']|'')*': (.*)$/.exec(line.trim()) ?? /Got error: \d+: "?(.*?)"? when/.exec(line.trim()) ?? /Error \d+: (.*)$/.exec(line.trim());
    if (dump?.[1]) return dump[1];
  }
  return null;
}

/** The tenant-visible reason for a failed mariadb-dump / mariadb, from its (redacted) stderr. */
export function describeMysqlToolFailure(stderr: string, database: string): string {
  const complaint = serverComplaint(stderr);
  const privileges = complaint ? deniedPrivileges(complaint) : deniedPrivileges(stderr);
  if (privileges) return `missing privilege ${privileges.join(', ')}: ${scrubNetwork(complaint ?? stderr).slice(0, 300)}`;
  for (const rule of TOOL_RULES) {
    if (rule.test.test(stderr)) return rule.category(database);
  }
  if (complaint) return `the server reported an error: ${scrubNetwork(complaint).slice(0, 500)}`;
  const first = stderr.split('\n').find((l) => l.trim() !== '');
  return first ? scrubNetwork(first.trim()).slice(0, 500) : 'unexpected error';
}
