import { z } from 'zod';

const bytes = z.number().int().min(0);

export const usageSchema = z
  .object({
    logical_bytes: bytes.describe("sum of size_bytes of the tenant's completed backups"),
    stored_bytes: bytes.describe("sealed bytes of every chunk in the tenant's repository (after deduplication, compression and encryption), clusters since deleted included"),
    clusters: z.array(
      z.object({
        cluster_id: z.uuid(),
        name: z.string(),
        logical_bytes: bytes.describe("sum of size_bytes of the cluster's completed backups"),
        stored_bytes: bytes.describe('sealed bytes of the chunks this cluster stored first (a chunk other clusters share counts once, for the cluster that stored it first)'),
      }),
    ),
  })
  .meta({ id: 'Usage' });
export type UsageView = z.infer<typeof usageSchema>;
