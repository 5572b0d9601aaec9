import type { App } from '../../http/types.js';
import { tenantOf, type Guard } from '../../http/auth.js';
import { idParams, json, problemResponse, securityFor } from '../../http/schemas.js';
import { restoreSchema } from '../restores/restores.schemas.js';
import { pointInTimeRestoreBody, recoveryWindowSchema } from './pitr.schemas.js';
import type { PitrService } from './pitr.service.js';

export function pitrRoutes(app: App, deps: { guard: Guard; service: PitrService }) {
  const { guard, service } = deps;
  app.get('/v1/clusters/:id/recovery-window', {
    onRequest: guard('viewer'),
    schema: {
      operationId: 'getRecoveryWindow',
      tags: ['restores'],
      security: securityFor('viewer'),
      summary: 'How far back and how recently each continuous postgres component can be restored to a point in time',
      description:
        'Per component with `config.continuous: true`: the window `[earliest_restorable_time, latest_restorable_time]` a point-in-time restore accepts, how much WAL the archiver has not stored yet, and its state. See docs/pitr.md.',
      params: idParams,
      response: { 200: json(recoveryWindowSchema, 'the recovery window of each continuous component') },
    },
    handler: async (req) => service.recoveryWindow(tenantOf(req).tenantId, req.params.id),
  });
  app.post('/v1/clusters/:id/restores', {
    onRequest: guard('operator'),
    schema: {
      operationId: 'createPointInTimeRestore',
      tags: ['restores'],
      security: securityFor('operator'),
      summary: 'Restore a continuous postgres component as of a point in time into a new database',
      description:
        "A worker replays the newest base backup taken before `point_in_time` and the archived WAL up to it in a scratch PostgreSQL instance of the same major version, then copies the recovered database into the new `target_database` on the component's server. The component's own database is not touched; like every restore, it is the cluster's one active job until it ends (409 while another backup or restore is queued or running). A time outside the recovery window answers 422 naming the window; an existing `target_database` answers 409.",
      params: idParams,
      body: pointInTimeRestoreBody,
      response: {
        202: json(restoreSchema, 'the restore, queued; Location is where to poll it', ['Location']),
        409: problemResponse('target_database already exists on the server, another backup or restore of the cluster is queued or running, or the cluster is being deleted'),
      },
    },
    handler: async (req, reply) => {
      const { restore, location } = await service.createRestore(tenantOf(req).tenantId, req.params.id, req.body);
      return reply.code(202).header('location', location).send(restore);
    },
  });
}
