import type { Db } from '../db/client.js';
import type { ArtifactStore } from '../storage/types.js';
import { configKey } from './layout.js';
import { generateTenantKeys, masterKeyId, openObject, sealObject, unwrapTenantKeys, wrapTenantKeys } from './seal.js';
import { WrongKeyError, type TenantKeys } from './types.js';

/** The plaintext object at repos/<tenant>/config: enough, with ENCRYPTION_KEY, to open the repository from the store alone. */
export interface RepoConfig {
  format: 'bk-repo/v1';
  tenant_id: string;
  /** The tenant keys wrapped by ENCRYPTION_KEY (seal.ts wrapTenantKeys). */
  wrapped_keys: string;
  /** masterKeyId of the key that wrapped them. */
  key_id: string;
  /** base64 of sealObject(dataKey, 'tenant', JSON of TenantRecord). */
  tenant: string;
}

export interface TenantRecord {
  id: string;
  name: string;
  data_dir: string;
  created_at: string;
}

export function buildRepoConfig(tenant: TenantRecord, wrapped: string, keyId: string, keys: TenantKeys): RepoConfig {
  return {
    format: 'bk-repo/v1',
    tenant_id: tenant.id,
    wrapped_keys: wrapped,
    key_id: keyId,
    tenant: sealObject(keys.dataKey, 'tenant', Buffer.from(JSON.stringify(tenant))).toString('base64'),
  };
}

export function parseRepoConfig(bytes: Buffer): RepoConfig {
  const c = JSON.parse(bytes.toString('utf8')) as RepoConfig;
  if (c?.format !== 'bk-repo/v1' || typeof c.tenant_id !== 'string' || typeof c.wrapped_keys !== 'string' || typeof c.tenant !== 'string') throw new Error('not a repository config');
  return c;
}

export function openTenantRecord(config: RepoConfig, keys: TenantKeys): TenantRecord {
  return JSON.parse(openObject(keys.dataKey, 'tenant', Buffer.from(config.tenant, 'base64')).toString('utf8')) as TenantRecord;
}

export async function writeRepoConfig(store: ArtifactStore, config: RepoConfig): Promise<void> {
  const body = Buffer.from(JSON.stringify(config, null, 2));
  await store.putBuffer(configKey(config.tenant_id), body);
}

/**
 * Opens tenants' repositories: their keys, created on first use. The keys are random per tenant
 * and stored only wrapped by ENCRYPTION_KEY, in PostgreSQL and in every store's
 * repos/<tenant>/config (written before the first pack, so the store alone can be recovered).
 */
export function createRepositories(deps: { db: Db; masterKey: Buffer; stores: () => ArtifactStore[] }) {
  const cache = new Map<string, TenantKeys>();
  const configured = new Set<string>(); // tenant|store url: config object known to be written
  const keyId = masterKeyId(deps.masterKey);

  async function ensureConfig(tenantId: string, keys: TenantKeys, wrapped: string, wrappedKeyId: string): Promise<void> {
    const stores = deps.stores();
    const missing = stores.filter((s) => !configured.has(`${tenantId}|${s.url}`));
    if (missing.length === 0) return;
    const t = await deps.db.tenant.findUniqueOrThrow({ where: { id: tenantId } });
    const config = buildRepoConfig({ id: t.id, name: t.name, data_dir: t.dataDir, created_at: t.createdAt.toISOString() }, wrapped, wrappedKeyId, keys);
    for (const s of missing) {
      await writeRepoConfig(s, config);
      configured.add(`${tenantId}|${s.url}`);
    }
  }

  return {
    keyId,
    /** The tenant's keys; creates its repository on first use. WrongKeyError if ENCRYPTION_KEY does not unwrap them. */
    async keysOf(tenantId: string): Promise<TenantKeys> {
      let keys = cache.get(tenantId);
      if (keys) return keys;
      let row = await deps.db.repository.findUnique({ where: { tenantId } });
      if (!row) {
        const fresh = generateTenantKeys();
        await deps.db.repository.createMany({ data: [{ tenantId, wrappedKeys: wrapTenantKeys(fresh, deps.masterKey), keyId }], skipDuplicates: true });
        row = await deps.db.repository.findUniqueOrThrow({ where: { tenantId } }); // another process may have won
      }
      keys = unwrapTenantKeys(row.wrappedKeys, deps.masterKey);
      await ensureConfig(tenantId, keys, row.wrappedKeys, row.keyId);
      cache.set(tenantId, keys);
      return keys;
    },
    /** Asks for a GC run of the tenant's repository (deletions call it; the sweep picks it up). */
    async requestGc(tenantId: string, now = new Date()): Promise<void> {
      await deps.db.repository.updateMany({ where: { tenantId }, data: { gcRequestedAt: now } });
    },
  };
}
export type Repositories = ReturnType<typeof createRepositories>;

/**
 * Refuses an ENCRYPTION_KEY that does not unwrap the stored tenant keys (a one-line error, before
 * anything is written): checks one repository, the oldest.
 */
export async function assertUnwrapsStoredKeys(db: Db, masterKey: Buffer): Promise<void> {
  const row = await db.repository.findFirst({ orderBy: { createdAt: 'asc' } });
  if (!row) return;
  try {
    unwrapTenantKeys(row.wrappedKeys, masterKey);
  } catch (err) {
    if (err instanceof WrongKeyError) throw new WrongKeyError('ENCRYPTION_KEY does not unwrap the tenant keys stored in the repositories; start with the key they were wrapped with (or run `npm run rotate-key`)');
    throw err;
  }
}
