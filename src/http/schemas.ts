import { z } from 'zod';

/** Shared HTTP schemas: problem bodies, ids, pagination. */
export const problemSchema = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    errors: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
  })
  .meta({ id: 'Problem', description: 'RFC 9457 problem details (application/problem+json)' });

export const uuid = z.uuid();
export const idParams = z.object({ id: uuid });
export const timestamp = z.string().meta({ format: 'date-time' });

export const listQuery = z.object({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().max(512).optional(),
});

export function listOf<T extends z.ZodType>(item: T) {
  return z.object({ items: z.array(item), next_cursor: z.string().nullable() });
}

/** Error responses every authenticated route can give. */
export const authErrors = { 401: problemSchema, 403: problemSchema } as const;
export const commonErrors = { 400: problemSchema, 401: problemSchema, 403: problemSchema, 404: problemSchema, 422: problemSchema, 503: problemSchema } as const;

export const bearer = [{ bearerAuth: [] }];

export function iso(d: Date): string;
export function iso(d: Date | null | undefined): string | null;
export function iso(d: Date | null | undefined): string | null {
  return d ? d.toISOString() : null;
}
