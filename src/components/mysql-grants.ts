/**
 * The rights a user holds, as SHOW GRANTS lists them, and what a backup or restore lacks.
 * Only global (`*.*`) and database-level (`db`.*, wildcards included) grants count; table- and
 * column-level grants are ignored, so a user whose rights are given table by table is refused
 * (conservatively) rather than failing halfway.
 */

export const BACKUP_PRIVILEGES = ['SELECT', 'SHOW VIEW', 'LOCK TABLES', 'TRIGGER', 'EVENT'] as const;

/** Loading the dump (CREATE, INSERT, LOCK TABLES, ALTER for DISABLE KEYS), the swap (ALTER, DROP, CREATE, INSERT) and the objects. */
export const RESTORE_PRIVILEGES = ['SELECT', 'INSERT', 'CREATE', 'DROP', 'ALTER', 'INDEX', 'LOCK TABLES', 'CREATE VIEW', 'SHOW VIEW', 'CREATE ROUTINE', 'ALTER ROUTINE', 'TRIGGER', 'EVENT'] as const;

export interface Grant {
  /** Privilege names, upper case; 'ALL PRIVILEGES' stands for every one. */
  privileges: Set<string>;
  /** null for `*.*`; else a matcher of database names. */
  database: RegExp | null;
}

/** Splits `SELECT, INSERT (a, b), SHOW VIEW` at the commas outside parentheses. */
function splitPrivileges(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let current = '';
  for (const ch of text) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      out.push(current);
      current = '';
    } else current += ch;
  }
  out.push(current);
  return out.map((p) => p.trim().toUpperCase()).filter((p) => p !== '');
}

/** A database pattern of a grant (`_` and `%` wildcards, `\` escapes) as a regular expression. */
function databaseMatcher(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i] as string;
    if (ch === '\\' && i + 1 < pattern.length) {
      re += (pattern[++i] as string).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    } else if (ch === '%') re += '.*';
    else if (ch === '_') re += '.';
    else re += ch.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`, 's');
}

/** `` `a``b` `` -> a`b; a bare name as it is. */
function unquote(ident: string): string {
  return ident.startsWith('`') ? ident.slice(1, -1).replace(/``/g, '`') : ident;
}

export function parseGrants(lines: string[]): Grant[] {
  const grants: Grant[] = [];
  for (const line of lines) {
    const m = /^GRANT\s+(.+?)\s+ON\s+((?:`(?:[^`]|``)*`|[^\s.`]+|\*)\.(?:`(?:[^`]|``)*`|[^\s`]+|\*))\s+TO\s/is.exec(line);
    if (!m?.[1] || !m[2]) continue; // role grants (GRANT r TO u), PROXY
    const target = m[2];
    const dot = /^((?:`(?:[^`]|``)*`|[^\s.`]+|\*))\.(.*)$/s.exec(target);
    if (!dot?.[1] || dot[2] !== '*') continue; // table- or routine-level
    grants.push({
      privileges: new Set(splitPrivileges(m[1]).map((p) => p.replace(/\s+/g, ' '))),
      database: dot[1] === '*' ? null : databaseMatcher(unquote(dot[1])),
    });
  }
  return grants;
}

/** The privileges of `needed` that no global or matching database grant gives on `database`. */
export function missingPrivileges(grants: Grant[], database: string, needed: readonly string[]): string[] {
  const held = new Set<string>();
  for (const g of grants) {
    if (g.database !== null && !g.database.test(database)) continue;
    for (const p of g.privileges) held.add(p === 'ALL' ? 'ALL PRIVILEGES' : p);
  }
  if (held.has('ALL PRIVILEGES')) return [];
  return needed.filter((p) => !held.has(p));
}

/** The grant pattern that covers a database's scratch databases, quoted for a GRANT statement. */
export function scratchPattern(database: string): string {
  const escaped = `${database}__bk_`.replace(/[\\_%]/g, (c) => `\\${c}`);
  return '`' + `${escaped}%`.replace(/`/g, '``') + '`';
}
