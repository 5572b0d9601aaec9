import type { Runtime } from './runtime.js';
import { createApiKeyRepo } from './modules/api-keys/api-keys.repo.js';
import { createApiKeyService } from './modules/api-keys/api-keys.service.js';
import { createBackupRepo } from './modules/backups/backups.repo.js';
import { createBackupService } from './modules/backups/backups.service.js';
import { createClusterRepo } from './modules/clusters/clusters.repo.js';
import { createClusterService, scheduleFor } from './modules/clusters/clusters.service.js';
import { createPolicyRepo } from './modules/policies/policies.repo.js';
import { createPolicyService } from './modules/policies/policies.service.js';
import { createRetentionService } from './modules/retention/retention.service.js';
import { createRestoreService } from './modules/restores/restores.service.js';
import { createPitrService } from './modules/pitr/pitr.service.js';
import { createAuditService } from './modules/audit/audit.service.js';
import { createTenantRepo } from './modules/tenants/tenants.repo.js';
import { createTenantService } from './modules/tenants/tenants.service.js';
import { tenantRootOf } from './modules/tenants/tenant-folder.js';
import { createBackupFilesService } from './modules/backups/backups.files.js';
import { createUsageService } from './modules/usage/usage.service.js';
import { createApiClientRepo } from './modules/api-clients/api-clients.repo.js';
import { createApiClientService } from './modules/api-clients/api-clients.service.js';
import { createAccessTokens, deriveSigningKey } from './modules/oauth/access-tokens.js';
import { createOAuthService } from './modules/oauth/oauth.service.js';
import { createEventService } from './modules/events/events.service.js';
import { createWebhookService } from './modules/webhooks/webhooks.service.js';
import { createWebhookSender } from './modules/webhooks/sender.js';

/** The composition root of the use cases: each service gets exactly the dependencies it names. */
export function createServices(rt: Runtime) {
  const { db, now, queues, log } = rt;
  const repos = {
    apiKeys: createApiKeyRepo(db),
    apiClients: createApiClientRepo(db),
    policies: createPolicyRepo(db),
    clusters: createClusterRepo(db),
    backups: createBackupRepo(db),
    tenants: createTenantRepo(db),
  };
  const apiKeys = createApiKeyService({ db, repo: repos.apiKeys, now });
  const clusters = createClusterService({
    db,
    repo: repos.clusters,
    policies: repos.policies,
    queues,
    box: rt.box,
    tenantRootOf: tenantRootOf(db, rt.config.dataRoot),
    targets: rt.targets,
    urlGuard: rt.webhookUrls,
    hasSecondaryStore: rt.secondaryStore !== null,
    now,
    log,
  });
  const policies = createPolicyService({
    db,
    repo: repos.policies,
    now,
    hooks: {
      // A policy change moves its clusters' next slot and re-evaluates their retention.
      async afterChange(tenantId, policyId) {
        const policy = await repos.policies.find(db, tenantId, policyId);
        if (!policy) return;
        const affected = await db.cluster.findMany({ where: { tenantId, policyId, status: { not: 'deleting' } }, select: { id: true } });
        // Marked first, in one statement: a prune lost below (Redis down, a crash mid-loop) is made by the retention sweep.
        await db.cluster.updateMany({ where: { tenantId, policyId, status: { not: 'deleting' } }, data: { retentionDirty: true } });
        for (const c of affected) {
          await db.cluster.updateMany({ where: { id: c.id, tenantId }, data: { nextBackupAt: scheduleFor(policy, c.id, now()) } });
          await clusters.afterPolicyChange(tenantId, c.id);
        }
      },
    },
  });
  // Reading backups' contents (browse, export, partial restore) goes through the tenant's repository.
  const files = createBackupFilesService({ db, repo: rt.repo, backups: repos.backups, clusters: repos.clusters });
  const accessTokens = createAccessTokens({ key: deriveSigningKey(rt.config.encryptionKey), ttlSeconds: rt.config.oauthTokenTtlS, now });
  return {
    repos,
    apiKeys,
    apiClients: createApiClientService({ repo: repos.apiClients, now }),
    oauth: createOAuthService({ clients: repos.apiClients, tokens: accessTokens, now, log }),
    files,
    usage: createUsageService({ db }),
    policies,
    clusters,
    tenants: createTenantService({ db, repo: repos.tenants, apiKeys, policies, dataRoot: rt.config.dataRoot, now, log }),
    backups: createBackupService({ db, ledger: rt.ledger, repo: repos.backups, clusters: repos.clusters, queues, now, log }),
    retention: createRetentionService({ db }),
    restores: createRestoreService({ db, ledger: rt.ledger, clusters: repos.clusters, queues, now, log, files }),
    pitr: createPitrService({ db, ledger: rt.ledger, clusters: repos.clusters, box: rt.box, targets: rt.targets, queues, now, log }),
    audit: createAuditService({ db, log }),
    events: createEventService({ db }),
    webhooks: createWebhookService({ db, box: rt.box, urlGuard: rt.webhookUrls, sender: createWebhookSender({ urlGuard: rt.webhookUrls, timeoutMs: rt.config.webhooks.timeoutMs }), queues, settings: rt.config.webhooks, now, log }),
  };
}
export type Services = ReturnType<typeof createServices>;
