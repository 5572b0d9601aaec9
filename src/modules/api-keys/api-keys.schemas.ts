import { z } from 'zod';
import { timestamp } from '../../http/schemas.js';

export const roleSchema = z.enum(['viewer', 'operator', 'admin']);

export const createApiKeyBody = z
  .object({
    name: z.string().trim().min(1).max(100),
    role: roleSchema,
    expires_at: z.iso.datetime({ offset: true }).nullable().optional().describe('RFC 3339; omitted or null: never expires'),
  })
  .strict();

export const apiKeySchema = z
  .object({
    id: z.uuid(),
    name: z.string(),
    role: roleSchema,
    prefix: z.string().describe('first characters of the token, to recognise it'),
    created_at: timestamp,
    expires_at: timestamp.nullable(),
    last_used_at: timestamp.nullable(),
  })
  .meta({ id: 'ApiKey' });

export const createdApiKeySchema = apiKeySchema
  .extend({ token: z.string().describe('shown once; only a hash is stored') })
  .meta({ id: 'CreatedApiKey' });
