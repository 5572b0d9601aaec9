import { maskUrl, type SecretBox } from '../../crypto/secrets.js';
import type { FieldProblem } from '../../errors.js';
import { stat } from 'node:fs/promises';
import { checkRelativePath, NO_SUCH_DIRECTORY, resolveInsideRoot } from '../../components/paths.js';
import { parsePostgresUrl } from '../../components/postgres-connection.js';
import { checkRedisConnection, checkRedisUrl } from '../../components/redis.js';
import { checkMysqlConnection, checkMysqlUrl } from '../../components/mysql.js';
import { ComponentError } from '../../components/types.js';
import type { TargetPolicy } from '../../components/postgres-targets.js';
import type { ComponentInput, ComponentView } from './clusters.schemas.js';

/** The component types whose config is one connection URL, a secret (stored encrypted, shown masked). */
export const URL_COMPONENT_TYPES = ['postgres', 'redis', 'mysql'] as const;
export type UrlComponentType = (typeof URL_COMPONENT_TYPES)[number];
const isUrlComponent = <T extends { type: string }>(c: T): c is T & { type: UrlComponentType } => (URL_COMPONENT_TYPES as readonly string[]).includes(c.type);

/** How a component is kept in the database: secrets encrypted, with a masked copy for display. */
export type StoredComponent =
  | { name: string; type: 'directory'; config: { path: string } }
  | { name: string; type: UrlComponentType; config: { url_encrypted: string; url_masked: string } };

/** A component as a driver needs it: secrets decrypted (worker only; never logged). */
export type RuntimeComponent = { name: string; type: 'directory'; config: { path: string } } | { name: string; type: UrlComponentType; config: { url: string } };

export function presentComponent(c: StoredComponent): ComponentView {
  return isUrlComponent(c) ? { name: c.name, type: c.type, config: { url: c.config.url_masked } } : { name: c.name, type: 'directory', config: { path: c.config.path } };
}

export function decryptComponent(c: StoredComponent, box: SecretBox): RuntimeComponent {
  return isUrlComponent(c) ? { name: c.name, type: c.type, config: { url: box.decrypt(c.config.url_encrypted) } } : c;
}

/** The stored form of a runtime component (secrets encrypted under `box`): what `npm run recover` writes back. */
export function encryptComponent(c: RuntimeComponent, box: SecretBox): StoredComponent {
  return isUrlComponent(c) ? { name: c.name, type: c.type, config: { url_encrypted: box.encrypt(c.config.url), url_masked: maskUrl(c.config.url) } } : c;
}

/** How long a save may wait for a tenant's redis or mysql server to answer (the check at save time; the worker has its own timeouts). */
export const SAVE_CHECK_TIMEOUT_MS = 5000;
/** The whole save-time check of one server, whatever it answers and however slowly: a server that accepts and then trickles or stalls cannot hold a request open. */
export const SAVE_CHECK_DEADLINE_MS = 15_000;

function checkUrlShape(raw: string): string | null {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return 'not a valid URL (expected postgresql://user:password@host:port/database)';
  }
  if (u.protocol !== 'postgresql:' && u.protocol !== 'postgres:') return 'must be a postgresql:// URL';
  if (!u.hostname) return 'must name a host';
  if (u.pathname.replace(/^\//, '') === '') return 'must name a database';
  return null;
}

/**
 * What is wrong with a redis or mysql URL: its shape, the operator's policy for its server, then
 * the server itself, connected to once (wrong password, missing database, unreachable within
 * SAVE_CHECK_TIMEOUT_MS, missing rights: replication for Redis, SELECT/SHOW VIEW/LOCK TABLES/...
 * for MySQL), so a component that cannot be backed up is refused when it is saved.
 */
async function serverUrlProblem(type: 'redis' | 'mysql', url: string, targets: TargetPolicy): Promise<string | null> {
  const shape = type === 'redis' ? checkRedisUrl(url) : checkMysqlUrl(url);
  if (shape) return shape;
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(), SAVE_CHECK_DEADLINE_MS);
  const opts = { targets, connectTimeoutMs: SAVE_CHECK_TIMEOUT_MS, signal: deadline.signal };
  try {
    return await (type === 'redis' ? checkRedisConnection(url, opts) : checkMysqlConnection(url, opts));
  } catch (err) {
    if (deadline.signal.aborted) return `the server did not finish answering within ${SAVE_CHECK_DEADLINE_MS / 1000} s`;
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/** What is wrong with a postgres URL: its shape, its parameters, or the operator's policy for its server (a name that does not resolve yet is let through: the worker checks again). */
async function postgresUrlProblem(url: string, policy: TargetPolicy): Promise<string | null> {
  const shape = checkUrlShape(url);
  if (shape) return shape;
  let conn;
  try {
    conn = parsePostgresUrl(url);
  } catch (err) {
    return (err as Error).message;
  }
  const verdict = await policy.check(conn);
  return 'problem' in verdict && !verdict.unresolved ? verdict.problem : null;
}

/**
 * Whether `rel` names a directory inside the tenant's folder. Missing, not a directory, or leading
 * out of the folder (a symlink into another tenant's, say) all answer alike: nothing tells a
 * tenant what exists outside its own folder.
 */
async function isOwnDirectory(tenantRoot: () => Promise<string>, rel: string): Promise<boolean> {
  try {
    return (await stat(await resolveInsideRoot(await tenantRoot(), rel))).isDirectory();
  } catch (err) {
    if (err instanceof ComponentError) return false; // PathEscapeError, PathNotFoundError
    throw err; // an outage, not an answer (and its message may name server paths: a 5xx shows none)
  }
}

/**
 * Validates every component (every problem listed) and returns the stored form. `tenantRoot`
 * gives the tenant's folder (DATA_ROOT/<data_dir>, see tenant-folder.ts): directory paths resolve
 * inside it, never merely inside DATA_ROOT.
 */
export async function prepareComponents(
  input: ComponentInput[],
  ctx: { tenantRoot: () => Promise<string>; box: SecretBox; targets: TargetPolicy },
): Promise<{ stored: StoredComponent[]; errors: FieldProblem[] }> {
  let root: Promise<string> | undefined;
  const tenantRoot = () => (root ??= ctx.tenantRoot());
  const errors: FieldProblem[] = [];
  const stored: StoredComponent[] = [];
  const seen = new Set<string>();
  for (const [i, c] of input.entries()) {
    const at = `body.components.${i}`;
    if (seen.has(c.name)) errors.push({ path: `${at}.name`, message: `duplicate component name "${c.name}"` });
    seen.add(c.name);
    if (c.type === 'directory') {
      const lexical = checkRelativePath(c.config.path);
      if (lexical) {
        errors.push({ path: `${at}.config.path`, message: lexical });
        continue;
      }
      if (!(await isOwnDirectory(tenantRoot, c.config.path))) {
        errors.push({ path: `${at}.config.path`, message: NO_SUCH_DIRECTORY });
        continue;
      }
      stored.push({ name: c.name, type: 'directory', config: { path: c.config.path } });
    } else {
      const problem = c.type === 'postgres' ? await postgresUrlProblem(c.config.url, ctx.targets) : await serverUrlProblem(c.type, c.config.url, ctx.targets);
      if (problem) {
        errors.push({ path: `${at}.config.url`, message: problem });
        continue;
      }
      stored.push(encryptComponent({ name: c.name, type: c.type, config: { url: c.config.url } }, ctx.box));
    }
  }
  return { stored, errors };
}
