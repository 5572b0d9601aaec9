import { createHash } from 'node:crypto';
import type { Db } from '../db/client.js';
import type { ArtifactStore } from '../storage/types.js';
import { decodeManifest, decodeStreamManifest } from './manifest.js';
import { createChunkSource } from './reader.js';
import { createRepositories, type Repositories } from './repository.js';
import { sharedSealPool, type SealPool } from './seal-pool.js';
import { createRepoWriter, type RepoWriter } from './writer.js';
import { IntegrityError, type ChunkSource, type DirEntry, type StreamRef } from './types.js';

export interface RepoSettings {
  packTargetBytes: number;
  /** Nice value of the seal pool's and libuv's threads (SEAL_NICE; seal-pool.ts). */
  sealNice?: number;
}

/** What the rest of the service knows of a component's snapshot (a backup_artifacts row). */
export interface ComponentArtifact {
  component: string;
  type?: string;
  /** sha256 of the manifest's bytes. */
  sha256: string;
  /** The manifest stream: {chunks, bytes} (backup_artifacts.manifest). */
  manifest: unknown;
}

export class ManifestProblem extends IntegrityError {}

function manifestRef(a: ComponentArtifact): StreamRef {
  const m = a.manifest as Partial<StreamRef> | null;
  if (!m || !Array.isArray(m.chunks) || typeof m.bytes !== 'number') throw new ManifestProblem(`component "${a.component}": the backup has no manifest`);
  return { chunks: m.chunks, bytes: m.bytes };
}

/** The bytes of `source`, erroring at the end (before the consumer sees the end) unless they hash to `sha256` and count `bytes`. */
export async function* checkedBytes(source: AsyncIterable<Buffer>, expected: { sha256: string; bytes: number }, what: string): AsyncGenerator<Buffer> {
  const hash = createHash('sha256');
  let n = 0;
  let last: Buffer | null = null;
  for await (const b of source) {
    hash.update(b);
    n += b.length;
    if (last) yield last;
    last = b;
  }
  const got = hash.digest('hex');
  if (got !== expected.sha256 || n !== expected.bytes) throw new ManifestProblem(`${what}: the manifest does not match its recorded sha256`);
  if (last) yield last;
}

/**
 * The repository as the service uses it: tenants' keys, writers for backups, verified readers for
 * restores, browsing and export. One per process (roles share it).
 */
export function createRepoService(deps: { db: Db; masterKey: Buffer; primary: ArtifactStore; secondary: ArtifactStore | null; settings: RepoSettings; seal?: SealPool }) {
  const seal = deps.seal ?? sharedSealPool({ nice: deps.settings.sealNice ?? 0 });
  const repositories: Repositories = createRepositories({
    db: deps.db,
    masterKey: deps.masterKey,
    stores: () => [deps.primary, ...(deps.secondary ? [deps.secondary] : [])],
  });

  async function source(tenantId: string, opts: { signal?: AbortSignal; onFallback?: (packId: string, problem: string) => void } = {}): Promise<ChunkSource> {
    const keys = await repositories.keysOf(tenantId);
    return createChunkSource({ pool: deps.db.$pool, primary: deps.primary, secondary: deps.secondary, seal, keys, tenantId, ...opts });
  }

  /** The manifest's bytes, every chunk verified, the whole checked against the recorded sha256 before it ends. */
  function manifestBytes(src: ChunkSource, a: ComponentArtifact): AsyncGenerator<Buffer> {
    const ref = manifestRef(a);
    return checkedBytes(src.read(ref.chunks), { sha256: a.sha256, bytes: ref.bytes }, `component "${a.component}"`);
  }

  return {
    seal,
    repositories,
    primary: deps.primary,
    secondary: deps.secondary,
    settings: deps.settings,
    source,
    manifestBytes,
    /** A directory component's entries in path order (verified). */
    entries(src: ChunkSource, a: ComponentArtifact): AsyncGenerator<DirEntry> {
      return decodeManifest(manifestBytes(src, a));
    },
    /** A stream component's (postgres dump) chunk list (verified). */
    async streamOf(src: ChunkSource, a: ComponentArtifact): Promise<StreamRef> {
      return decodeStreamManifest(manifestBytes(src, a));
    },
    async writer(opts: { tenantId: string; backupId: string | null; walSegmentId?: string; clusterId: string | null; signal?: AbortSignal }): Promise<RepoWriter> {
      const keys = await repositories.keysOf(opts.tenantId);
      return createRepoWriter({ pool: deps.db.$pool, store: deps.primary, seal, keys, packTargetBytes: deps.settings.packTargetBytes, ...opts });
    },
  };
}
export type RepoService = ReturnType<typeof createRepoService>;
