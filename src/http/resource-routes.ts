import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { App } from './types.js';
import { tenantOf, type Guard } from './auth.js';
import { bearer, commonErrors, idParams, listOf, listQuery, problemSchema } from './schemas.js';

type Page<T> = { items: T[]; next_cursor: string | null };

/** The use cases behind a tenant-scoped resource with create, list, get, patch and delete. */
export interface ResourceService<Item extends { id: string }, Create, Patch> {
  create(tenantId: string, body: Create): Promise<Item>;
  list(tenantId: string, q: { limit: number; cursor?: string | undefined }): Promise<Page<Item>>;
  get(tenantId: string, id: string): Promise<Item>;
  update(tenantId: string, id: string, body: Patch): Promise<Item>;
  /** Returns the resource when deletion is asynchronous (answered 202 with it), nothing when done (204). */
  delete(tenantId: string, id: string): Promise<Item | void>;
}

/**
 * The five routes of a tenant-scoped resource: admins write, viewers read, 404 for another
 * tenant's id (the service scopes every call by tenant).
 */
export function resourceRoutes<ItemSchema extends z.ZodType<{ id: string }>, CreateSchema extends z.ZodType, PatchSchema extends z.ZodType>(
  app: App,
  opts: {
    path: `/v1/${string}`;
    tag: string;
    noun: string;
    item: ItemSchema;
    createBody: CreateSchema;
    patchBody: PatchSchema;
    guard: Guard;
    service: ResourceService<z.output<ItemSchema>, z.output<CreateSchema>, z.output<PatchSchema>>;
    summaries?: { update?: string; delete?: string };
    asyncDelete: boolean;
  },
) {
  const { guard, service, item, path, noun } = opts;
  const tags = [opts.tag];
  // Validation and serialization still come from the zod schemas; the untyped instance only
  // spares the generic plumbing (the service signature above carries the types).
  const r = app as unknown as FastifyInstance;
  type IdReq = { params: { id: string } };
  r.post(path, {
    onRequest: guard('admin'),
    schema: { tags, security: bearer, summary: `Create a ${noun}`, body: opts.createBody, response: { 201: item, 409: problemSchema, ...commonErrors } },
    handler: async (req, reply) => {
      const created = await service.create(tenantOf(req).tenantId, req.body as z.output<CreateSchema>);
      return reply.code(201).header('location', `${path}/${created.id}`).send(created);
    },
  });
  r.get(path, {
    onRequest: guard('viewer'),
    schema: { tags, security: bearer, summary: `List ${noun === 'policy' ? 'policies' : `${noun}s`}, newest first`, querystring: listQuery, response: { 200: listOf(item), ...commonErrors } },
    handler: async (req) => service.list(tenantOf(req).tenantId, req.query as { limit: number; cursor?: string }),
  });
  r.get(`${path}/:id`, {
    onRequest: guard('viewer'),
    schema: { tags, security: bearer, summary: `Get a ${noun}`, params: idParams, response: { 200: item, ...commonErrors } },
    handler: async (req) => service.get(tenantOf(req).tenantId, (req as IdReq).params.id),
  });
  r.patch(`${path}/:id`, {
    onRequest: guard('admin'),
    schema: { tags, security: bearer, summary: opts.summaries?.update ?? `Change a ${noun}`, params: idParams, body: opts.patchBody, response: { 200: item, 409: problemSchema, ...commonErrors } },
    handler: async (req) => service.update(tenantOf(req).tenantId, (req as IdReq).params.id, req.body as z.output<PatchSchema>),
  });
  r.delete(`${path}/:id`, {
    onRequest: guard('admin'),
    schema: {
      tags,
      security: bearer,
      summary: opts.summaries?.delete ?? `Delete a ${noun}`,
      params: idParams,
      response: { ...(opts.asyncDelete ? { 202: item } : { 204: z.null().describe('deleted') }), 409: problemSchema, ...commonErrors },
    },
    handler: async (req, reply) => {
      const result = await service.delete(tenantOf(req).tenantId, (req as unknown as IdReq).params.id);
      const untyped = reply as unknown as { code(n: number): { send(b: unknown): unknown } };
      return opts.asyncDelete ? untyped.code(202).send(result) : untyped.code(204).send(null);
    },
  });
}
