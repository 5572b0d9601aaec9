import { z } from 'zod';
import { timestamp, uuid } from '../../http/schemas.js';

export const restoreBody = z
  .object({
    target_cluster_id: z.uuid().optional().describe('another cluster of the same tenant; omitted: the backup\'s own cluster'),
    components: z.array(z.string().min(1).max(63)).min(1).max(20).optional().describe('a subset of component names; omitted: all'),
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
    status: z.enum(['queued', 'running', 'completed', 'failed']),
    error: z.object({ component: z.string().nullable(), message: z.string() }).nullable(),
    created_at: timestamp,
    started_at: timestamp.nullable(),
    completed_at: timestamp.nullable(),
  })
  .meta({ id: 'Restore' });
export type RestoreView = z.infer<typeof restoreSchema>;
