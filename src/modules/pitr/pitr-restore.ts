import type { Db } from '../../db/client.js';
import type { RepoService } from '../../repo/service.js';
import { checkedBytes } from '../../repo/service.js';
import type { ChunkSource } from '../../repo/types.js';
import { parseLsn } from '../../components/pitr/lsn.js';
import { recoverScratch, type RecoveryTarget, type ScratchInstance, type WalSource } from '../../components/pitr/scratch.js';
import { spawnOutput, childEnv, type ToolLog } from '../../components/process.js';
import { dbnameArgument } from '../../components/postgres-connection.js';
import { describePostgresFailure } from '../../components/postgres-errors.js';
import { ComponentError } from '../../components/types.js';
import type { BaseBackupRecord } from '../backups/backups.jobs.js';
import { storedWal, WalGap } from './wal-files.js';

export interface ReplayDeps {
  db: Db;
  repo: RepoService;
  pitr: { workDir: string; scratchUser: string };
  log?: ToolLog;
  signal?: AbortSignal;
}

export interface BaseBackupArtifact {
  component: string;
  type: string;
  sha256: string;
  manifest: unknown;
  baseBackup: unknown;
}

/** The artifact's base backup record, or null for a snapshot that is not one. */
export function baseBackupOf(a: { baseBackup: unknown }): BaseBackupRecord | null {
  const b = a.baseBackup as Partial<BaseBackupRecord> | null;
  return b && typeof b.start_lsn === 'string' && typeof b.stream_id === 'string' && typeof b.stop_time === 'string' ? (b as BaseBackupRecord) : null;
}

/**
 * Replays a base backup (SPEC section 13) in a scratch PostgreSQL instance: its tar and the
 * archived WAL from its start on, every chunk verified and every WAL file checked against its
 * recorded sha256, up to `target` (a time, or the backup's own consistent point). Resolves with
 * the promoted instance; stop() it when done. WAL that is missing or has a gap is a
 * ComponentError that says so (an integrity problem of the archive, not of the target).
 */
export async function replayToScratch(deps: ReplayDeps, o: { tenantId: string; artifact: BaseBackupArtifact; source: ChunkSource; target: RecoveryTarget }): Promise<ScratchInstance> {
  const base = baseBackupOf(o.artifact);
  if (!base) throw new ComponentError('this backup is not a base backup');
  // The backup's own consistent point: WAL through its end, which its stop time (read after the end) covers.
  const untilTime = o.target === 'immediate' ? new Date(base.stop_time) : o.target.time;
  let wal;
  try {
    wal = await storedWal(deps.db, base.stream_id, { fromLsn: parseLsn(base.start_lsn), untilTime });
  } catch (err) {
    if (err instanceof WalGap) throw new ComponentError(`the archived WAL cannot replay to this point (integrity problem of the WAL archive): ${err.message}`);
    throw err;
  }
  const files = new Map([...wal.history, ...wal.segments].map((f) => [f.name, f]));
  const source: WalSource = {
    names: [...wal.history.map((f) => f.name), ...wal.segments.map((f) => f.name)],
    read(name) {
      const f = files.get(name);
      if (!f) throw new ComponentError(`WAL file ${name} is missing from the archive`);
      return checkedBytes(o.source.read(f.manifest.chunks), { sha256: f.sha256, bytes: f.bytes }, `WAL file ${name} (integrity problem)`);
    },
  };
  const ref = await deps.repo.streamOf(o.source, o.artifact);
  return recoverScratch({
    baseTar: o.source.read(ref.chunks),
    wal: source,
    target: o.target,
    workDir: deps.pitr.workDir,
    scratchUser: deps.pitr.scratchUser,
    ...(deps.signal && { signal: deps.signal }),
    ...(deps.log && { log: deps.log }),
  });
}

/** pg_dump -Fc of a database of the scratch instance (its own binaries when it has them), as a stream that errors unless pg_dump succeeds. */
export function dumpScratch(scratch: ScratchInstance, database: string, o: { signal?: AbortSignal; log?: ToolLog } = {}) {
  const conn = scratch.connection(database);
  return spawnOutput(`${scratch.pgBin}/pg_dump`, ['--format=custom', '--compress=0', '--no-password', dbnameArgument(database)], {
    label: 'pg_dump',
    env: childEnv(conn.env),
    redact: conn.redact,
    describe: describePostgresFailure,
    ...(o.signal && { signal: o.signal }),
    ...(o.log && { log: o.log }),
  });
}
