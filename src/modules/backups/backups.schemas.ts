import { z } from 'zod';
import { timestamp, uuid } from '../../http/schemas.js';

export const backupStatusSchema = z.enum(['queued', 'running', 'completed', 'failed', 'deleting']);
export const triggerSchema = z.enum(['manual', 'scheduled']);

export const backupParams = z.object({ id: uuid, backup_id: uuid });
export const listBackupsQuery = z.object({
  status: backupStatusSchema.optional(),
  trigger: triggerSchema.optional(),
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().max(512).optional(),
});
export const createBackupBody = z.object({}).strict().nullish().describe('no fields yet; an empty object or no body');
export const idempotencyHeaders = z.object({
  'idempotency-key': z.string().min(1).max(255).optional().describe('the same key and body within 24 h returns the first answer'),
});

export const locationSchema = z.object({ store: z.enum(['primary', 'secondary']), url: z.string(), status: z.enum(['pending', 'present', 'failed']) });
export const artifactSchema = z.object({
  component: z.string(),
  type: z.enum(['directory', 'postgres']),
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
