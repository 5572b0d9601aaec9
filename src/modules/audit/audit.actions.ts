/** Route (method + pattern) -> audit action and the kind of resource it acts on. */
export const AUDITED: Record<string, { action: string; target: string }> = {
  'POST /v1/tenants': { action: 'tenant.create', target: 'tenant' },
  'POST /v1/api-keys': { action: 'api_key.create', target: 'api_key' },
  'DELETE /v1/api-keys/:id': { action: 'api_key.revoke', target: 'api_key' },
  'POST /v1/api-clients': { action: 'api_client.create', target: 'api_client' },
  'DELETE /v1/api-clients/:id': { action: 'api_client.delete', target: 'api_client' },
  'POST /v1/policies': { action: 'policy.create', target: 'policy' },
  'PATCH /v1/policies/:id': { action: 'policy.update', target: 'policy' },
  'DELETE /v1/policies/:id': { action: 'policy.delete', target: 'policy' },
  'PATCH /v1/data-retention': { action: 'data_retention.update', target: 'policy' },
  'POST /v1/clusters': { action: 'cluster.create', target: 'cluster' },
  'PATCH /v1/clusters/:id': { action: 'cluster.update', target: 'cluster' },
  'DELETE /v1/clusters/:id': { action: 'cluster.delete', target: 'cluster' },
  'POST /v1/clusters/:id/backups': { action: 'backup.create', target: 'backup' },
  'DELETE /v1/clusters/:id/backups/:backup_id': { action: 'backup.delete', target: 'backup' },
  'POST /v1/clusters/:id/backups/:backup_id/verify': { action: 'backup.verify', target: 'backup' },
  'POST /v1/clusters/:id/backups/:backup_id/restore': { action: 'restore.create', target: 'restore' },
  'POST /v1/webhooks': { action: 'webhook.create', target: 'webhook' },
  'PATCH /v1/webhooks/:id': { action: 'webhook.update', target: 'webhook' },
  'DELETE /v1/webhooks/:id': { action: 'webhook.delete', target: 'webhook' },
  'POST /v1/webhooks/:id/test': { action: 'webhook.test', target: 'webhook' },
};
/** Actions the service itself records, with no request behind them (actor `platform`). */
export const SYSTEM_ACTIONS = ['webhook.disable'] as const;
export const AUDIT_ACTIONS = [...new Set([...Object.values(AUDITED).map((a) => a.action), ...SYSTEM_ACTIONS])].sort();
