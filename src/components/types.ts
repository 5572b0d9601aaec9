import type { Readable } from 'node:stream';
import type { PostgresTargetPolicy } from './postgres-targets.js';
import type { VerifyArtifact } from './verify.js';
import type { ToolLog } from './process.js';

export const COMPONENT_TYPES = ['directory', 'postgres'] as const;
export type ComponentType = (typeof COMPONENT_TYPES)[number];

export interface BackupContext {
  /** The tenant's own folder, DATA_ROOT/<tenant dir> (`tenantRoot()` of paths.ts); directory components must stay inside it. */
  dataRoot: string;
  /** Where postgres components may connect; the service always sets it (tools and tests may not). */
  postgresTargets?: PostgresTargetPolicy;
  signal?: AbortSignal;
  /** Debug log of the raw failures of tools (never shown to tenants). */
  log?: ToolLog;
}

export interface RestoreContext extends BackupContext {
  /**
   * Checks the digest of the artifact bytes the driver consumed, all of them, before the point
   * of no return (directory: the swap; postgres: the COMMIT); throwing leaves the target as it
   * was. Pass `expectDigest(artifact)`: then what is applied is exactly what was backed up.
   */
  verify?: VerifyArtifact;
}

export interface ComponentDriver<C> {
  readonly type: ComponentType;
  /** 'tar.gz' | 'pgdump' */
  readonly artifactExtension: string;
  /**
   * A stream of the artifact bytes. It must ERROR (not end) on any failure — including a child
   * process exiting non-zero or a symlink escape found mid-walk — and must END only once success
   * is certain. Work starts when the stream is first read.
   */
  backup(config: C, ctx: BackupContext): Readable;
  /**
   * Replaces the component's data with the artifact's; on failure (including `ctx.verify`
   * refusing the bytes read) the data is left as it was.
   */
  restore(config: C, artifact: Readable, ctx: RestoreContext): Promise<void>;
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
