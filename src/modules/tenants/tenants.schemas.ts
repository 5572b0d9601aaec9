import { z } from 'zod';
import { timestamp } from '../../http/schemas.js';
import { createdApiKeySchema } from '../api-keys/api-keys.schemas.js';

export const createTenantBody = z.object({ name: z.string().trim().min(1).max(100) }).strict();
export const tenantSchema = z.object({ id: z.uuid(), name: z.string(), created_at: timestamp }).meta({ id: 'Tenant' });
export const createdTenantSchema = z
  .object({ tenant: tenantSchema, api_key: createdApiKeySchema })
  .meta({ id: 'CreatedTenant', description: 'the tenant and its first admin key (token shown once)' });
