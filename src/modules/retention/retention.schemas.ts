import { z } from 'zod';
import { timestamp } from '../../http/schemas.js';
import { backupStatusSchema, triggerSchema } from '../backups/backups.schemas.js';

export const retentionSchema = z
  .object({
    cluster_id: z.uuid(),
    policy_id: z.uuid(),
    items: z.array(
      z.object({
        backup_id: z.uuid(),
        trigger: triggerSchema,
        status: backupStatusSchema,
        created_at: timestamp,
        keep: z.boolean(),
        reasons: z.array(z.string()).describe('the rules that keep it, e.g. "1d x 7", "manual_count", "newest", "in use", "failed_count"'),
      }),
    ),
  })
  .meta({ id: 'Retention' });
