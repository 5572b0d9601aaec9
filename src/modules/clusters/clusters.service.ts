import { randomUUID } from 'node:crypto';
import type { Db, Tx } from '../../db/client.js';
import { onUniqueViolation } from '../../db/errors.js';
import type { SecretBox } from '../../crypto/secrets.js';
import type { TargetPolicy } from '../../components/index.js';
import { Conflict, Invalid, NotFound, type FieldProblem } from '../../errors.js';
import { iso } from '../../http/schemas.js';
import { page } from '../../lib/cursor.js';
import type { Queues } from '../../queue/queues.js';
import { nextRunAt } from '../../scheduling/index.js';
import type { PolicyRepo, PolicyRow } from '../policies/policies.repo.js';
import { policyValues } from '../policies/policies.service.js';
import type { EnvironmentName } from '../policies/policies.schemas.js';
import type { ClusterRepo, ClusterRow } from './clusters.repo.js';
import type { ComponentInput } from './clusters.schemas.js';
import { isContinuous, prepareComponents, presentComponent, type StoredComponent } from './components.js';
import type { TenantRootOf } from '../tenants/tenant-folder.js';
import type { UrlGuard } from '../../net/url-guard.js';
import { dropClusterStreams, syncStreams } from '../pitr/wal-streams.js';
import { dropClusterSlots, ensureClusterSlots } from '../pitr/slots.js';
import { applyHooks, checkHooks, newHooksSecret, presentHooks, unpairedHooks, type HookConfig, type HookName } from '../hooks/hooks.js';

type BackupLocationApi = 'same-region' | 'dual-region';
const toDbLocation = (l: BackupLocationApi) => (l === 'dual-region' ? 'dual_region' : 'same_region') as 'dual_region' | 'same_region';
const toApiLocation = (l: string): BackupLocationApi => (l === 'dual_region' ? 'dual-region' : 'same-region');

export function presentCluster(c: ClusterRow) {
  return {
    id: c.id,
    name: c.name,
    environment: c.environment,
    region: c.region,
    backup_location: toApiLocation(c.backupLocation),
    policy_id: c.policyId!,
    deletion_protection: c.deletionProtection,
    components: (c.components as StoredComponent[]).map(presentComponent),
    hooks: presentHooks(c.hooks),
    status: c.status,
    next_backup_at: iso(c.nextBackupAt),
    last_skipped_at: iso(c.lastSkippedAt),
    created_at: iso(c.createdAt),
  };
}

export interface ClusterInput {
  name: string;
  environment: 'production' | 'staging' | 'development';
  region: string;
  backup_location: BackupLocationApi;
  policy_id?: string | null | undefined;
  deletion_protection: boolean;
  components: ComponentInput[];
  hooks?: Partial<Record<HookName, HookConfig | null>> | undefined;
}

export interface ClusterServiceDeps {
  db: Db;
  repo: ClusterRepo;
  policies: PolicyRepo;
  queues: Pick<Queues, 'add'>;
  box: SecretBox;
  /** The tenant's folder, where its directory components must resolve (tenant-folder.ts). */
  tenantRootOf: TenantRootOf;
  targets: TargetPolicy;
  /** The SSRF guard hook URLs pass at save (and again at every call). */
  urlGuard: UrlGuard;
  hasSecondaryStore: boolean;
  now: () => Date;
  log: { warn(obj: object, msg: string): void };
}

export function scheduleFor(policy: PolicyRow, clusterId: string, after: Date): Date | null {
  return nextRunAt(policyValues(policy), clusterId, after);
}

export function createClusterService(deps: ClusterServiceDeps) {
  const { db, repo, now } = deps;
  const slotDeps = { db, box: deps.box, targets: deps.targets, queues: deps.queues, log: deps.log };

  /** The policy named, or (none named) the default of the cluster's environment, which the cluster then follows. */
  async function resolvePolicy(tx: Tx | Db, tenantId: string, policyId: string | null | undefined, environment: EnvironmentName, errors: FieldProblem[]) {
    const policy = policyId ? await deps.policies.find(tx, tenantId, policyId) : await deps.policies.findDefault(tx, tenantId, environment);
    if (!policy) errors.push({ path: 'body.policy_id', message: 'no such policy' });
    return policy;
  }

  function checkLocation(loc: BackupLocationApi | undefined, errors: FieldProblem[]) {
    if (loc === 'dual-region' && !deps.hasSecondaryStore)
      errors.push({ path: 'body.backup_location', message: 'dual-region needs a secondary store (STORAGE_SECONDARY_URL), which this service does not have' });
  }

  const componentContext = (tenantId: string) => ({ tenantRoot: () => deps.tenantRootOf(tenantId), box: deps.box, targets: deps.targets });

  const uniqueName = <T>(fn: () => Promise<T>) => onUniqueViolation(fn, () => new Conflict('a cluster with this name already exists'));

  return {
    async create(tenantId: string, input: ClusterInput) {
      const errors: FieldProblem[] = [];
      const { stored, errors: componentErrors } = await prepareComponents(input.components, componentContext(tenantId));
      errors.push(...componentErrors);
      checkLocation(input.backup_location, errors);
      const policy = await resolvePolicy(db, tenantId, input.policy_id, input.environment, errors);
      if (input.hooks) errors.push(...(await checkHooks(input.hooks, deps.urlGuard)));
      const hooks = input.hooks ? applyHooks({}, input.hooks) : null;
      if (hooks) errors.push(...unpairedHooks(hooks));
      if (errors.length || !policy) throw new Invalid('invalid cluster', errors);
      const secret = hooks && Object.keys(hooks).length > 0 ? newHooksSecret(deps.box) : null;
      const id = randomUUID();
      const t = now();
      const row = await uniqueName(() =>
        db.$transaction(async (tx) => {
          const created = await repo.create(tx, {
          id,
          tenantId,
          name: input.name,
          environment: input.environment,
          region: input.region,
          backupLocation: toDbLocation(input.backup_location),
          policyId: policy.id,
          policyFollowsEnvironment: !input.policy_id,
          deletionProtection: input.deletion_protection,
          components: stored,
          ...(hooks && { hooks: hooks as object }),
          ...(secret && { hooksSecretEnc: secret.stored }),
          nextBackupAt: scheduleFor(policy, id, t),
          createdAt: t,
          updatedAt: t,
          });
          await syncStreams(tx, deps.box, { tenantId, clusterId: id, components: stored });
          return created;
        }),
      );
      if (stored.some(isContinuous)) await ensureClusterSlots(slotDeps, id);
      return { ...presentCluster(row), ...(secret && { hooks_secret: secret.secret }) };
    },
    async get(tenantId: string, id: string) {
      const c = await repo.find(db, tenantId, id);
      if (!c) throw new NotFound('cluster');
      return presentCluster(c);
    },
    async list(tenantId: string, q: { limit: number; cursor?: string | undefined }) {
      const { items, nextCursor } = page(await repo.list(tenantId, q), q.limit);
      return { items: items.map(presentCluster), next_cursor: nextCursor };
    },
    async update(tenantId: string, id: string, patch: Partial<ClusterInput>) {
      const errors: FieldProblem[] = [];
      const prepared = patch.components ? await prepareComponents(patch.components, componentContext(tenantId)) : null;
      if (prepared) errors.push(...prepared.errors);
      checkLocation(patch.backup_location, errors);
      if (patch.hooks) errors.push(...(await checkHooks(patch.hooks, deps.urlGuard)));
      let secret: ReturnType<typeof newHooksSecret> | null = null;
      const row = await uniqueName(() =>
        db.$transaction(async (tx) => {
          if (!(await repo.lock(tx, tenantId, id))) throw new NotFound('cluster');
          const current = (await repo.find(tx, tenantId, id))!;
          if (current.status === 'deleting') throw new Conflict('the cluster is being deleted');
          // policy_id null: follow the environment's default again; a new environment moves a
          // cluster that follows its environment's default to the new environment's default.
          const environment = patch.environment ?? current.environment;
          const follows = patch.policy_id === undefined ? current.policyFollowsEnvironment : patch.policy_id === null;
          const wanted = follows ? null : (patch.policy_id ?? current.policyId);
          const policy = follows || wanted !== current.policyId ? await resolvePolicy(tx, tenantId, wanted, environment, errors) : null;
          const policyChanged = policy !== null && policy.id !== current.policyId;
          const hooks = patch.hooks ? applyHooks(current.hooks, patch.hooks) : null;
          if (hooks) errors.push(...unpairedHooks(hooks));
          if (errors.length) throw new Invalid('invalid cluster', errors);
          // The first hook brings the secret calls are signed with (shown in this answer only).
          secret = hooks && Object.keys(hooks).length > 0 && !current.hooksSecretEnc ? newHooksSecret(deps.box) : null;
          if (prepared) await syncStreams(tx, deps.box, { tenantId, clusterId: id, components: prepared.stored });
          return repo.update(tx, tenantId, id, {
            ...(patch.name !== undefined && { name: patch.name }),
            ...(patch.environment !== undefined && { environment: patch.environment }),
            ...(patch.region !== undefined && { region: patch.region }),
            ...(patch.backup_location !== undefined && { backupLocation: toDbLocation(patch.backup_location) }),
            ...(patch.deletion_protection !== undefined && { deletionProtection: patch.deletion_protection }),
            ...(prepared && { components: prepared.stored }),
            ...(hooks && { hooks: hooks as object }),
            ...(secret && { hooksSecretEnc: secret.stored }),
            // A new policy re-evaluates retention: the marker commits with the change, the prune follows it.
            ...(follows !== current.policyFollowsEnvironment && { policyFollowsEnvironment: follows }),
            ...(policyChanged && { policyId: policy.id, nextBackupAt: scheduleFor(policy, id, now()), retentionDirty: true }),
            updatedAt: now(),
          });
        }),
      );
      if (prepared) {
        // Slots of removed or re-pointed components go now, new ones are made (SPEC section 13).
        await dropClusterSlots(slotDeps, id);
        await ensureClusterSlots(slotDeps, id);
      }
      if (patch.policy_id !== undefined || patch.environment !== undefined) await this.afterPolicyChange(tenantId, id);
      const given = secret as ReturnType<typeof newHooksSecret> | null;
      return { ...presentCluster(row), ...(given && { hooks_secret: given.secret }) };
    },
    /** Deletion is asynchronous: the cluster turns `deleting`, a job removes every artifact, then the rows. */
    async delete(tenantId: string, id: string) {
      const row = await db.$transaction(async (tx) => {
        if (!(await repo.lock(tx, tenantId, id))) throw new NotFound('cluster');
        const current = (await repo.find(tx, tenantId, id))!;
        if (current.deletionProtection) throw new Conflict('deletion protection is on for this cluster; turn it off first (PATCH deletion_protection: false)');
        if (current.status === 'deleting') return current;
        await dropClusterStreams(tx, id);
        return repo.update(tx, tenantId, id, { status: 'deleting', nextBackupAt: null, updatedAt: now() });
      });
      await dropClusterSlots(slotDeps, id);
      await deps.queues
        .add('maintenance', 'delete-cluster', { tenant_id: tenantId, cluster_id: id }, id)
        .catch((err: unknown) => deps.log.warn({ err, cluster_id: id }, 'could not enqueue cluster deletion; the reconciler will'));
      return presentCluster(row);
    },
    /** After a policy change the retention of the cluster is re-evaluated. */
    async afterPolicyChange(tenantId: string, clusterId: string) {
      await deps.queues
        .add('maintenance', 'prune', { tenant_id: tenantId, cluster_id: clusterId }, `${clusterId}-${Date.now()}`)
        .catch((err: unknown) => deps.log.warn({ err, cluster_id: clusterId }, 'could not enqueue prune; the periodic sweep will'));
    },
  };
}
export type ClusterService = ReturnType<typeof createClusterService>;
