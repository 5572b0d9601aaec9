import { urlProblem } from './connection-url.js';

/**
 * `redis` component URLs: `redis://` or `rediss://` (TLS), an optional user and password, a host,
 * a port (6379 by default) and an optional database index (`/3`). The database index only says
 * which database the connection selects (and so must exist on the server): a backup and a
 * restore always cover every database.
 */
export interface RedisConnection {
  /** The host as written (brackets of an IPv6 literal removed): what the target policy checks and TLS names. */
  host: string;
  port: number;
  tls: boolean;
  /** An ACL user (Redis >= 6); absent: the legacy `AUTH <password>` (the `default` user). */
  username?: string;
  password?: string;
  /** The URL's database index; 0 when it names none. */
  db: number;
}

const MAX_DB = 2 ** 31 - 1;

/** The URL's problem fit for the tenant (it never repeats the password), or null. */
export function checkRedisUrl(url: string): string | null {
  return urlProblem(() => parseRedisUrl(url), 'redis');
}

/** Parses a component URL; throws an Error whose message is {@link checkRedisUrl}'s problem. */
export function parseRedisUrl(url: string): RedisConnection {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error('not a valid URL (expected redis://[user:password@]host[:port][/db])');
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new Error('the URL must start with redis:// or rediss://');
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  if (!host) throw new Error('the URL names no host');
  if (u.search) throw new Error('the URL may not have parameters (?...)');
  if (u.hash) throw new Error('the URL may not have a fragment (#...)');
  const path = u.pathname === '' ? '/' : u.pathname;
  let db = 0;
  if (path !== '/') {
    const m = /^\/(0|[1-9][0-9]{0,9})$/.exec(path);
    if (!m || Number(m[1]) > MAX_DB) throw new Error('the URL path must be a database index (/0, /1, ...)');
    db = Number(m[1]);
  }
  let username: string | undefined;
  let password: string | undefined;
  try {
    username = u.username ? decodeURIComponent(u.username) : undefined;
    password = u.password ? decodeURIComponent(u.password) : undefined;
  } catch {
    throw new Error('the user or password of the URL is not validly percent-encoded');
  }
  if (username !== undefined && password === undefined) throw new Error('the URL names a user but no password (redis://user:password@host)');
  return {
    host,
    port: u.port ? Number(u.port) : 6379,
    tls: u.protocol === 'rediss:',
    ...(username !== undefined ? { username } : {}),
    ...(password !== undefined ? { password } : {}),
    db,
  };
}
