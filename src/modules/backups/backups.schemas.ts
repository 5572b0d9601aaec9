import { COMPONENT_TYPES } from '../../components/types.js';
import { z } from 'zod';
import { HEADERS, timestamp, uuid } from '../../http/schemas.js';

export const backupStatusSchema = z.enum(['queued', 'running', 'completed', 'failed', 'deleting']);
export const triggerSchema = z.enum(['manual', 'scheduled']);

export const backupParams = z.object({ id: uuid, backup_id: uuid });
export const listBackupsQuery = z.object({
  status: backupStatusSchema.optional(),
  trigger: triggerSchema.optional(),
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().max(512).optional(),
});
export const createBackupBody = z
  .object({
    live: z
      .boolean()
      .optional()
      .describe("false: a consistent backup, the cluster paused by its pre_backup/post_backup hooks; true: no pause. Default: false when the cluster has a pre_backup hook, else true"),
  })
  .strict()
  .nullish()
  .describe('optional; no body is the same as {}');
export const idempotencyHeaders = z.object({
  'idempotency-key': z.string().min(1).max(255).optional().describe('the same key and body within 24 h returns the first answer'),
});

export const locationSchema = z.object({ store: z.enum(['primary', 'secondary']), url: z.string(), status: z.enum(['pending', 'present', 'failed']) });
export const artifactSchema = z.object({
  component: z.string(),
  type: z.enum(COMPONENT_TYPES),
  bytes: z.number().int().describe('logical bytes of the component'),
  stored_bytes: z.number().int().describe('bytes this component added to the store, after deduplication and compression'),
  sha256: z.string().describe("sha256 of the component's manifest, which names every chunk"),
  location: z.string().describe('URL of the primary copy'),
  locations: z.array(locationSchema),
});

export const backupSchema = z
  .object({
    id: z.uuid(),
    cluster_id: z.uuid(),
    trigger: triggerSchema,
    live: z.boolean(),
    status: backupStatusSchema,
    created_at: timestamp,
    started_at: timestamp.nullable(),
    completed_at: timestamp.nullable(),
    size_bytes: z.number().int().nullable().describe('logical bytes of its components'),
    stored_bytes: z.number().int().nullable().describe('bytes it added to the store after deduplication and compression (null until completed)'),
    paused_ms: z.number().int().nullable().describe("a consistent backup's pause: from the pre_backup hook's answer to the post_backup call, once every component reached its consistent point (null for live backups)"),
    artifacts: z.array(artifactSchema),
    error: z.object({ component: z.string().nullable(), message: z.string() }).nullable(),
    components: z.array(z.object({ name: z.string(), status: z.string() })),
    progress: z
      .object({ bytes_done: z.number().int(), bytes_total: z.number().int().nullable(), files_done: z.number().int(), files_total: z.number().int().nullable() })
      .describe('while running, updated at least every 2 s; totals are null until known'),
    verification: z
      .object({ status: z.enum(['queued', 'running', 'passed', 'failed']), checked_at: timestamp.nullable(), message: z.string().nullable() })
      .nullable()
      .describe('outcome of the last POST .../verify (restore testing without restoring)'),
    replication: z
      .object({
        status: z.enum(['pending', 'replicated', 'degraded']),
        attempts: z.number().int(),
        next_attempt_at: timestamp.nullable(),
        error: z.string().nullable(),
      })
      .nullable()
      .describe('the dual-region copy (null for same-region clusters): degraded while a copy failed; retried with a growing backoff until it succeeds'),
  })
  .meta({ id: 'Backup' });
export type BackupView = z.infer<typeof backupSchema>;

/** Most bytes a `path` may have (PATH_MAX of Linux). */
export const MAX_PATH_BYTES = 4096;

export const componentParams = z.object({ id: uuid, backup_id: uuid, name: z.string().min(1).max(63) });
export const listFilesQuery = z.object({
  component: z.string().min(1).max(63).optional().describe('a directory component of the backup; may be omitted when the backup has exactly one'),
  path: z.string().max(MAX_PATH_BYTES).optional().describe('a directory relative to the component, e.g. `sub/dir`; omitted or empty: the component root'),
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().max(MAX_PATH_BYTES * 2).optional(),
});
export const fileEntrySchema = z
  .object({
    name: z.string().describe('name inside the listed directory'),
    type: z.enum(['file', 'directory', 'symlink']),
    size: z.number().int().describe('bytes of a file; 0 for directories and symlinks'),
    mode: z.number().int().describe('permission bits, setuid/setgid/sticky included (mode & 0o7777)'),
    mtime: z.string().meta({ format: 'date-time' }).describe('modification time, RFC 3339 UTC with nanoseconds'),
    link_target: z.string().optional().describe("a symlink's target, as stored"),
  })
  .meta({ id: 'FileEntry' });
export type FileEntryView = z.infer<typeof fileEntrySchema>;

/** The archive's bytes: a tar for a directory component, a pg_dump custom-format file for postgres, an RDB file for redis, SQL for mysql. */
export const archiveResponse = {
  description: 'the portable copy, streamed; every chunk is verified as it is sent, and a problem found once streaming has begun cuts the transfer off (never a complete-looking file)',
  headers: { 'Content-Disposition': HEADERS['Content-Disposition'].schema },
  content: {
    'application/x-tar': { schema: z.string().meta({ format: 'binary' }).describe('a directory component: tar (pax) of the tree') },
    'application/octet-stream': { schema: z.string().meta({ format: 'binary' }).describe('a postgres component: pg_dump custom-format file (pg_restore reads it); a redis component: the RDB snapshot (redis-server loads it as dump.rdb)') },
    'application/sql': { schema: z.string().meta({ format: 'binary' }).describe('a mysql component: the mariadb-dump/mysqldump SQL (mysql < file restores it)') },
  },
};
