import { z } from 'zod';
import { timestamp } from '../../http/schemas.js';
import { backupStatusSchema, triggerSchema } from '../backups/backups.schemas.js';
import { patchPolicyBody } from '../policies/policies.schemas.js';

export const retentionSchema = z
  .object({
    cluster_id: z.uuid(),
    policy_id: z.uuid(),
    recovery_window: z
      .object({
        interval: z.string().describe("the policy's recovery_window, e.g. \"14d\""),
        start: timestamp.describe(
          "the newest completed backup's created_at minus the window, in the policy's time zone (not the current time, so an idle cluster keeps its window): a point-in-time restore to any moment from here on stays possible",
        ),
        replayed_backup_id: z
          .uuid()
          .nullable()
          .describe('the base backup a restore to `start` replays (the latest that stopped at or before it): kept whatever max_backups says; null: no base backup stopped that early'),
      })
      .nullable()
      .describe("null: the policy has no recovery_window, or the cluster no completed backup. Otherwise the backups kept with reason recovery_window are the base backups that stopped at or after `start`, and the latest that stopped before it"),
    items: z.array(
      z.object({
        backup_id: z.uuid(),
        trigger: triggerSchema,
        status: backupStatusSchema,
        created_at: timestamp,
        base_backup_stop: timestamp
          .nullable()
          .describe('a completed backup of continuous postgres components: when its base backups stopped (the latest of them), from when on a point-in-time restore can start from it; null otherwise'),
        keep: z.boolean(),
        reasons: z
          .array(z.string())
          .describe('the rules that keep it, e.g. "1d x 7", "manual_count", "newest", "in use", "failed_count", "recovery_window" (a base backup the recovery window needs, see recovery_window)'),
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
