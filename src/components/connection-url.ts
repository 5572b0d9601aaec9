import { ComponentError } from './types.js';

/**
 * What every database component's URL parser shares (postgres, mysql): errors that never quote
 * the URL (it may hold a password), percent-decoding that fails as a tenant's error, one host,
 * one database as the path, and a redactor of the password in every spelling a tool may echo.
 */
export interface ConnectionUrl {
  parsed: URL;
  /** The host as written, brackets of an IPv6 literal removed. */
  host: string;
  /** The path's one database name, decoded. */
  database: string;
  invalid(reason: string): ComponentError;
  decode(part: string, what: string): string;
}

export function parseConnectionUrl(url: string, o: { kind: string; schemes: string[]; schemeProblem: string }): ConnectionUrl {
  const invalid = (reason: string) => new ComponentError(`invalid ${o.kind} URL: ${reason}`);
  const decode = (part: string, what: string) => {
    try {
      return decodeURIComponent(part);
    } catch {
      throw invalid(`${what} is not valid percent-encoding`);
    }
  };
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw invalid('not a URL');
  }
  if (!o.schemes.includes(parsed.protocol)) throw invalid(o.schemeProblem);
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
  if (host === '') throw invalid('a host is required');
  if (/[,/\s]/.test(host)) throw invalid('only a single host name is supported');
  const database = decode(parsed.pathname.replace(/^\//, ''), 'the database name');
  if (database === '' || database.includes('/')) throw invalid('the path must name one database');
  return { parsed, host, database, invalid, decode };
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Replaces the password (decoded, re-encoded and as written in the URL) and any `scheme://user:pw@`
 * with `***` in a tool's or a server's text, before it reaches a log or a tenant.
 */
export function passwordRedactor(password: string, written: string, urlScheme: RegExp): (text: string) => string {
  const secrets = new Set<string>();
  if (password) {
    secrets.add(password);
    secrets.add(encodeURIComponent(password));
    if (written) secrets.add(written);
  }
  const patterns = [...secrets].filter((s) => s.length > 0).sort((a, b) => b.length - a.length).map(escapeRegExp);
  const secretPattern = patterns.length > 0 ? new RegExp(patterns.join('|'), 'g') : undefined;
  const inUrl = new RegExp(`(${urlScheme.source}:\\/\\/)[^@\\s/]*@`, 'gi');
  return (text) => (secretPattern ? text.replace(secretPattern, '***') : text).replace(inUrl, '$1***@');
}

/** A parser's complaint as a problem for API validation, or null. */
export function urlProblem(parse: () => unknown, kind: string): string | null {
  try {
    parse();
    return null;
  } catch (err) {
    return err instanceof Error ? err.message : `invalid ${kind} URL`;
  }
}
