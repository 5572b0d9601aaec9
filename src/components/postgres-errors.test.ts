import { describe, expect, it } from 'vitest';
import { describePostgresFailure } from './postgres-errors.js';

// What pg_dump, pg_restore and psql 15 really print (LC_ALL=C).
const at = (addr: string, port: number, rest: string) => `pg_dump: error: connection to server at "db.internal" (${addr}), port ${port} failed: ${rest}`;

describe('describePostgresFailure', () => {
  it.each([
    [at('10.0.0.7', 6379, 'Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?'), 'server unreachable (connection refused)'],
    [
      'pg_dump: error: connection to server at "127.0.0.1", port 1 failed: Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?\nconnection to server at "127.0.0.2", port 1 failed: Connection refused',
      'server unreachable (connection refused)',
    ],
    [at('10.0.0.7', 5432, 'timeout expired'), 'server unreachable (timed out)'],
    [at('fd00::7', 5432, 'No route to host\n\tIs the server running on that host and accepting TCP/IP connections?'), 'server unreachable (no route to the server)'],
    [at('10.0.0.7', 22, 'received invalid response to SSL negotiation: S'), 'server unreachable (it did not answer as a PostgreSQL server)'],
    [at('10.0.0.7', 80, 'expected authentication request from server, but received H'), 'server unreachable (it did not answer as a PostgreSQL server)'],
    ['pg_dump: error: could not translate host name "db.internal" to address: Name or service not known', 'server unreachable (the host name does not resolve)'],
    [at('10.0.0.7', 5432, 'FATAL:  password authentication failed for user "alice"'), 'authentication failed'],
    [at('10.0.0.7', 5432, 'fe_sendauth: no password supplied'), 'authentication failed'],
    [at('10.0.0.7', 5432, 'FATAL:  role "nobody" does not exist'), 'authentication failed'],
    [at('10.0.0.7', 5432, 'FATAL:  no pg_hba.conf entry for host "10.0.0.1", user "u", database "d", SSL encryption'), 'authentication failed'],
    [at('10.0.0.7', 5432, 'FATAL:  no pg_hba.conf entry for host "10.0.0.1", user "u", database "d", no encryption'), 'TLS required by the server (use sslmode=require)'],
    [at('10.0.0.7', 5432, 'server does not support SSL, but SSL was required'), 'the server does not support TLS, which the URL requires'],
    [at('10.0.0.7', 5432, 'SSL error: certificate verify failed'), 'TLS certificate verification failed'],
    [at('10.0.0.7', 5432, 'root certificate file "/root/.postgresql/root.crt" does not exist'), 'TLS certificate verification failed'],
    [at('10.0.0.7', 5432, 'FATAL:  database "app" does not exist'), 'database does not exist'],
    [at('10.0.0.7', 5432, 'FATAL:  sorry, too many clients already'), 'the server refused the connection: too many connections'],
    [at('10.0.0.7', 5432, 'FATAL:  the database system is starting up'), 'the server is not accepting connections (starting up, shutting down or in recovery)'],
    ['pg_dump: error: aborting because of server version mismatch\npg_dump: detail: server version: 16.1; pg_dump version: 15.20', "the server's version is newer than the service's pg_dump"],
    ['pg_dump: error: query failed: server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally', 'the connection to the server was lost'],
    ['pg_restore: error: input file does not appear to be a valid archive (too short?)', 'the artifact is not a valid PostgreSQL dump'],
    ['pg_dump: error: query failed: ERROR:  permission denied for table orders\npg_dump: detail: Query was: LOCK TABLE public.orders IN ACCESS SHARE MODE', 'permission denied: permission denied for table orders'],
    ['psql:<stdin>:42: ERROR:  extension "postgis" is not available', 'the server reported an error: extension "postgis" is not available'],
    ['psql:<stdin>:7: ERROR:  could not connect to server 10.1.2.3 port 6379 via dblink', 'server unreachable'],
    ['pg_dump: error: query failed: ERROR:  function from 192.168.7.7 or fe80::1 on port 22 failed', 'the server reported an error: function from <address> or <address> on port <port> failed'],
    ['something else entirely', 'unexpected error'],
  ])('%j -> %j', (stderr, expected) => {
    expect(describePostgresFailure(stderr)).toBe(expected);
  });

  it('never passes on an address or a port of a connection failure', () => {
    for (const rest of ['Connection refused', 'timeout expired', 'FATAL:  password authentication failed for user "u"', 'Network is unreachable', 'odd new libpq text']) {
      const text = describePostgresFailure(at('10.20.30.40', 6379, rest));
      expect(text).not.toMatch(/10\.20\.30\.40|6379|db\.internal/);
    }
  });
});
