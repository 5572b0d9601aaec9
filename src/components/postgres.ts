import type { Readable } from 'node:stream';
import { dbnameArgument, parsePostgresUrl, type PostgresConnection } from './postgres-connection.js';
import { describePostgresFailure } from './postgres-errors.js';
import { pinAddresses } from './postgres-targets.js';
import { exportSnapshot, type ExportedSnapshot } from './postgres-snapshot.js';
import { childEnv, runWithInput, spawnChunks } from './process.js';
import { ComponentError, type BackupContext, type ComponentBackupContext, type ComponentDriver, type ComponentSnapshot } from './types.js';
import { baseBackup, type BaseBackupResult } from './pitr/basebackup.js';
import { ArtifactChangedError, hashArtifact } from './verify.js';
import { decodeStreamManifest, encodeStreamManifest } from '../repo/manifest.js';

export interface PostgresConfig {
  /** postgresql:// URL, possibly with a password. */
  url: string;
  /** Point-in-time recovery (SPEC section 13): the WAL is archived continuously, and a backup is a base backup of the server. */
  continuous?: boolean;
}

/** The connection for a component URL, refused or pinned by the operator's target policy. */
async function connectionFor(config: PostgresConfig, ctx: BackupContext): Promise<PostgresConnection> {
  const conn = parsePostgresUrl(config.url);
  if (!ctx.targets) return conn;
  const verdict = await ctx.targets.check(conn);
  if ('problem' in verdict) throw new ComponentError(`postgres target refused: ${verdict.problem}`);
  return pinAddresses(conn, verdict.addresses);
}

/** Counts the bytes of a dump as they pass, for progress. */
async function* counted(source: AsyncIterable<Buffer>, onBytes: (n: number) => void): AsyncGenerator<Buffer> {
  let n = 0;
  for await (const b of source) {
    n += b.length;
    onBytes(n);
    yield b;
  }
}

export const postgresDriver: ComponentDriver<PostgresConfig> = {
  type: 'postgres',
  archive: { extension: 'pgdump', mediaType: 'application/octet-stream' },

  /**
   * pg_dump's custom format, uncompressed (-Z0), straight into the chunker: unchanged tables give
   * the same chunks day after day. The manifest (the chunk list) is produced once the dump ended
   * with success; any failure of pg_dump errors it instead.
   */
  backup(config, ctx) {
    if (config.continuous) return baseBackupSnapshot(config, ctx);
    let logical = 0;
    async function* manifest(): AsyncGenerator<Buffer> {
      // A consistent backup dumps an exported snapshot: its consistent point is the export, not
      // the end of the dump (postgres-snapshot.ts). The snapshot is held until the dump ends.
      let snapshot: ExportedSnapshot | undefined;
      async function* dump(): AsyncGenerator<Buffer> {
        const conn = await connectionFor(config, ctx);
        if (ctx.onConsistent) {
          snapshot = await exportSnapshot(conn, { ...(ctx.signal && { signal: ctx.signal }), ...(ctx.log && { log: ctx.log }) });
          ctx.onConsistent();
        }
        yield* spawnChunks('pg_dump', ['--format=custom', '--compress=0', '--no-password', ...(snapshot ? [`--snapshot=${snapshot.id}`] : []), dbnameArgument(conn.database)], {
          label: 'pg_dump',
          env: childEnv(conn.env),
          redact: conn.redact,
          describe: describePostgresFailure,
          ...(ctx.log ? { log: ctx.log } : {}),
          ...(ctx.signal ? { signal: ctx.signal } : {}),
        });
      }
      const onBytes = (n: number) => ctx.onProgress?.({ bytes_done: n, bytes_total: null, files_done: 0, files_total: null });
      try {
        const ref = await ctx.sink.writeStream(counted(dump(), onBytes));
        logical = ref.bytes;
        yield* encodeStreamManifest(ref);
      } finally {
        await snapshot?.release();
      }
    }
    return { manifest: manifest(), logicalBytes: () => logical };
  },

  async restore(config, ctx): Promise<void> {
    const conn = await connectionFor(config, ctx);
    const ref = await decodeStreamManifest(ctx.manifest);
    // The dump becomes SQL (pg_restore -f -) that psql runs after CLEAR_DATABASE in one
    // transaction: the database ends up equal to the backup (objects created since are gone).
    // The two tools stream straight into each other; COMMIT is written only once pg_restore has
    // succeeded AND the gate let it through: every chunk was read and verified (the source errors
    // on any that does not) and the byte count is the manifest's. On any failure, abort or
    // refusal psql ends inside an open transaction, which the server rolls back: the database
    // stays exactly as it was.
    const dump = ctx.source.read(ref.chunks);
    const counted = hashArtifact(dump, (got) => {
      if (got.bytes !== ref.bytes) throw new ArtifactChangedError(`the dump read back has ${got.bytes} bytes, ${ref.bytes} recorded; nothing was restored`);
    });
    await restoreDump(conn, counted.stream, () => counted.check(), ctx);
  },

  async exportArchive(manifest, source) {
    const ref = await decodeStreamManifest(manifest);
    return source.read(ref.chunks);
  },
};

/**
 * Replaces the database of `conn` with a pg_dump custom-format stream in one transaction (see
 * the driver's restore): COMMIT only once `gate` resolved after the last byte; on any failure
 * the database stays as it was.
 */
export async function restoreDump(conn: PostgresConnection, dump: Readable, gate: () => Promise<void>, ctx: Pick<BackupContext, 'log' | 'signal'>): Promise<void> {
  await runWithInput('bash', ['-c', RESTORE_PIPELINE, 'restore', dbnameArgument(conn.database)], dump, {
    gate,
    label: 'pg_restore',
    env: { ...childEnv(conn.env), BK_CLEAR_SQL: RESTORE_SETTINGS + CLEAR_DATABASE },
    redact: conn.redact,
    describe: describePostgresFailure,
    ...(ctx.log ? { log: ctx.log } : {}),
    ...(ctx.signal ? { signal: ctx.signal } : {}),
  });
}

/** The connection of a postgres component, refused or pinned by the target policy (the worker's check). */
export const postgresConnection = connectionFor;

/**
 * A continuous component's backup: a base backup of the whole server (pg_basebackup's tar, no
 * WAL: the archiver stores the WAL), into the chunker like a dump, so that successive base
 * backups deduplicate against each other. Where its WAL starts and ends is known at the end.
 */
function baseBackupSnapshot(config: PostgresConfig, ctx: ComponentBackupContext): ComponentSnapshot {
  let logical = 0;
  let info: BaseBackupResult | null = null;
  async function* manifest(): AsyncGenerator<Buffer> {
    const conn = await connectionFor(config, ctx);
    const taken = baseBackup(conn, { ...(ctx.signal && { signal: ctx.signal }), ...(ctx.log && { log: ctx.log }) });
    const onBytes = (n: number) => ctx.onProgress?.({ bytes_done: n, bytes_total: null, files_done: 0, files_total: null });
    const ref = await ctx.sink.writeStream(counted(taken.stream, onBytes));
    info = await taken.result;
    logical = ref.bytes;
    yield* encodeStreamManifest(ref);
  }
  return { manifest: manifest(), logicalBytes: () => logical, baseBackup: () => info };
}

/**
 * A restore is one bulk load: like pg_restore's own performance advice, give its index builds
 * more sort memory (for this transaction only, and never less than the server's own setting).
 */
export const RESTORE_SETTINGS = `
DO $settings$
BEGIN
  IF pg_size_bytes(current_setting('maintenance_work_mem')) < pg_size_bytes('256MB') THEN
    PERFORM set_config('maintenance_work_mem', '256MB', true);
  END IF;
END
$settings$;
`;

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

// fd 3 is the gate (runWithInput): one line `commit` once the artifact is verified, or EOF (the
// service refused it, aborted or died), which leaves the transaction open and so rolled back.
// The pipeline runs in the background so that a SIGTERM (refusal, abort) can reach psql as a
// SIGINT, which cancels the statement in progress: the transaction ends at once, not after
// psql has run what is still buffered. The script exits only once psql has, with the
// pipeline's status (pipefail); a background job's stdin is /dev/null unless given, hence 4<&0.
const RESTORE_PIPELINE = `set -o pipefail
trap 'kill -INT "$psql" 2>/dev/null' TERM
{ printf 'BEGIN;\\n%s\\n' "$BK_CLEAR_SQL" && pg_restore --clean --if-exists --no-owner --no-privileges -f - <&4 4<&- 3<&- \\
  && IFS= read -r verdict <&3 && [ "$verdict" = commit ] && printf 'COMMIT;\\n'; } 4<&0 \\
  | psql -X -q -v ON_ERROR_STOP=1 --no-password "$1" 3<&- &
psql=$!
wait "$psql"; status=$?
while kill -0 "$psql" 2>/dev/null; do wait "$psql"; status=$?; done
exit "$status"`;
