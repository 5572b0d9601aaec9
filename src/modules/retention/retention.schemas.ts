import { z } from 'zod';
import { timestamp } from '../../http/schemas.js';
import { backupStatusSchema, triggerSchema } from '../backups/backups.schemas.js';
import { patchPolicyBody } from '../policies/policies.schemas.js';

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

/**
 * POST .../retention/preview: a draft of the cluster's policy. Fields left out keep their saved
 * values (as in PATCH /v1/policies/{id}); `name` is accepted and ignored, so a policy editor can
 * send its whole form.
 */
export const retentionPreviewBody = z
  .object({ policy: patchPolicyBody.describe("the draft: the fields of a policy; those left out keep the cluster's saved policy's values") })
  .strict()
  .meta({ id: 'RetentionPreviewRequest', description: 'A policy that is not saved, to see what retention would keep and delete under it' });
