import { isIP } from 'node:net';

/**
 * What a tenant learns when pg_dump, pg_restore or psql fails: a category, never libpq's raw text.
 * libpq names the address and port it tried ("connection to server at "10.0.0.7", port 6379
 * failed: Connection refused"), which would turn backups into a port scanner of the service's
 * network; the raw text goes to the server log (debug) only.
 */

interface Rule {
  test: RegExp;
  category: string;
}

/** Ordered: a server that answered (authentication, missing database) outranks one that did not. */
const RULES: Rule[] = [
  { test: /no pg_hba\.conf entry[^\n]*no encryption|SSL connection is required|SSL required|requires? (an )?SSL/i, category: 'TLS required by the server (use sslmode=require)' },
  { test: /server does not support SSL, but SSL was required|SSL is not enabled on the server/i, category: 'the server does not support TLS, which the URL requires' },
  { test: /certificate verify failed|does not match host name|root certificate file|certificate present, but not private key|SSL certificate|sslmode value "[^"]*" invalid/i, category: 'TLS certificate verification failed' },
  {
    test: /password authentication failed|authentication failed for user|no password supplied|fe_sendauth|SCRAM|GSSAPI|Kerberos|SSPI|authentication method \d+ not supported|role "[^"]*" does not exist|no pg_hba\.conf entry|pg_hba\.conf rejects connection|channel binding|server requested .*authentication|is not permitted to log in/i,
    category: 'authentication failed',
  },
  { test: /database "[^"]*" does not exist/i, category: 'database does not exist' },
  { test: /too many clients|remaining connection slots are reserved|too many connections for/i, category: 'the server refused the connection: too many connections' },
  { test: /the database system is (starting up|shutting down|in recovery mode|not yet accepting connections|not accepting connections)|cannot connect now/i, category: 'the server is not accepting connections (starting up, shutting down or in recovery)' },
  { test: /server version mismatch|aborting because of server version mismatch/i, category: "the server's version is newer than the service's pg_dump" },
  { test: /Connection refused/i, category: 'server unreachable (connection refused)' },
  { test: /timeout expired|timed out/i, category: 'server unreachable (timed out)' },
  { test: /No route to host|Network is unreachable|Host is unreachable|Network is down/i, category: 'server unreachable (no route to the server)' },
  { test: /could not translate host name|Name or service not known|nodename nor servname|name resolution|could not parse network address/i, category: 'server unreachable (the host name does not resolve)' },
  { test: /received invalid response to SSL negotiation|expected authentication request|invalid length of startup packet|unsupported frontend protocol|received invalid response to GSSAPI negotiation/i, category: 'server unreachable (it did not answer as a PostgreSQL server)' },
  { test: /could not connect to server|connection to server at|could not create socket/i, category: 'server unreachable' },
  { test: /server closed the connection unexpectedly|Connection reset|could not receive data|could not send data|SSL SYSCALL error|terminating connection|connection to server was lost|no connection to the server|lost synchronization with server/i, category: 'the connection to the server was lost' },
  { test: /input file does not appear to be a valid archive|unsupported version \([^)]*\) in file header|did not find magic string|could not read input file|unexpected end of file|input file is too short|unrecognized file format/i, category: 'the artifact is not a valid PostgreSQL dump' },
];

/** Whatever could name a machine or a port of the service's network. */
function scrubNetwork(text: string): string {
  return text
    .replace(/connection to server (at|on)[^\n]*?failed:\s*/gi, '')
    .replace(/\b\d{1,3}(\.\d{1,3}){3}(\/\d+)?\b/g, '<address>')
    .replace(/(?<![\w.:])\[?[0-9a-f:.]*:[0-9a-f:.]*:[0-9a-f:.]*(%\w+)?\]?(?![\w:])/gi, (m) => (isIP(m.replace(/^\[|\]$/g, '').replace(/%\w+$/, '')) === 6 ? '<address>' : m))
    .replace(/\bport\s+\d+/gi, 'port <port>')
    .replace(/\bhost\s+"[^"]*"/gi, 'host <host>')
    .replace(/(@|\/\/)[a-z0-9.-]+:\d+/gi, '$1<host>:<port>');
}

/** The server's own complaint about the tenant's SQL (a failed query in their database), without any address. */
function serverError(stderr: string): string | null {
  for (const line of stderr.split('\n')) {
    const m = /(?:^|\s)(?:ERROR|FATAL|PANIC):\s+(.*)$/.exec(line);
    if (m?.[1]) return scrubNetwork(m[1].trim()).slice(0, 500);
  }
  for (const line of stderr.split('\n')) {
    const m = /^(?:pg_dump|pg_restore|psql)(?::[^:]*:\d+)?: error:\s+(.*)$/.exec(line.trim());
    if (m?.[1]) return scrubNetwork(m[1].trim()).slice(0, 500);
  }
  return null;
}

/** The tenant-visible reason for a failed PostgreSQL client tool, from its (redacted) stderr. */
export function describePostgresFailure(stderr: string): string {
  for (const rule of RULES) {
    if (rule.test.test(stderr)) return rule.category;
  }
  if (/permission denied|must be owner|must be superuser|must be a member|insufficient privilege/i.test(stderr)) {
    const detail = serverError(stderr);
    return detail ? `permission denied: ${detail}` : 'permission denied';
  }
  const detail = serverError(stderr);
  return detail ? `the server reported an error: ${detail}` : 'unexpected error';
}
