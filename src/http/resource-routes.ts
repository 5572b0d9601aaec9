import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { App } from './types.js';
import { tenantOf, type Guard } from './auth.js';
import { idParams, json, listOf, listQuery, problemResponse, securityFor } from './schemas.js';

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
    /** When each write answers 409 (the document's description of it). */
    conflicts: { create: string; update: string; delete: string };
    asyncDelete: boolean;
  },
) {
  const { guard, service, item, path, noun, conflicts } = opts;
  const tags = [opts.tag];
  const plural = noun === 'policy' ? 'policies' : `${noun}s`;
  const Noun = noun[0]!.toUpperCase() + noun.slice(1);
  const Plural = plural[0]!.toUpperCase() + plural.slice(1);
  // Validation and serialization still come from the zod schemas; the untyped instance only
  // spares the generic plumbing (the service signature above carries the types).
  const r = app as unknown as FastifyInstance;
  type IdReq = { params: { id: string } };
  r.post(path, {
    onRequest: guard('admin'),
    schema: {
      operationId: `create${Noun}`,
      tags,
      security: securityFor('admin'),
      summary: `Create a ${noun}`,
      body: opts.createBody,
      response: { 201: json(item, `the ${noun} created`, ['Location']), 409: problemResponse(conflicts.create) },
    },
    handler: async (req, reply) => {
      const created = await service.create(tenantOf(req).tenantId, req.body as z.output<CreateSchema>);
      return reply.code(201).header('location', `${path}/${created.id}`).send(created);
    },
  });
  r.get(path, {
    onRequest: guard('viewer'),
    schema: {
      operationId: `list${Plural}`,
      tags,
      security: securityFor('viewer'),
      summary: `List ${plural}, newest first`,
      querystring: listQuery,
      response: { 200: json(listOf(item), `a page of ${plural}`) },
    },
    handler: async (req) => service.list(tenantOf(req).tenantId, req.query as { limit: number; cursor?: string }),
  });
  r.get(`${path}/:id`, {
    onRequest: guard('viewer'),
    schema: { operationId: `get${Noun}`, tags, security: securityFor('viewer'), summary: `Get a ${noun}`, params: idParams, response: { 200: json(item, `the ${noun}`) } },
    handler: async (req) => service.get(tenantOf(req).tenantId, (req as IdReq).params.id),
  });
  r.patch(`${path}/:id`, {
    onRequest: guard('admin'),
    schema: {
      operationId: `update${Noun}`,
      tags,
      security: securityFor('admin'),
      summary: opts.summaries?.update ?? `Change a ${noun}`,
      params: idParams,
      body: opts.patchBody,
      response: { 200: json(item, `the ${noun} as changed`), 409: problemResponse(conflicts.update) },
    },
    handler: async (req) => service.update(tenantOf(req).tenantId, (req as IdReq).params.id, req.body as z.output<PatchSchema>),
  });
  r.delete(`${path}/:id`, {
    onRequest: guard('admin'),
    schema: {
      operationId: `delete${Noun}`,
      tags,
      security: securityFor('admin'),
      summary: opts.summaries?.delete ?? `Delete a ${noun}`,
      params: idParams,
      response: {
        ...(opts.asyncDelete ? { 202: json(item, `the ${noun}, now \`deleting\`: it is gone once its data is`) } : { 204: z.null().describe('deleted') }),
        409: problemResponse(conflicts.delete),
      },
    },
    handler: async (req, reply) => {
      const result = await service.delete(tenantOf(req).tenantId, (req as unknown as IdReq).params.id);
      const untyped = reply as unknown as { code(n: number): { send(b: unknown): unknown } };
      return opts.asyncDelete ? untyped.code(202).send(result) : untyped.code(204).send(null);
    },
  });
}
