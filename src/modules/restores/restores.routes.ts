import type { App } from '../../http/types.js';
import { tenantOf, type Guard } from '../../http/auth.js';
import { idParams, json, listOf, listQuery, problemResponse, securityFor } from '../../http/schemas.js';
import { backupParams } from '../backups/backups.schemas.js';
import { answeringDamage } from '../backups/backups.routes.js';
import { restoreBody, restoreParams, restoreSchema } from './restores.schemas.js';
import type { RestoreService } from './restores.service.js';

export function restoreRoutes(app: App, deps: { guard: Guard; service: RestoreService }) {
  const { guard, service } = deps;
  const tags = ['restores'];
  app.post('/v1/clusters/:id/backups/:backup_id/restore', {
    onRequest: guard('operator'),
    schema: {
      operationId: 'createRestore',
      tags,
      security: securityFor('operator'),
      summary: 'Restore a completed backup into its cluster or another cluster of the tenant',
      description:
        'Every chunk is verified before the target is touched. The target is `restoring` until the restore ends. With `paths` (one directory component only, else 422) only those paths are replaced; each is checked against the backup first (404 naming the first missing one; 500 `/problems/integrity-error` when the manifest cannot be read intact).',
      params: backupParams,
      body: restoreBody,
      response: {
        202: json(restoreSchema, 'the restore, queued; Location is where to poll it', ['Location']),
        409: problemResponse('the backup is not completed, or the target cluster is not active (a backup, restore or deletion is under way)'),
        500: problemResponse("the backup's manifest failed an integrity check (type `/problems/integrity-error`)"),
      },
    },
    handler: async (req, reply) =>
      answeringDamage(req, reply, async () => {
        const { restore, location } = await service.create(tenantOf(req).tenantId, req.params.id, req.params.backup_id, req.body ?? {});
        return reply.code(202).header('location', location).send(restore);
      }),
  });
  app.get('/v1/clusters/:id/restores', {
    onRequest: guard('viewer'),
    schema: {
      operationId: 'listRestores',
      tags,
      security: securityFor('viewer'),
      summary: 'Restores into this cluster or from its backups, newest first',
      params: idParams,
      querystring: listQuery,
      response: { 200: json(listOf(restoreSchema), 'a page of restores') },
    },
    handler: async (req) => service.list(tenantOf(req).tenantId, req.params.id, req.query),
  });
  app.get('/v1/clusters/:id/restores/:restore_id', {
    onRequest: guard('viewer'),
    schema: { operationId: 'getRestore', tags, security: securityFor('viewer'), summary: 'Get a restore', params: restoreParams, response: { 200: json(restoreSchema, 'the restore') } },
    handler: async (req) => service.get(tenantOf(req).tenantId, req.params.id, req.params.restore_id),
  });
}
