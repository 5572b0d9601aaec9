import { z } from 'zod';
import { timestamp } from '../../http/schemas.js';
import { roleSchema } from '../api-keys/api-keys.schemas.js';

export const createApiClientBody = z
  .object({
    name: z.string().trim().min(1).max(100),
    role: roleSchema.describe('the most its tokens may do; a token may ask for a narrower scope'),
  })
  .strict();

export const apiClientSchema = z
  .object({
    id: z.uuid(),
    client_id: z.uuid().describe('the OAuth2 client_id (the same value as id)'),
    name: z.string(),
    role: roleSchema,
    created_at: timestamp,
    last_used_at: timestamp.nullable().describe('when it last obtained an access token'),
  })
  .meta({ id: 'ApiClient' });

export const createdApiClientSchema = apiClientSchema
  .extend({ client_secret: z.string().describe('shown once; only a hash is stored') })
  .meta({ id: 'CreatedApiClient' });
