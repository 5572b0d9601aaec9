import type { Tx } from '../../db/client.js';
import type { Cluster } from '../../generated/prisma/client.js';
import { presentBackup, type BackupRecord } from '../backups/backups.present.js';
import { presentCluster } from '../clusters/clusters.service.js';
import { presentRestore } from '../restores/restores.service.js';
import { recordEvent, type EventType } from './outbox.js';

/**
 * The events of the resources' changes, with `data` read inside the change's transaction (after
 * the change, so it is exactly what a GET right after the commit shows) and presented by the
 * API's own presenters. Each costs one read (two for a backup: the row and its artifacts) and
 * one INSERT.
 */

/** As the API orders a backup's artifacts (backups.repo.ts). */
export const withArtifacts = { artifacts: { orderBy: { component: 'asc' as const } } } as const;

type BackupRow = BackupRecord & { tenantId: string; clusterId: string };

/** Records `type` for a backup row already read (with its artifacts), e.g. one about to go. */
export async function recordBackupEvent(tx: Tx, type: EventType, b: BackupRow, occurredAt: Date): Promise<string> {
  return recordEvent(tx, { tenantId: b.tenantId, type, clusterId: b.clusterId, data: { backup: presentBackup(b) }, occurredAt });
}

/**
 * Reads backup `id` in `tx` and records `type` with it. `occurredAt` defaults to the instant the
 * change itself stamped on the row (started_at for a start, completed_at for an end).
 */
export async function announceBackup(tx: Tx, type: EventType, id: string, occurredAt?: Date): Promise<string> {
  const b = await tx.backup.findUniqueOrThrow({ where: { id }, include: withArtifacts });
  return recordBackupEvent(tx, type, b, occurredAt ?? stampOf(type, b) ?? new Date());
}

/** Reads restore `id` in `tx` and records `type` with it (occurred at its started_at / completed_at). */
export async function announceRestore(tx: Tx, type: EventType, id: string, occurredAt?: Date): Promise<string> {
  const r = await tx.restore.findUniqueOrThrow({ where: { id } });
  return recordEvent(tx, { tenantId: r.tenantId, type, clusterId: r.clusterId, data: { restore: presentRestore(r) }, occurredAt: occurredAt ?? stampOf(type, r) ?? new Date() });
}

/** Records `cluster.deleted` with the cluster as it was just before its row went. */
export async function recordClusterDeleted(tx: Tx, c: Cluster, occurredAt: Date): Promise<string> {
  return recordEvent(tx, { tenantId: c.tenantId, type: 'cluster.deleted', clusterId: c.id, data: { cluster: presentCluster(c) }, occurredAt });
}

function stampOf(type: EventType, row: { startedAt: Date | null; completedAt: Date | null }): Date | null {
  const [kind, what] = type.split('.');
  if (kind !== 'backup' && kind !== 'restore') return null;
  return what === 'started' ? row.startedAt : what === 'completed' || what === 'failed' ? row.completedAt : null;
}
