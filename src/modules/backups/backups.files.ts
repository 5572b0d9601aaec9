import { Readable } from 'node:stream';
import type { Db } from '../../db/client.js';
import { getDriver, type ComponentType } from '../../components/index.js';
import { Conflict, DomainError, Invalid, NotFound } from '../../errors.js';
import { compareSegments, comparePaths, isSameOrInside, manifestPathProblem } from '../../repo/manifest.js';
import type { ComponentArtifact, RepoService } from '../../repo/service.js';
import { IntegrityError, type ChunkSource, type DirEntry } from '../../repo/types.js';
import type { ClusterRepo } from '../clusters/clusters.repo.js';
import type { BackupRepo } from './backups.repo.js';
import type { FileEntryView } from './backups.schemas.js';

/*
 * Reading a completed backup without restoring it: one directory of a directory component at a
 * time (browse), a whole component as a portable archive (export), and the check a partial
 * restore makes that the paths it names are in the backup. All read the component's manifest
 * through the tenant's repository, every chunk verified; stored data that fails a check is a
 * `BackupDamaged`, never a raw error.
 */

/** The component's stored data failed an integrity check (damaged or missing pack, manifest not matching its sha256). */
export class BackupDamaged extends DomainError {
  constructor(
    readonly component: string,
    /** What failed, for the server log only (it names packs and chunks). */
    readonly problem: IntegrityError,
  ) {
    super(`component "${component}" of this backup failed its integrity check: its stored data is damaged or missing (POST .../verify checks every copy)`);
  }
}

/** A path a request names is not in the backup (or is not what the request needs there). */
export class PathNotInBackup extends NotFound {
  constructor(message: string) {
    super('path');
    this.message = message;
  }
}

type ArtifactRow = ComponentArtifact & { type: string };

/** Runs `fn`, turning an integrity failure of the stored data into BackupDamaged. */
async function guarded<T>(component: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof IntegrityError) throw new BackupDamaged(component, err);
    throw err;
  }
}

/** Backups taken before the repository have no manifest: nothing here can read them. */
function hasManifest(a: ArtifactRow): boolean {
  const m = a.manifest as { chunks?: unknown } | null;
  return typeof m === 'object' && m !== null && Array.isArray(m.chunks);
}

/** `mtime_ns` (decimal ns since the epoch, maybe negative) as RFC 3339 UTC with nanoseconds. */
export function rfc3339Ns(ns: string): string {
  const n = BigInt(ns);
  let sec = n / 1_000_000_000n;
  let frac = n % 1_000_000_000n;
  if (frac < 0n) {
    frac += 1_000_000_000n;
    sec -= 1n;
  }
  const whole = new Date(Number(sec) * 1000).toISOString(); // ends in ".000Z"
  return `${whole.slice(0, -5)}.${frac.toString().padStart(9, '0')}Z`;
}

function presentEntry(e: DirEntry, name: string): FileEntryView {
  return {
    name,
    type: e.type,
    size: e.size,
    mode: e.mode,
    mtime: rfc3339Ns(e.mtime_ns),
    ...(e.type === 'symlink' && e.link_target !== undefined && { link_target: e.link_target }),
  };
}

/** Cursor of a directory listing: the directory and the last name of the page (opaque, like every cursor). */
function encodeNameCursor(dir: string, name: string): string {
  return Buffer.from(JSON.stringify(['dir', dir, name])).toString('base64url');
}

function decodeNameCursor(s: string, dir: string): string {
  try {
    const v: unknown = JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));
    if (Array.isArray(v) && v.length === 3 && v[0] === 'dir' && v[1] === dir && typeof v[2] === 'string' && v[2] !== '') return v[2];
  } catch {
    // fall through
  }
  throw new Invalid('invalid cursor', [{ path: 'cursor', message: 'not a cursor this API returned for this directory' }]);
}

/**
 * The first of `paths` (in the order given) that the manifest does not hold, or null. Reads the
 * entries only up to the last path wanted (path order).
 */
export async function firstMissingPath(entries: AsyncIterable<DirEntry>, paths: string[]): Promise<string | null> {
  const wanted = new Set(paths);
  const last = [...wanted].sort(comparePaths).at(-1);
  if (last === undefined) return null;
  for await (const e of entries) {
    wanted.delete(e.path);
    if (wanted.size === 0 || comparePaths(e.path, last) >= 0) break;
  }
  return paths.find((p) => wanted.has(p)) ?? null;
}

/**
 * Yields the stream's chunks after reading the first one, so an error before any byte (the
 * first file's chunk damaged, the repository unreadable) rejects here, while the answer can
 * still be a problem. Destroying the result destroys `stream`.
 */
async function primed(stream: Readable): Promise<Readable> {
  const it = stream[Symbol.asyncIterator]();
  const first = await it.next();
  async function* all(): AsyncGenerator<Buffer> {
    try {
      if (first.done) return;
      yield first.value as Buffer;
      for (;;) {
        const n = await it.next();
        if (n.done) return;
        yield n.value as Buffer;
      }
    } finally {
      await it.return?.();
    }
  }
  return Readable.from(all(), { objectMode: false });
}

/** A name safe inside a quoted Content-Disposition filename. */
const fileSafe = (s: string) => s.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[._]+/, '') || 'x';

export function createBackupFilesService(deps: { db: Db; repo: RepoService; backups: BackupRepo; clusters: ClusterRepo }) {
  const { db, repo } = deps;

  /** The backup: 404 when missing (or another tenant's), 409 unless completed. */
  async function completedBackup(tenantId: string, clusterId: string, backupId: string, what: string) {
    const backup = await deps.backups.find(db, tenantId, clusterId, backupId);
    if (!backup) throw new NotFound('backup');
    if (backup.status !== 'completed') throw new Conflict(`only a completed backup can be ${what} (this one is ${backup.status})`);
    return backup;
  }

  /** The artifact of `component` in the backup: 404 when it has none, 409 for one stored before the repository. */
  function artifactOf(backup: Awaited<ReturnType<typeof completedBackup>>, component: string, what: string) {
    const artifact = backup.artifacts.find((a) => a.component === component) as ArtifactRow | undefined;
    if (!artifact) throw new NotFound(`component "${component}" in this backup`);
    if (!hasManifest(artifact)) throw new Conflict(`component "${component}" of this backup was stored before the repository format and cannot be ${what}`);
    return { artifact, type: (artifact.type ?? 'directory') as ComponentType };
  }

  /** The component to browse: the one named, or the backup's only directory component. */
  function browsedComponent(backup: Awaited<ReturnType<typeof completedBackup>>, component: string | undefined): string {
    if (component !== undefined) return component;
    const dirs = backup.artifacts.filter((a) => (a.type ?? 'directory') === 'directory');
    if (dirs.length === 1) return dirs[0]!.component;
    throw new Invalid('invalid querystring', [{ path: 'querystring.component', message: `required: the backup has ${dirs.length} directory components` }]);
  }

  return {
    /** One directory of a directory component, names in code-point order, paged by name. */
    async list(tenantId: string, clusterId: string, backupId: string, q: { component?: string | undefined; path?: string | undefined; limit: number; cursor?: string | undefined }) {
      // The backup first: another tenant's id answers 404 whatever the query says.
      const backup = await completedBackup(tenantId, clusterId, backupId, 'browsed');
      const dir = q.path ?? '';
      // Checked like a manifest path: relative, no `..`, `.` or empty segment, no NUL.
      const problem = dir === '' ? null : manifestPathProblem(dir);
      if (problem) throw new Invalid(`invalid path: ${problem}`, [{ path: 'querystring.path', message: problem }]);
      const after = q.cursor ? decodeNameCursor(q.cursor, dir) : null;
      const component = browsedComponent(backup, q.component);
      const { artifact, type } = artifactOf(backup, component, 'browsed');
      if (type !== 'directory') {
        throw new Invalid(`component "${component}" is a ${type} component; only directory components can be browsed`, [
          { path: 'querystring.component', message: `is a ${type} component, not a directory component` },
        ]);
      }
      const prefix = dir === '' ? '' : `${dir}/`;
      const items: FileEntryView[] = [];
      let found = dir === '';
      let more = false;
      await guarded(component, async () => {
        const src = await repo.source(tenantId);
        // Entries come in path order: the directory, then everything below it, then its next
        // sibling. So the listing stops at the first entry past the directory (or past the page).
        for await (const e of repo.entries(src, artifact)) {
          if (!found) {
            if (e.path === dir) {
              if (e.type !== 'directory') throw new PathNotInBackup(`${JSON.stringify(dir)} is a ${e.type} in component "${component}" of the backup, not a directory`);
              found = true;
            } else if (comparePaths(e.path, dir) > 0) break;
            continue;
          }
          if (!isSameOrInside(dir, e.path) && dir !== '') break;
          const name = e.path.slice(prefix.length);
          if (name.includes('/')) continue;
          if (after !== null && compareSegments(name, after) <= 0) continue;
          if (items.length === q.limit) {
            more = true;
            break;
          }
          items.push(presentEntry(e, name));
        }
      });
      if (!found) throw new PathNotInBackup(`no directory ${JSON.stringify(dir)} in component "${component}" of the backup`);
      const last = items.at(-1);
      return { items, next_cursor: more && last ? encodeNameCursor(dir, last.name) : null };
    },

    /**
     * A portable copy of one component, ready to stream: everything that can be checked before
     * the first byte (backup completed, component present, repository readable, the first bytes
     * produced) is, so those failures are answers; a later failure errors the stream.
     */
    async archive(tenantId: string, clusterId: string, backupId: string, component: string) {
      const { artifact, type } = artifactOf(await completedBackup(tenantId, clusterId, backupId, 'exported'), component, 'exported');
      const cluster = await deps.clusters.find(db, tenantId, clusterId);
      if (!cluster) throw new NotFound('cluster');
      const driver = getDriver(type);
      const stream = await guarded(component, async () => {
        const src: ChunkSource = await repo.source(tenantId);
        return primed(await driver.exportArchive(repo.manifestBytes(src, artifact), src));
      });
      // A continuous postgres component's snapshot is a base backup: pg_basebackup's tar (its WAL is in the archive).
      const kind = (artifact as { baseBackup?: unknown }).baseBackup ? { extension: 'basebackup.tar', mediaType: 'application/x-tar' } : driver.archive;
      return {
        stream,
        mediaType: kind.mediaType,
        filename: `${fileSafe(cluster.name)}-${backupId}-${fileSafe(component)}.${kind.extension}`,
      };
    },

    /**
     * For a partial restore: that `paths` are all in the component's manifest. Throws
     * PathNotInBackup naming the first missing one (in the order given).
     */
    async checkPaths(tenantId: string, artifact: ArtifactRow, paths: string[]) {
      if (!hasManifest(artifact)) throw new Conflict(`component "${artifact.component}" of this backup was stored before the repository format; it can only be restored whole`);
      const missing = await guarded(artifact.component, async () => firstMissingPath(repo.entries(await repo.source(tenantId), artifact), paths));
      if (missing !== null) throw new PathNotInBackup(`path ${JSON.stringify(missing)} is not in component "${artifact.component}" of the backup`);
    },
  };
}
export type BackupFilesService = ReturnType<typeof createBackupFilesService>;
