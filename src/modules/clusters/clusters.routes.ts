import type { App } from '../../http/types.js';
import { tenantOf, type Guard } from '../../http/auth.js';
import { bearer, commonErrors, idParams, listOf, listQuery, problemSchema } from '../../http/schemas.js';
import { clusterSchema, createClusterBody, patchClusterBody } from './clusters.schemas.js';
import type { ClusterService } from './clusters.service.js';

export function clusterRoutes(app: App, deps: { guard: Guard; service: ClusterService }) {
  const { guard, service } = deps;
  const tags = ['clusters'];
  app.post('/v1/clusters', {
    onRequest: guard('admin'),
    schema: { tags, security: bearer, summary: 'Create a cluster', body: createClusterBody, response: { 201: clusterSchema, 409: problemSchema, ...commonErrors } },
    handler: async (req, reply) => {
      const c = await service.create(tenantOf(req).tenantId, req.body);
      return reply.code(201).header('location', `/v1/clusters/${c.id}`).send(c);
    },
  });
  app.get('/v1/clusters', {
    onRequest: guard('viewer'),
    schema: { tags, security: bearer, summary: 'List clusters', querystring: listQuery, response: { 200: listOf(clusterSchema), ...commonErrors } },
    handler: async (req) => service.list(tenantOf(req).tenantId, req.query),
  });
  app.get('/v1/clusters/:id', {
    onRequest: guard('viewer'),
    schema: { tags, security: bearer, summary: 'Get a cluster', params: idParams, response: { 200: clusterSchema, ...commonErrors } },
    handler: async (req) => service.get(tenantOf(req).tenantId, req.params.id),
  });
  app.patch('/v1/clusters/:id', {
    onRequest: guard('admin'),
    schema: { tags, security: bearer, summary: 'Change a cluster', params: idParams, body: patchClusterBody, response: { 200: clusterSchema, 409: problemSchema, ...commonErrors } },
    handler: async (req) => service.update(tenantOf(req).tenantId, req.params.id, req.body),
  });
  app.delete('/v1/clusters/:id', {
    onRequest: guard('admin'),
    schema: {
      tags,
      security: bearer,
      summary: 'Delete a cluster with all its backups and artifacts (409 with deletion protection)',
      params: idParams,
      response: { 202: clusterSchema, 409: problemSchema, ...commonErrors },
    },
    handler: async (req, reply) => reply.code(202).send(await service.delete(tenantOf(req).tenantId, req.params.id)),
  });
}
