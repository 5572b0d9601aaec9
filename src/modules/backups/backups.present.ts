import { iso } from '../../http/schemas.js';
import type { BackupView } from './backups.schemas.js';
import type { Backup } from '../../generated/prisma/client.js';

/** What presenting a backup needs: the row (lease fields aside) and its artifacts' public fields. */
export type BackupRecord = Omit<Backup, 'workerId' | 'leaseExpiresAt'> & {
  artifacts: { component: string; bytes: bigint | number; sha256: string; locations: unknown }[];
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
    artifacts: b.artifacts.map((a) => {
      const locations = a.locations as unknown as ArtifactLocation[];
      return {
        component: a.component,
        bytes: Number(a.bytes),
        sha256: a.sha256,
        location: locations.find((l) => l.store === 'primary')?.url ?? '',
        locations,
      };
    }),
    error: b.errorMessage === null ? null : { component: b.errorComponent, message: b.errorMessage },
    components: b.components as { name: string; status: string }[],
    progress: { bytes_done: Number(b.bytesDone) },
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
