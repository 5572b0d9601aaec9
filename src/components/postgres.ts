import { spawn } from 'node:child_process';
import { PassThrough, type Readable } from 'node:stream';
import { ComponentError } from './types.js';
import { dbnameArgument, parsePostgresUrl } from './postgres-connection.js';
import { childEnv, lazyReadable, runWithInput, spawnOutput, StderrTail } from './process.js';
import type { ComponentDriver } from './types.js';

export interface PostgresConfig {
  /** postgresql:// URL, possibly with a password. */
  url: string;
}

export const postgresDriver: ComponentDriver<PostgresConfig> = {
  type: 'postgres',
  artifactExtension: 'pgdump',

  backup(config, ctx): Readable {
    return lazyReadable(() => {
      const conn = parsePostgresUrl(config.url);
      return spawnOutput('pg_dump', ['--format=custom', '--no-password', dbnameArgument(conn.database)], {
        label: 'pg_dump',
        env: childEnv(conn.env),
        redact: conn.redact,
      });
    }, ctx.signal);
  },

  async restore(config, artifact, ctx): Promise<void> {
    let conn;
    try {
      conn = parsePostgresUrl(config.url);
    } catch (err) {
      artifact.destroy();
      throw err;
    }
    // The dump becomes SQL (pg_restore -f -) that psql runs after CLEAR_DATABASE in one
    // transaction: the database ends up equal to the backup (objects created since are gone),
    // and a failed or aborted restore leaves it exactly as it was.
    const sql = dumpToSql(artifact, ctx.signal);
    await runWithInput('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '--single-transaction', '--no-password', dbnameArgument(conn.database)], sql, {
      label: 'psql (restore)',
      env: childEnv(conn.env),
      redact: conn.redact,
      ...(ctx.signal ? { signal: ctx.signal } : {}),
    });
  },
};

/**
 * Drops every user schema but public, every extension but plpgsql, and everything in public,
 * keeping the public schema itself (its owner and ACL) since dumps do not recreate it.
 */
export const CLEAR_DATABASE = `
DO $clear$
DECLARE r record;
BEGIN
  FOR r IN SELECT extname FROM pg_extension WHERE extname <> 'plpgsql' LOOP
    EXECUTE format('DROP EXTENSION IF EXISTS %I CASCADE', r.extname);
  END LOOP;
  FOR r IN SELECT nspname FROM pg_namespace
           WHERE nspname NOT IN ('public', 'information_schema') AND nspname NOT LIKE 'pg\\_%' LOOP
    EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE', r.nspname);
  END LOOP;
  FOR r IN SELECT c.relname, c.relkind FROM pg_class c
           WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') LOOP
    EXECUTE format('DROP %s IF EXISTS public.%I CASCADE',
      CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
      r.relname);
  END LOOP;
  FOR r IN SELECT p.oid::regprocedure AS sig, p.prokind FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace LOOP
    EXECUTE format('DROP %s IF EXISTS %s CASCADE', CASE r.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END, r.sig);
  END LOOP;
  FOR r IN SELECT t.typname FROM pg_type t
           WHERE t.typnamespace = 'public'::regnamespace AND t.typtype IN ('e', 'd', 'r', 'm', 'c')
             AND (t.typtype <> 'c' OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c') LOOP
    EXECUTE format('DROP TYPE IF EXISTS public.%I CASCADE', r.typname);
  END LOOP;
END
$clear$;
`;

/** CLEAR_DATABASE followed by the SQL pg_restore makes of the dump; errors if pg_restore fails. */
function dumpToSql(artifact: Readable, signal?: AbortSignal): Readable {
  const out = new PassThrough({ highWaterMark: 1 << 20 });
  out.write(CLEAR_DATABASE);
  const child = spawn('pg_restore', ['--clean', '--if-exists', '--no-owner', '--no-privileges', '-f', '-'], { env: childEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
  const tail = new StderrTail();
  child.stderr.on('data', (c: Buffer) => tail.push(c));
  child.stdout.pipe(out, { end: false });
  const fail = (err: Error) => {
    if (child.exitCode === null) child.kill('SIGKILL');
    out.destroy(err);
  };
  artifact.once('error', fail);
  // pg_restore may stop reading before the end of its input; EPIPE then is expected (its exit
  // status tells), and the rest of the artifact is drained so a checksum over it completes.
  child.stdin.on('error', () => {});
  artifact.pipe(child.stdin);
  child.once('error', (err) => fail(new ComponentError(`could not start pg_restore: ${(err as NodeJS.ErrnoException).code ?? err.message}`)));
  child.once('close', (code) => {
    if (code !== 0) {
      // A broken source makes pg_restore fail on truncated input; the source's own error is
      // the real cause, so give it a moment to surface before blaming pg_restore.
      const toolError = new ComponentError(`pg_restore failed: ${tail.text() || `exit code ${code}`}`);
      artifact.unpipe(child.stdin);
      if (artifact.readableEnded || artifact.destroyed) return fail(toolError);
      const timer = setTimeout(() => fail(toolError), 1000);
      artifact.once('end', () => {
        clearTimeout(timer);
        fail(toolError);
      });
      artifact.once('error', () => clearTimeout(timer));
      artifact.resume();
      return;
    }
    artifact.unpipe(child.stdin);
    if (artifact.readableEnded) return out.end();
    artifact.once('end', () => out.end());
    artifact.resume();
  });
  signal?.addEventListener('abort', () => fail(new ComponentError('the restore was aborted')), { once: true });
  out.once('close', () => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  return out;
}
