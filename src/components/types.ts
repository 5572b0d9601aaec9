import type { Readable } from 'node:stream';
import type { TargetPolicy } from './postgres-targets.js';
import type { ChunkSink, ChunkSource, Progress } from '../repo/types.js';
import type { ToolLog } from './process.js';
import type { BaseBackupResult } from './pitr/basebackup.js';

export const COMPONENT_TYPES = ['directory', 'postgres', 'redis', 'mysql'] as const;
export type ComponentType = (typeof COMPONENT_TYPES)[number];

export interface BackupContext {
  /** The tenant's own folder, DATA_ROOT/<tenant dir> (`tenantRoot()` of paths.ts); directory components must stay inside it. */
  dataRoot: string;
  /** Where database components (postgres, mysql, redis) may connect; the service always sets it (tools and tests may not). */
  targets?: TargetPolicy;
  signal?: AbortSignal;
  /** Debug log of the raw failures of tools (never shown to tenants). */
  log?: ToolLog;
}

export interface ComponentBackupContext extends BackupContext {
  /** Where the component's bytes go: the tenant's repository (chunked, deduplicated, sealed). */
  sink: ChunkSink;
  /** The same component's manifest in the cluster's last completed backup, if any: a directory backup reuses its unchanged files' chunks. */
  previous: (() => AsyncIterable<Buffer>) | null;
  onProgress?: (p: Progress) => void;
  /**
   * A consistent backup (SPEC section 11) wants to know as early as possible when the
   * component's data is fixed, so the cluster's pause can end: a driver that can tell before its
   * read ends calls this once (postgres: when its snapshot is exported). A driver that never
   * calls it reaches its consistent point when its manifest ends (directory: the end of its read).
   */
  onConsistent?: () => void;
}

export interface ComponentSnapshot {
  /** The component's manifest, produced as the backup runs; it ends only once every byte is in the sink. */
  manifest: AsyncIterable<Buffer>;
  /** Logical bytes backed up (known once `manifest` has ended). */
  logicalBytes(): number;
  /**
   * A continuous postgres component's snapshot is a base backup (SPEC section 13): where its WAL
   * starts and ends, known once `manifest` has ended. Absent for every other snapshot.
   */
  baseBackup?(): BaseBackupResult | null;
}

export interface RestoreContext extends BackupContext {
  /** Verified chunks of the tenant's repository. */
  source: ChunkSource;
  /** The manifest's bytes: every chunk verified, and erroring at its end unless the whole matches the recorded sha256. */
  manifest: AsyncIterable<Buffer>;
  /** Directory components only: replace just these paths (relative to the component), each atomically. */
  paths?: string[];
}

export interface ComponentDriver<C> {
  readonly type: ComponentType;
  /**
   * Backs the component up through `ctx.sink`. The manifest stream must ERROR (not end) on any
   * failure — a child process exiting non-zero, a symlink escape found mid-walk — and END only
   * once success is certain. Work starts when it is first read.
   */
  backup(config: C, ctx: ComponentBackupContext): ComponentSnapshot;
  /**
   * Replaces the component's data with the snapshot's; every chunk is verified before the point
   * of no return (directory: the swap; postgres: the COMMIT), so on failure the data is left as it was.
   */
  restore(config: C, ctx: RestoreContext): Promise<void>;
  /** A portable copy of the snapshot: a tar of the tree, or the pg_dump custom-format file. */
  exportArchive(manifest: AsyncIterable<Buffer>, source: ChunkSource): Promise<Readable>;
  /** File extension and media type of `exportArchive`. */
  readonly archive: { extension: string; mediaType: string };
}

/** A failure whose message is safe to show to the tenant: no secrets, no server paths outside DATA_ROOT, no addresses of the service's network. */
export class ComponentError extends Error {
  override name = 'ComponentError';
  /** The tool's raw (redacted) complaint, for the server log only: it may name addresses and ports. */
  readonly detail: string | undefined;

  constructor(message: string, opts: { detail?: string } = {}) {
    super(message);
    this.detail = opts.detail;
  }
}
