import type { App } from '../../http/types.js';
import type { Guard } from '../../http/auth.js';
import { resourceRoutes } from '../../http/resource-routes.js';
import { clusterSchema, createClusterBody, patchClusterBody } from './clusters.schemas.js';
import type { ClusterService } from './clusters.service.js';

export function clusterRoutes(app: App, deps: { guard: Guard; service: ClusterService }) {
  resourceRoutes(app, {
    path: '/v1/clusters',
    tag: 'clusters',
    noun: 'cluster',
    item: clusterSchema,
    createBody: createClusterBody,
    patchBody: patchClusterBody,
    guard: deps.guard,
    service: deps.service,
    summaries: { delete: 'Delete a cluster with all its backups and artifacts (409 with deletion protection)' },
    conflicts: {
      create: 'a cluster with this name already exists in the tenant',
      update: 'another cluster has this name, or the cluster is being deleted',
      delete: 'deletion protection is on (PATCH deletion_protection: false first)',
    },
    asyncDelete: true,
  });
}
