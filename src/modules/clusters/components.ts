import { maskUrl, type SecretBox } from '../../crypto/secrets.js';
import type { FieldProblem } from '../../errors.js';
import { checkRelativePath, resolveInsideRoot } from '../../components/paths.js';
import { parsePostgresUrl } from '../../components/postgres-connection.js';
import type { PostgresTargetPolicy } from '../../components/postgres-targets.js';
import type { ComponentInput } from './clusters.schemas.js';

/** How a component is kept in the database: secrets encrypted, with a masked copy for display. */
export type StoredComponent =
  | { name: string; type: 'directory'; config: { path: string } }
  | { name: string; type: 'postgres'; config: { url_encrypted: string; url_masked: string } };

/** A component as a driver needs it: secrets decrypted (worker only; never logged). */
export type RuntimeComponent = { name: string; type: 'directory'; config: { path: string } } | { name: string; type: 'postgres'; config: { url: string } };

export function presentComponent(c: StoredComponent): { name: string; type: 'directory' | 'postgres'; config: Record<string, string> } {
  return c.type === 'postgres'
    ? { name: c.name, type: c.type, config: { url: c.config.url_masked } }
    : { name: c.name, type: c.type, config: { path: c.config.path } };
}

export function decryptComponent(c: StoredComponent, box: SecretBox): RuntimeComponent {
  return c.type === 'postgres' ? { name: c.name, type: 'postgres', config: { url: box.decrypt(c.config.url_encrypted) } } : c;
}

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

/** What is wrong with a postgres URL: its shape, its parameters, or the operator's policy for its server (a name that does not resolve yet is let through: the worker checks again). */
async function postgresUrlProblem(url: string, policy: PostgresTargetPolicy): Promise<string | null> {
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

/** Validates every component (every problem listed) and returns the stored form. */
export async function prepareComponents(
  input: ComponentInput[],
  ctx: { dataRoot: string; box: SecretBox; postgresTargets: PostgresTargetPolicy },
): Promise<{ stored: StoredComponent[]; errors: FieldProblem[] }> {
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
      try {
        await resolveInsideRoot(ctx.dataRoot, c.config.path);
      } catch (err) {
        errors.push({ path: `${at}.config.path`, message: (err as Error).message });
        continue;
      }
      stored.push({ name: c.name, type: 'directory', config: { path: c.config.path } });
    } else {
      const problem = await postgresUrlProblem(c.config.url, ctx.postgresTargets);
      if (problem) {
        errors.push({ path: `${at}.config.url`, message: problem });
        continue;
      }
      stored.push({ name: c.name, type: 'postgres', config: { url_encrypted: ctx.box.encrypt(c.config.url), url_masked: maskUrl(c.config.url) } });
    }
  }
  return { stored, errors };
}
