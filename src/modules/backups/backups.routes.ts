import type { FastifyReply, FastifyRequest } from 'fastify';
import type { App } from '../../http/types.js';
import { tenantOf, type Guard } from '../../http/auth.js';
import { problem, sendProblem, type Problem } from '../../http/problem.js';
import { idParams, json, listOf, problemResponse, securityFor } from '../../http/schemas.js';
import { BackupDamaged, type BackupFilesService } from './backups.files.js';
import {
  archiveResponse,
  backupParams,
  backupSchema,
  componentParams,
  createBackupBody,
  fileEntrySchema,
  idempotencyHeaders,
  listBackupsQuery,
  listFilesQuery,
} from './backups.schemas.js';
import type { BackupService } from './backups.service.js';

export function backupRoutes(app: App, deps: { guard: Guard; service: BackupService }) {
  const { guard, service } = deps;
  const tags = ['backups'];
  app.post('/v1/clusters/:id/backups', {
    onRequest: guard('operator'),
    schema: {
      operationId: 'createBackup',
      tags,
      security: securityFor('operator'),
      summary: 'Request a manual backup (runs asynchronously)',
      description: '409 while a backup or restore of the cluster is in progress; 429 with Retry-After within manual_rate_limit; 422 when the policy disables manual backups.',
      params: idParams,
      headers: idempotencyHeaders,
      body: createBackupBody,
      response: {
        202: json(backupSchema, 'the backup, queued (or, with a replayed Idempotency-Key, as it was first answered); Location is where to poll it', ['Location', 'Idempotent-Replayed']),
        409: problemResponse('a backup or restore of the cluster is queued or running, or the cluster is being deleted or restored into'),
        429: problemResponse("a manual backup of this cluster was made within the policy's manual_rate_limit (or the request rate limit was reached); Retry-After says when to try again"),
      },
    },
    handler: async (req, reply) => {
      const answer = await service.createManual(tenantOf(req).tenantId, req.params.id, req.body ?? {}, req.headers['idempotency-key']);
      if (answer.replayed) void reply.header('idempotent-replayed', 'true');
      return reply.code(202).header('location', answer.location).send(answer.backup);
    },
  });
  app.get('/v1/clusters/:id/backups', {
    onRequest: guard('viewer'),
    schema: {
      operationId: 'listBackups',
      tags,
      security: securityFor('viewer'),
      summary: 'List backups, newest first',
      params: idParams,
      querystring: listBackupsQuery,
      response: { 200: json(listOf(backupSchema), 'a page of backups') },
    },
    handler: async (req) => service.list(tenantOf(req).tenantId, req.params.id, req.query),
  });
  app.get('/v1/clusters/:id/backups/:backup_id', {
    onRequest: guard('viewer'),
    schema: { operationId: 'getBackup', tags, security: securityFor('viewer'), summary: 'Get a backup', params: backupParams, response: { 200: json(backupSchema, 'the backup') } },
    handler: async (req) => service.get(tenantOf(req).tenantId, req.params.id, req.params.backup_id),
  });
  app.post('/v1/clusters/:id/backups/:backup_id/verify', {
    onRequest: guard('operator'),
    schema: {
      operationId: 'verifyBackup',
      tags,
      security: securityFor('operator'),
      summary: 'Re-read and re-hash every stored copy of a completed backup (restore testing without restoring)',
      params: backupParams,
      response: {
        202: json(backupSchema, 'the backup, its `verification` queued; poll the backup until verification.status is passed or failed'),
        409: problemResponse('the backup is not completed'),
      },
    },
    handler: async (req, reply) => reply.code(202).send(await service.verify(tenantOf(req).tenantId, req.params.id, req.params.backup_id)),
  });
  app.delete('/v1/clusters/:id/backups/:backup_id', {
    onRequest: guard('operator'),
    schema: {
      operationId: 'deleteBackup',
      tags,
      security: securityFor('operator'),
      summary: 'Delete a backup: its artifacts, then the record (409 while running)',
      params: backupParams,
      response: {
        202: json(backupSchema, 'the backup, now `deleting`: it is gone once its artifacts are'),
        409: problemResponse('the backup is running, or a restore is reading it'),
      },
    },
    handler: async (req, reply) => reply.code(202).send(await service.delete(tenantOf(req).tenantId, req.params.id, req.params.backup_id)),
  });
}

/** A damaged backup is the service's fault (its stored data), so 5xx; the body says which component, the log says what failed. */
export function damagedProblem(err: BackupDamaged): Problem {
  return { ...problem(500, err.message), type: '/problems/integrity-error', title: 'Backup Integrity Error' };
}

/** Runs a handler, answering BackupDamaged as an integrity problem (logged as the fault it is). */
export async function answeringDamage<T>(req: FastifyRequest, reply: FastifyReply, fn: () => Promise<T>): Promise<T | FastifyReply> {
  try {
    return await fn();
  } catch (err) {
    if (!(err instanceof BackupDamaged)) throw err;
    req.log.error({ err: err.problem, component: err.component }, 'stored backup data failed an integrity check');
    return sendProblem(reply, damagedProblem(err));
  }
}

const integrityError = problemResponse("the component's stored data failed an integrity check (type `/problems/integrity-error`)");
const notCompleted = problemResponse('the backup is not completed, or its component was stored before the repository format');

/** Browsing and exporting completed backups. */
export function backupFileRoutes(app: App, deps: { guard: Guard; service: BackupFilesService }) {
  const { guard, service } = deps;
  const tags = ['backups'];
  app.get('/v1/clusters/:id/backups/:backup_id/files', {
    onRequest: guard('viewer'),
    schema: {
      operationId: 'listBackupFiles',
      tags,
      security: securityFor('viewer'),
      summary: 'List one directory of a directory component inside a completed backup',
      description:
        'Names in code-point order, paged by name (`limit`, `cursor`). 404: no such backup, no such component in it, or `path` is not a directory in it; 409: the backup is not completed; 422: `path` is absolute, has `..`, `.` or empty segments, or `component` is not a directory component (or is omitted while the backup has several); 500 (`/problems/integrity-error`): the stored data failed its integrity check.',
      params: backupParams,
      querystring: listFilesQuery,
      response: { 200: json(listOf(fileEntrySchema), 'a page of the directory\'s entries, by name'), 409: notCompleted, 500: integrityError },
    },
    handler: async (req, reply) => answeringDamage(req, reply, () => service.list(tenantOf(req).tenantId, req.params.id, req.params.backup_id, req.query)),
  });
  app.get('/v1/clusters/:id/backups/:backup_id/components/:name/archive', {
    onRequest: guard('operator'),
    schema: {
      operationId: 'downloadComponentArchive',
      tags,
      security: securityFor('operator'),
      summary: 'Download a portable copy of one component of a completed backup',
      description:
        'A tar of the tree for a directory component, a `pg_dump` custom-format file for a postgres component, the RDB snapshot for a redis component, the dump\'s SQL for a mysql component; `Content-Disposition: attachment`. Every chunk is verified as it is sent. Problems found before the first byte are answered (404 no such backup or component, 409 not completed, 500 `/problems/integrity-error`); one found later aborts the transfer, so a client never receives a complete-looking file.',
      params: componentParams,
      response: { 200: archiveResponse, 409: notCompleted, 500: integrityError },
    },
    handler: async (req, reply) =>
      answeringDamage(req, reply, async () => {
        const a = await service.archive(tenantOf(req).tenantId, req.params.id, req.params.backup_id, req.params.name);
        // A stream is sent as is (no serializer); Fastify destroys the socket if it errors once begun.
        const raw = reply as unknown as FastifyReply;
        return raw.type(a.mediaType).header('content-disposition', `attachment; filename="${a.filename}"`).send(a.stream);
      }),
  });
}
