import type { App } from '../../http/types.js';
import { tenantOf, type Guard } from '../../http/auth.js';
import { bearer, commonErrors, idParams, listOf, problemSchema } from '../../http/schemas.js';
import { backupParams, backupSchema, createBackupBody, idempotencyHeaders, listBackupsQuery } from './backups.schemas.js';
import type { BackupService } from './backups.service.js';

export function backupRoutes(app: App, deps: { guard: Guard; service: BackupService }) {
  const { guard, service } = deps;
  const tags = ['backups'];
  app.post('/v1/clusters/:id/backups', {
    onRequest: guard('operator'),
    schema: {
      tags,
      security: bearer,
      summary: 'Request a manual backup (runs asynchronously)',
      description: '409 while a backup or restore of the cluster is in progress; 429 with Retry-After within manual_rate_limit; 422 when the policy disables manual backups.',
      params: idParams,
      headers: idempotencyHeaders,
      body: createBackupBody,
      response: { 202: backupSchema, 409: problemSchema, 429: problemSchema, ...commonErrors },
    },
    handler: async (req, reply) => {
      const answer = await service.createManual(tenantOf(req).tenantId, req.params.id, req.body ?? {}, req.headers['idempotency-key']);
      if (answer.replayed) void reply.header('idempotent-replayed', 'true');
      return reply.code(202).header('location', answer.location).send(answer.backup);
    },
  });
  app.get('/v1/clusters/:id/backups', {
    onRequest: guard('viewer'),
    schema: { tags, security: bearer, summary: 'List backups, newest first', params: idParams, querystring: listBackupsQuery, response: { 200: listOf(backupSchema), ...commonErrors } },
    handler: async (req) => service.list(tenantOf(req).tenantId, req.params.id, req.query),
  });
  app.get('/v1/clusters/:id/backups/:backup_id', {
    onRequest: guard('viewer'),
    schema: { tags, security: bearer, summary: 'Get a backup', params: backupParams, response: { 200: backupSchema, ...commonErrors } },
    handler: async (req) => service.get(tenantOf(req).tenantId, req.params.id, req.params.backup_id),
  });
  app.post('/v1/clusters/:id/backups/:backup_id/verify', {
    onRequest: guard('operator'),
    schema: {
      tags,
      security: bearer,
      summary: 'Re-read and re-hash every stored copy of a completed backup (restore testing without restoring)',
      params: backupParams,
      response: { 202: backupSchema, 409: problemSchema, ...commonErrors },
    },
    handler: async (req, reply) => reply.code(202).send(await service.verify(tenantOf(req).tenantId, req.params.id, req.params.backup_id)),
  });
  app.delete('/v1/clusters/:id/backups/:backup_id', {
    onRequest: guard('operator'),
    schema: {
      tags,
      security: bearer,
      summary: 'Delete a backup: its artifacts, then the record (409 while running)',
      params: backupParams,
      response: { 202: backupSchema, 409: problemSchema, ...commonErrors },
    },
    handler: async (req, reply) => reply.code(202).send(await service.delete(tenantOf(req).tenantId, req.params.id, req.params.backup_id)),
  });
}
