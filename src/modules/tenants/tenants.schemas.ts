import { z } from 'zod';
import { timestamp } from '../../http/schemas.js';
import { checkDataDir, DATA_DIR_PATTERN } from '../../components/paths.js';
import { createdApiKeySchema } from '../api-keys/api-keys.schemas.js';

const dataDir = z
  .string()
  .regex(DATA_DIR_PATTERN, { message: checkDataDir('') ?? undefined })
  .describe("the tenant's folder under DATA_ROOT, where its directory components live; one folder name, unique across tenants");

export const createTenantBody = z
  .object({
    name: z.string().trim().min(1).max(100),
    data_dir: dataDir.optional().describe("the tenant's folder under DATA_ROOT (one folder name, unique across tenants); default: the tenant's id"),
  })
  .strict();
export const tenantSchema = z.object({ id: z.uuid(), name: z.string(), data_dir: dataDir, created_at: timestamp }).meta({ id: 'Tenant' });
export const createdTenantSchema = z
  .object({ tenant: tenantSchema, api_key: createdApiKeySchema })
  .meta({ id: 'CreatedTenant', description: 'the tenant and its first admin key (token shown once)' });
