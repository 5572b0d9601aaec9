import { z } from 'zod';

/**
 * The one registry of background work: queue -> job name -> payload schema.
 * Every payload carries tenant_id; job ids derive from the database row, so enqueuing twice is harmless.
 */
export const jobRegistry = {
  backups: {
    'run-backup': z.object({ tenant_id: z.uuid(), backup_id: z.uuid() }),
  },
  restores: {
    'run-restore': z.object({ tenant_id: z.uuid(), restore_id: z.uuid() }),
  },
  maintenance: {
    'delete-backup': z.object({ tenant_id: z.uuid(), backup_id: z.uuid() }),
    'delete-cluster': z.object({ tenant_id: z.uuid(), cluster_id: z.uuid() }),
    prune: z.object({ tenant_id: z.uuid(), cluster_id: z.uuid() }),
    'replicate-backup': z.object({ tenant_id: z.uuid(), backup_id: z.uuid() }),
    'verify-backup': z.object({ tenant_id: z.uuid(), backup_id: z.uuid() }),
    /** Garbage collection of a tenant's repository (job id gc-<tenant>: one at a time). */
    gc: z.object({ tenant_id: z.uuid() }),
    /** The periodic sampled check of a tenant's packs (VERIFY_SAMPLE_PERCENT). */
    'verify-sample': z.object({ tenant_id: z.uuid() }),
  },
  webhooks: {
    /** One attempt of one delivery (job id deliver-<delivery id>); its row says when and whether. */
    deliver: z.object({ tenant_id: z.uuid(), delivery_id: z.uuid() }),
  },
} as const;

export type QueueName = keyof typeof jobRegistry;
export type JobName<Q extends QueueName> = keyof (typeof jobRegistry)[Q] & string;
export type JobPayload<Q extends QueueName, J extends JobName<Q>> = z.infer<(typeof jobRegistry)[Q][J] & z.ZodType>;
export const QUEUE_NAMES = Object.keys(jobRegistry) as QueueName[];

/** Deterministic job id: one job per row and purpose. */
export function jobId(name: string, rowId: string): string {
  return `${name}-${rowId}`;
}

export function parsePayload<Q extends QueueName, J extends JobName<Q>>(queue: Q, name: J, data: unknown): JobPayload<Q, J> {
  const schema = (jobRegistry[queue] as Record<string, z.ZodType>)[name];
  if (!schema) throw new Error(`unknown job ${queue}/${name}`);
  return schema.parse(data) as JobPayload<Q, J>;
}
