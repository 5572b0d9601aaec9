import type { ArtifactStore } from '../storage/types.js';
import { snapshotKey } from './layout.js';
import { openObject, sealObject } from './seal.js';
import type { StreamRef, TenantKeys } from './types.js';

/**
 * The record of one completed backup, sealed in the store at repos/<tenant>/snapshots/<backup id>
 * (purpose `snapshot:<backup id>`): what `npm run recover` rebuilds the backup, its cluster and
 * the cluster's policy from when PostgreSQL is lost. Components are in their runtime form (secrets
 * decrypted) inside the sealed record, so a record stays usable after `npm run rotate-key`;
 * recovery encrypts them again under the current ENCRYPTION_KEY.
 */
export interface SnapshotRecord {
  format: 'bk-snapshot/v1';
  backup: {
    id: string;
    tenant_id: string;
    cluster_id: string;
    trigger: 'manual' | 'scheduled';
    created_at: string;
    started_at: string | null;
    completed_at: string;
    size_bytes: number;
    stored_bytes: number;
  };
  cluster: {
    id: string;
    name: string;
    environment: string;
    region: string;
    backup_location: string;
    deletion_protection: boolean;
    /** [{name, type, config}] with secrets in the clear (the record itself is sealed). */
    components: unknown;
    created_at: string;
    policy: {
      id: string;
      name: string;
      is_default: boolean;
      /** The environment the policy is the default of (absent in records written before environments). */
      environment?: string | null;
      scheduled_live?: boolean;
      timezone: string;
      schedule: unknown;
      max_backups: number;
      manual_count: number;
      manual_rate_limit: string | null;
      failed_count: number;
      /** SPEC section 13 (absent in records written before point-in-time recovery). */
      recovery_window?: string | null;
    } | null;
  };
  components: {
    name: string;
    type: string;
    bytes: number;
    stored_bytes: number;
    /** sha256 of the manifest bytes. */
    sha256: string;
    manifest: StreamRef;
    /** A continuous postgres component's base backup: where its WAL starts and ends (SPEC section 13). */
    base_backup?: unknown;
  }[];
}

export async function writeSnapshot(store: ArtifactStore, keys: TenantKeys, record: SnapshotRecord): Promise<string> {
  const key = snapshotKey(record.backup.tenant_id, record.backup.id);
  await store.putBuffer(key, sealObject(keys.dataKey, `snapshot:${record.backup.id}`, Buffer.from(JSON.stringify(record))));
  return key;
}

export function openSnapshot(keys: TenantKeys, backupId: string, blob: Buffer): SnapshotRecord {
  const record = JSON.parse(openObject(keys.dataKey, `snapshot:${backupId}`, blob).toString('utf8')) as SnapshotRecord;
  if (record?.format !== 'bk-snapshot/v1' || record.backup?.id !== backupId) throw new Error(`snapshot ${backupId}: not a snapshot record of this backup`);
  return record;
}
