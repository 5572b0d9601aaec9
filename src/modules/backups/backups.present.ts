import type { ComponentType } from '../../components/types.js';
import { iso } from '../../http/schemas.js';
import type { BackupView } from './backups.schemas.js';
import type { Backup } from '../../generated/prisma/client.js';

/** What presenting a backup needs: the row (lease fields aside) and its artifacts' public fields. */
export type BackupRecord = Omit<Backup, 'workerId' | 'leaseExpiresAt'> & {
  artifacts: { component: string; type?: string; bytes: bigint | number; storedBytes?: bigint | number; stored_bytes?: bigint | number | string; sha256: string; locations: unknown }[];
};

export interface ArtifactLocation {
  store: 'primary' | 'secondary';
  url: string;
  status: 'pending' | 'present' | 'failed';
}

export function presentBackup(b: BackupRecord): BackupView {
  return {
    id: b.id,
    cluster_id: b.clusterId,
    trigger: b.trigger,
    live: b.live,
    status: b.status,
    created_at: iso(b.createdAt),
    started_at: iso(b.startedAt),
    completed_at: iso(b.completedAt),
    size_bytes: b.sizeBytes === null ? null : Number(b.sizeBytes),
    stored_bytes: b.storedBytes === null ? null : Number(b.storedBytes),
    paused_ms: b.pausedMs ?? null,
    artifacts: b.artifacts.map((a) => {
      const locations = a.locations as unknown as ArtifactLocation[];
      return {
        component: a.component,
        type: (a.type ?? 'directory') as ComponentType,
        bytes: Number(a.bytes),
        stored_bytes: Number(a.storedBytes ?? a.stored_bytes ?? 0),
        sha256: a.sha256,
        location: locations.find((l) => l.store === 'primary')?.url ?? '',
        locations,
      };
    }),
    error: b.errorMessage === null ? null : { component: b.errorComponent, message: b.errorMessage },
    components: b.components as { name: string; status: string }[],
    progress: presentProgress(b),
    verification:
      b.verifyStatus === null
        ? null
        : { status: b.verifyStatus as 'queued' | 'running' | 'passed' | 'failed', checked_at: iso(b.verifiedAt), message: b.verifyMessage },
    replication:
      b.replicationStatus === null
        ? null
        : {
            status: b.replicationStatus as 'pending' | 'replicated' | 'degraded',
            attempts: b.replicationAttempts,
            next_attempt_at: iso(b.replicationNextAt),
            error: b.replicationError,
          },
  };
}

/** `{bytes_done, bytes_total, files_done, files_total}`: totals null until known. */
function presentProgress(b: BackupRecord): BackupView['progress'] {
  const p = (b.progress ?? null) as Partial<BackupView['progress']> | null;
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  return {
    bytes_done: num(p?.bytes_done) ?? Number(b.bytesDone),
    bytes_total: num(p?.bytes_total),
    files_done: num(p?.files_done) ?? 0,
    files_total: num(p?.files_total),
  };
}
