import { constants as fsc } from 'node:fs';
import { access } from 'node:fs/promises';
import path from 'node:path';
import { dbnameArgument, type PostgresConnection } from '../postgres-connection.js';
import { describePostgresFailure } from '../postgres-errors.js';
import { abortError, childEnv, runWithInput, spawnOutput, type ToolLog } from '../process.js';
import { ComponentError } from '../types.js';
import { withClient } from './checks.js';
import type { ScratchInstance } from './scratch.js';

/**
 * Copies database `source` of the scratch instance into a NEW database `targetDatabase` on the
 * target server (`target.database` is the maintenance database to connect to). An existing
 * database of that name is refused and left alone; on any later failure (or an abort) the
 * database this made is dropped again, so nothing half-made is left.
 */
export async function copyDatabase(scratch: ScratchInstance, source: string, target: PostgresConnection, targetDatabase: string, opts: { signal?: AbortSignal; log?: ToolLog } = {}): Promise<void> {
  opts.signal?.throwIfAborted();
  const src = scratch.connection(source);
  const facts = await withClient(src, 'reading the recovered database', async (c) => {
    const r = await c.query<{ encoding: string; collate: string; ctype: string }>('SELECT pg_encoding_to_char(encoding) AS encoding, datcollate AS collate, datctype AS ctype FROM pg_database WHERE datname = $1', [source]);
    return r.rows[0];
  }).catch((err: unknown) => {
    if (err instanceof ComponentError && /does not exist/.test(err.message)) throw new ComponentError(`database ${source} did not exist at the recovered point`, { detail: err.detail });
    throw err;
  });
  if (!facts) throw new ComponentError(`database ${source} did not exist at the recovered point`);
  const exists = () => new ComponentError(`database ${targetDatabase} already exists on the target server`);
  const name = ident(targetDatabase);
  await withClient(target, 'creating the target database', async (c) => {
    const r = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [targetDatabase]);
    if (r.rowCount) throw exists();
    const variants = [
      `CREATE DATABASE ${name} TEMPLATE template0 ENCODING ${lit(facts.encoding)} LC_COLLATE ${lit(facts.collate)} LC_CTYPE ${lit(facts.ctype)}`,
      // the target lacks the source's locale: the server's own, in the source's encoding, else its defaults
      `CREATE DATABASE ${name} TEMPLATE template0 ENCODING ${lit(facts.encoding)}`,
      `CREATE DATABASE ${name} TEMPLATE template0`,
    ];
    for (const [i, sql] of variants.entries()) {
      try {
        await c.query(sql);
        return;
      } catch (err) {
        // made by someone else since the check: theirs, not ours to drop
        if ((err as { code?: string }).code === '42P04') throw exists();
        const code = (err as { code?: string }).code;
        if (i === variants.length - 1 || (code !== '22023' && code !== '42809' && code !== '22021')) throw err;
        opts.log?.debug({ err: (err as Error).message }, 'CREATE DATABASE with the source locale failed; trying the server defaults');
      }
    }
  });
  try {
    opts.signal?.throwIfAborted();
    const bin = async (t: string) => ((await exists_(path.join(scratch.pgBin, t))) ? path.join(scratch.pgBin, t) : t);
    const [pgDump, pgRestore] = [await bin('pg_dump'), await bin('pg_restore')];
    const common = { describe: describePostgresFailure, ...(opts.log && { log: opts.log }) };
    const dump = spawnOutput(pgDump, ['-Fc', '--no-password', dbnameArgument(source)], { label: 'pg_dump', env: childEnv(src.env), redact: src.redact, ...common });
    const restoreArgs = ['--no-owner', '--no-privileges', '--no-tablespaces', '--no-subscriptions', '--exit-on-error', '--no-password', dbnameArgument(targetDatabase)];
    await runWithInput(pgRestore, restoreArgs, dump, { label: 'pg_restore', env: childEnv(target.env), redact: target.redact, ...common, ...(opts.signal && { signal: opts.signal }) });
  } catch (err) {
    await withClient(target, 'dropping the half-made target database', async (c) => {
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(async (e: { code?: string }) => {
        if (e.code !== '42601') throw e; // before PostgreSQL 13: no FORCE
        await c.query(`DROP DATABASE IF EXISTS ${name}`);
      });
    }).catch((dropErr: unknown) => opts.log?.debug({ err: String(dropErr) }, 'could not drop the half-made target database'));
    if (opts.signal?.aborted) throw abortError(opts.signal);
    throw err;
  }
}

function lit(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

function ident(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

async function exists_(p: string): Promise<boolean> {
  return access(p, fsc.X_OK).then(
    () => true,
    () => false,
  );
}
