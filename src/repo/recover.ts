import { randomUUID } from 'node:crypto';
import type { Db } from '../db/client.js';
import type { ArtifactStore } from '../storage/types.js';
import { readWhole } from '../storage/index.js';
import { generateToken } from '../crypto/tokens.js';
import { ENVIRONMENT_DEFAULTS, ENVIRONMENTS, type EnvironmentName } from '../modules/policies/policies.schemas.js';
import { createSecretBox } from '../crypto/secrets.js';
import { encryptComponent, type RuntimeComponent } from '../modules/clusters/components.js';
import { createPolicyRepo } from '../modules/policies/policies.repo.js';
import { scheduleFor } from '../modules/clusters/clusters.service.js';
import { packIdOf, packsPrefix, REPOS_PREFIX, snapshotsPrefix } from './layout.js';
import { decodeManifest, decodeStreamManifest } from './manifest.js';
import { PACK_FOOTER_BYTES, parsePackFooter, packTrailerRange, readPackTrailer } from './pack.js';
import { createChunkSource } from './reader.js';
import { openTenantRecord, parseRepoConfig } from './repository.js';
import { unwrapTenantKeys } from './seal.js';
import type { SealPool } from './seal-pool.js';
import { openSnapshot, type SnapshotRecord } from './snapshot.js';
import type { TenantKeys } from './types.js';

export interface RecoverReport {
  tenants: { id: string; name: string; backups: number; clusters: number; packs: number; admin_token: string | null }[];
}

/**
 * Rebuilds the service's database from a store and ENCRYPTION_KEY (docs/repository.md,
 * "Disaster recovery"): tenants, their repositories, packs and chunk locations (from pack
 * trailers), and clusters, policies, completed backups, artifacts and chunk references (from the
 * snapshot records and their manifests). Rows that already exist are left as they are, so it can
 * be run again after an interruption. Each recovered tenant gets a new admin API key (keys are
 * not kept in the store); it is in the report, once.
 */
export async function recoverFromStore(o: { db: Db; store: ArtifactStore; masterKey: Buffer; seal: SealPool; now?: () => Date; log?: (msg: string) => void }): Promise<RecoverReport> {
  const now = o.now ?? (() => new Date());
  const log = o.log ?? (() => {});
  const report: RecoverReport = { tenants: [] };
  const configs: string[] = [];
  for await (const obj of o.store.list(REPOS_PREFIX)) if (/^repos\/[0-9a-f-]{36}\/config$/.test(obj.key)) configs.push(obj.key);
  for (const key of configs.sort()) {
    const config = parseRepoConfig(await readWhole(o.store, key));
    const keys = unwrapTenantKeys(config.wrapped_keys, o.masterKey); // WrongKeyError stops it all
    const tenant = openTenantRecord(config, keys);
    log(`tenant ${tenant.name} (${tenant.id})`);
    const existing = await o.db.tenant.findUnique({ where: { id: tenant.id } });
    if (!existing) await o.db.tenant.create({ data: { id: tenant.id, name: tenant.name, dataDir: tenant.data_dir, createdAt: new Date(tenant.created_at) } });
    await o.db.repository.createMany({ data: [{ tenantId: tenant.id, wrappedKeys: config.wrapped_keys, keyId: config.key_id }], skipDuplicates: true });
    const packs = await recoverPacks(o, tenant.id, keys);
    const { backups, clusters } = await recoverSnapshots(o, tenant.id, keys, now());
    await ensureEnvironmentDefaults(o.db, tenant.id, now());
    let token: string | null = null;
    if (!existing) {
      const t = generateToken();
      await o.db.apiKey.create({ data: { id: randomUUID(), tenantId: tenant.id, name: 'recovered admin key', role: 'admin', prefix: t.prefix, tokenHash: t.hash } });
      token = t.token;
    }
    report.tenants.push({ id: tenant.id, name: tenant.name, backups, clusters, packs, admin_token: token });
  }
  return report;
}

async function recoverPacks(o: { db: Db; store: ArtifactStore }, tenantId: string, keys: TenantKeys): Promise<number> {
  let n = 0;
  for await (const obj of o.store.list(packsPrefix(tenantId))) {
    const id = packIdOf(tenantId, obj.key);
    if (!id) continue;
    if (await o.db.pack.findUnique({ where: { id } })) {
      n++;
      continue;
    }
    const tailLen = Math.min(obj.bytes, 64 * 1024);
    let tail = await o.store.getRange(obj.key, obj.bytes - tailLen, obj.bytes);
    const range = packTrailerRange(obj.bytes, parsePackFooter(tail.subarray(tail.length - PACK_FOOTER_BYTES)));
    if (range.start < obj.bytes - tailLen) tail = await o.store.getRange(obj.key, range.start, obj.bytes);
    const entries = readPackTrailer(keys.dataKey, tail, obj.bytes);
    await o.db.$transaction(async (tx) => {
      await tx.pack.create({ data: { id, tenantId, bytes: BigInt(obj.bytes), chunkCount: entries.length, status: 'live', createdAt: obj.modifiedAt } });
      await tx.chunk.createMany({
        data: entries.map((e) => ({ tenantId, id: e.id, packId: id, packOffset: e.offset, length: e.length, rawLength: e.rawLength ?? -1 })),
        skipDuplicates: true,
      });
    });
    n++;
  }
  return n;
}

async function recoverSnapshots(o: { db: Db; store: ArtifactStore; seal: SealPool; masterKey: Buffer }, tenantId: string, keys: TenantKeys, now: Date): Promise<{ backups: number; clusters: number }> {
  const records: SnapshotRecord[] = [];
  for await (const obj of o.store.list(snapshotsPrefix(tenantId))) {
    const backupId = obj.key.slice(snapshotsPrefix(tenantId).length);
    records.push(openSnapshot(keys, backupId, await o.store.getRange(obj.key, 0, obj.bytes)));
  }
  // Oldest first: each cluster ends up as its newest snapshot describes it.
  records.sort((a, b) => a.backup.completed_at.localeCompare(b.backup.completed_at));
  const source = createChunkSource({ pool: o.db.$pool, primary: o.store, secondary: null, seal: o.seal, keys, tenantId });
  const clusters = new Set<string>();
  const box = createSecretBox(o.masterKey);
  for (const r of records) {
    const c = r.cluster;
    let policyId: string | null = null;
    if (c.policy) {
      const p = c.policy;
      const byId = await o.db.policy.findUnique({ where: { id: p.id } });
      if (!byId) {
        const clash = await o.db.policy.findFirst({ where: { tenantId, name: p.name } });
        await o.db.policy.create({
          data: {
            id: p.id,
            tenantId,
            name: clash ? `${p.name} (recovered ${p.id.slice(0, 8)})` : p.name,
            ...(await recoveredDefault(o.db, tenantId, p, c.environment)),
            timezone: p.timezone,
            schedule: p.schedule as never,
            maxBackups: p.max_backups,
            manualCount: p.manual_count,
            manualRateLimit: p.manual_rate_limit,
            failedCount: p.failed_count,
            scheduledLive: p.scheduled_live ?? true,
            recoveryWindow: p.recovery_window ?? null,
          },
        });
      }
      policyId = p.id;
    }
    const policy = policyId ? await o.db.policy.findUniqueOrThrow({ where: { id: policyId } }) : null;
    const data = {
      name: c.name,
      environment: c.environment as never,
      region: c.region,
      backupLocation: c.backup_location === 'dual-region' || c.backup_location === 'dual_region' ? ('dual_region' as const) : ('same_region' as const),
      deletionProtection: c.deletion_protection,
      components: (c.components as RuntimeComponent[]).map((x) => encryptComponent(x, box)) as never,
      policyId,
      policyFollowsEnvironment: policy !== null && policy.defaultFor === c.environment,
      nextBackupAt: policy ? scheduleFor(policy, c.id, now) : null,
    };
    const had = await o.db.cluster.findUnique({ where: { id: c.id } });
    if (had) await o.db.cluster.update({ where: { id: c.id }, data });
    else await o.db.cluster.create({ data: { id: c.id, tenantId, createdAt: new Date(c.created_at), ...data } });
    clusters.add(c.id);
    if (await o.db.backup.findUnique({ where: { id: r.backup.id } })) continue;
    const b = r.backup;
    await o.db.backup.create({
      data: {
        id: b.id,
        tenantId,
        clusterId: c.id,
        trigger: b.trigger,
        status: 'completed',
        createdAt: new Date(b.created_at),
        startedAt: b.started_at ? new Date(b.started_at) : null,
        completedAt: new Date(b.completed_at),
        sizeBytes: BigInt(b.size_bytes),
        storedBytes: BigInt(b.stored_bytes),
        bytesDone: BigInt(b.size_bytes),
        components: r.components.map((x) => ({ name: x.name, status: 'completed' })),
        artifacts: {
          create: r.components.map((x) => ({
            id: randomUUID(),
            component: x.name,
            type: x.type,
            key: `${snapshotsPrefix(tenantId)}${b.id}`,
            bytes: BigInt(x.bytes),
            storedBytes: BigInt(x.stored_bytes),
            sha256: x.sha256,
            manifest: x.manifest as never,
            locations: [{ store: 'primary', url: o.store.locationOf(`${snapshotsPrefix(tenantId)}${b.id}`), status: 'present' }],
          })),
        },
      },
    });
    // References: the manifests' own chunks and every chunk they name.
    const ids = new Set<string>();
    for (const x of r.components) {
      for (const id of x.manifest.chunks) ids.add(id);
      const bytes = source.read(x.manifest.chunks);
      if (x.type === 'directory') {
        for await (const e of decodeManifest(bytes)) for (const id of e.chunks ?? []) ids.add(id);
      } else {
        for (const id of (await decodeStreamManifest(bytes)).chunks) ids.add(id);
      }
    }
    const all = [...ids];
    for (let i = 0; i < all.length; i += 5000) {
      await o.db.backupChunk.createMany({ data: all.slice(i, i + 5000).map((chunkId) => ({ backupId: b.id, tenantId, chunkId })), skipDuplicates: true });
    }
  }
  // Usage attribution: a chunk belongs to the cluster of the oldest backup that references it.
  await o.db.$executeRaw`
    UPDATE chunks c SET cluster_id = (
      SELECT b.cluster_id FROM backup_chunks r JOIN backups b ON b.id = r.backup_id
      WHERE r.tenant_id = c.tenant_id AND r.chunk_id = c.id ORDER BY b.created_at LIMIT 1)
    WHERE c.tenant_id = ${tenantId}::uuid AND c.cluster_id IS NULL`;
  return { backups: records.length, clusters: clusters.size };
}

/**
 * A recovered default policy is its environment's default again, unless that environment has one
 * already (records older than environment types name none: the cluster's environment is taken).
 */
async function recoveredDefault(db: Db, tenantId: string, p: { is_default: boolean; environment?: string | null }, clusterEnvironment: string) {
  if (!p.is_default) return { isDefault: false, defaultFor: null };
  const env = (ENVIRONMENTS as readonly string[]).includes(p.environment ?? '') ? (p.environment as EnvironmentName) : (clusterEnvironment as EnvironmentName);
  if (!(ENVIRONMENTS as readonly string[]).includes(env) || (await db.policy.findFirst({ where: { tenantId, defaultFor: env } }))) return { isDefault: false, defaultFor: null };
  return { isDefault: true, defaultFor: env };
}

/** Every environment type gets its default policy back (SPEC section 11); the recovered ones are kept. */
async function ensureEnvironmentDefaults(db: Db, tenantId: string, now: Date): Promise<void> {
  const repo = createPolicyRepo(db);
  for (const env of ENVIRONMENTS) {
    if (await repo.findDefault(db, tenantId, env)) continue;
    const wanted = `${env} default`;
    const named = await db.policy.findFirst({ where: { tenantId, name: wanted } });
    await repo.create(db, tenantId, { name: named ? `${wanted} (recovered)` : wanted, defaultFor: env, ...structuredClone(ENVIRONMENT_DEFAULTS[env]), now });
  }
  // A recovered cluster whose record named no policy follows its environment's default.
  for (const c of await db.cluster.findMany({ where: { tenantId, policyId: null }, select: { id: true, environment: true } })) {
    const policy = (await repo.findDefault(db, tenantId, c.environment))!;
    await db.cluster.update({ where: { id: c.id }, data: { policyId: policy.id, policyFollowsEnvironment: true, nextBackupAt: scheduleFor(policy, c.id, now) } });
  }
}
