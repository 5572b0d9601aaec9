import { z } from 'zod';
import { timestamp, uuid } from '../../http/schemas.js';
import { manifestPathProblem } from '../../repo/manifest.js';

/** Most paths one partial restore may name. */
export const MAX_RESTORE_PATHS = 100;

const restorePath = z
  .string()
  .max(4096)
  .superRefine((p, ctx) => {
    const problem = manifestPathProblem(p);
    if (problem) ctx.addIssue({ code: 'custom', message: `${problem}: ${JSON.stringify(p)}` });
  })
  .describe('relative to the component: no leading `/`, no `..`, `.` or empty segment');

export const restoreBody = z
  .object({
    target_cluster_id: z.uuid().optional().describe('another cluster of the same tenant; omitted: the backup\'s own cluster'),
    components: z.array(z.string().min(1).max(63)).min(1).max(20).optional().describe('a subset of component names; omitted: all'),
    paths: z
      .array(restorePath)
      .min(1)
      .max(MAX_RESTORE_PATHS)
      .optional()
      .describe(
        'partial restore of one directory component (the only component restored): only these files and directories are replaced, each atomically, the rest of the tree is left as it is; each must be in the backup (404 naming the first missing one); omitted: the whole component',
      ),
  })
  .strict()
  .nullish();

export const restoreParams = z.object({ id: uuid, restore_id: uuid });

export const restoreSchema = z
  .object({
    id: z.uuid(),
    backup_id: z.uuid(),
    source_cluster_id: z.uuid(),
    cluster_id: z.uuid().describe('the target cluster'),
    components: z.array(z.string()),
    paths: z.array(z.string()).nullable().describe('the paths a partial restore replaces; null: whole components'),
    point_in_time: timestamp.nullable().describe('a point-in-time restore (POST /v1/clusters/{id}/restores): the moment restored; backup_id is the base backup it replays from. null: a restore of a backup'),
    target_database: z.string().nullable().describe('a point-in-time restore: the new database it creates on the component\'s server; null otherwise'),
    status: z.enum(['queued', 'running', 'completed', 'failed']),
    error: z.object({ component: z.string().nullable(), message: z.string() }).nullable(),
    created_at: timestamp,
    started_at: timestamp.nullable(),
    completed_at: timestamp.nullable(),
  })
  .meta({ id: 'Restore' });
export type RestoreView = z.infer<typeof restoreSchema>;
