import { maskUrl, type SecretBox } from '../../crypto/secrets.js';
import type { FieldProblem } from '../../errors.js';
import { stat } from 'node:fs/promises';
import { checkRelativePath, NO_SUCH_DIRECTORY, resolveInsideRoot } from '../../components/paths.js';
import { parsePostgresUrl } from '../../components/postgres-connection.js';
import { pinAddresses } from '../../components/postgres-targets.js';
import { checkContinuous } from '../../components/pitr/checks.js';
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
  | { name: string; type: UrlComponentType; config: { url_encrypted: string; url_masked: string; continuous?: boolean } };

/** A component as a driver needs it: secrets decrypted (worker only; never logged). `continuous`: postgres only (SPEC section 13). */
export type RuntimeComponent = { name: string; type: 'directory'; config: { path: string } } | { name: string; type: UrlComponentType; config: { url: string; continuous?: boolean } };

/** A postgres component whose WAL is archived continuously (point-in-time recovery). */
export const isContinuous = (c: StoredComponent | RuntimeComponent): boolean => c.type === 'postgres' && (c.config as { continuous?: boolean }).continuous === true;
const continuousFlag = (c: StoredComponent | RuntimeComponent) => (isContinuous(c) ? { continuous: true } : {});

export function presentComponent(c: StoredComponent): ComponentView {
  if (!isUrlComponent(c)) return { name: c.name, type: 'directory', config: { path: c.config.path } };
  return c.type === 'postgres' ? { name: c.name, type: 'postgres', config: { url: c.config.url_masked, continuous: isContinuous(c) } } : { name: c.name, type: c.type, config: { url: c.config.url_masked } };
}

export function decryptComponent(c: StoredComponent, box: SecretBox): RuntimeComponent {
  return isUrlComponent(c) ? { name: c.name, type: c.type, config: { url: box.decrypt(c.config.url_encrypted), ...continuousFlag(c) } } : c;
}

/** The stored form of a runtime component (secrets encrypted under `box`): what `npm run recover` writes back. */
export function encryptComponent(c: RuntimeComponent, box: SecretBox): StoredComponent {
  return isUrlComponent(c) ? { name: c.name, type: c.type, config: { url_encrypted: box.encrypt(c.config.url), url_masked: maskUrl(c.config.url), ...continuousFlag(c) } } : c;
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

/**
 * What is wrong with a postgres URL: its shape, its parameters, or the operator's policy for its
 * server (a name that does not resolve yet is let through: the worker checks again). A continuous
 * component is also checked on its server (checks.ts: REPLICATION, wal_level, a replication
 * connection, free senders and slots), each problem naming its fix; its name must resolve.
 */
async function postgresUrlProblem(url: string, policy: TargetPolicy, continuous: boolean): Promise<string | null> {
  const shape = checkUrlShape(url);
  if (shape) return shape;
  let conn;
  try {
    conn = parsePostgresUrl(url);
  } catch (err) {
    return (err as Error).message;
  }
  const verdict = await policy.check(conn);
  if ('problem' in verdict && (!verdict.unresolved || continuous)) return verdict.problem;
  if (!continuous || 'problem' in verdict) return null;
  const problems = await checkContinuous(pinAddresses(conn, verdict.addresses));
  return problems.length ? problems.join('; ') : null;
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
      const continuous = c.type === 'postgres' && c.config.continuous === true;
      const problem = c.type === 'postgres' ? await postgresUrlProblem(c.config.url, ctx.targets, continuous) : await serverUrlProblem(c.type, c.config.url, ctx.targets);
      if (problem) {
        errors.push({ path: `${at}.config.url`, message: problem });
        continue;
      }
      stored.push(encryptComponent({ name: c.name, type: c.type, config: { url: c.config.url, ...(continuous && { continuous }) } }, ctx.box));
    }
  }
  return { stored, errors };
}
