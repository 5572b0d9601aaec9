import { z } from 'zod';
import { timestamp } from '../../http/schemas.js';

/** A database name the restore creates: an ordinary identifier, so it needs no quoting anywhere. */
export const targetDatabase = z
  .string()
  .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be a new database name: lowercase letters, digits and _, starting with a letter or _, at most 63 characters')
  .describe('the NEW database the state as of point_in_time is restored into, on the component\'s server (409 when it exists)');

export const pointInTimeRestoreBody = z
  .object({
    point_in_time: z
      .string()
      .refine((s) => /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$/.test(s) && !Number.isNaN(Date.parse(s)), 'must be an RFC 3339 date-time with a time zone, e.g. 2026-12-03T17:00:00Z')
      .meta({ format: 'date-time' })
      .describe('the moment whose state is restored: every transaction committed before it, none after; within GET /v1/clusters/{id}/recovery-window (else 422)'),
    components: z
      .array(z.string().min(1).max(63))
      .min(1)
      .max(1)
      .optional()
      .describe('the continuous postgres component to restore; omitted: the cluster\'s only one (422 when it has several)'),
    target_database: targetDatabase,
  })
  .strict();
export type PointInTimeRestoreInput = z.infer<typeof pointInTimeRestoreBody>;

export const componentWindowSchema = z
  .object({
    component: z.string(),
    earliest_restorable_time: timestamp.nullable().describe('the stop time of the oldest base backup kept with its WAL; null until the first base backup completes'),
    latest_restorable_time: timestamp.nullable().describe('every transaction committed before it is archived; trails the source by at most 10 s while streaming; null until WAL is stored'),
    lag_bytes: z.number().int().nullable().describe('WAL the source has written that is not archived yet'),
    state: z.enum(['streaming', 'behind', 'stopped']),
    error: z.string().nullable().describe('why the archiver stopped or fell behind, when it did'),
  })
  .meta({ id: 'ComponentRecoveryWindow' });

export const recoveryWindowSchema = z
  .object({ components: z.array(componentWindowSchema).describe('one per continuous postgres component of the cluster') })
  .meta({ id: 'RecoveryWindow' });
export type RecoveryWindowView = z.infer<typeof recoveryWindowSchema>;
