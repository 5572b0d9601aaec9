import type { Db } from '../db/client.js';
import type { ArtifactStore } from '../storage/types.js';
import { createSecretBox } from '../crypto/secrets.js';
import { keyFingerprint } from '../crypto/fingerprint.js';
import { buildRepoConfig, writeRepoConfig } from './repository.js';
import { masterKeyId, unwrapTenantKeys, wrapTenantKeys } from './seal.js';
import { WrongKeyError, type TenantKeys } from './types.js';

/**
 * Re-wraps every tenant's repository keys under a new ENCRYPTION_KEY and re-encrypts the
 * components' secrets and the signing secrets of webhooks and hooks, in one transaction, then rewrites each repository's config in the stores
 * and records the new key's fingerprint. No data is rewritten (the data keys do not change).
 * Safe to run again after an interruption: values already under the new key are recognised.
 */
export async function rotateKey(o: { db: Db; stores: ArtifactStore[]; oldKey: Buffer; newKey: Buffer; log?: (m: string) => void }): Promise<{ repositories: number; secrets: number }> {
  const log = o.log ?? (() => {});
  const newId = masterKeyId(o.newKey);
  const oldBox = createSecretBox(o.oldKey);
  const newBox = createSecretBox(o.newKey);
  const opened = new Map<string, { keys: TenantKeys; wrapped: string }>();
  let secrets = 0;
  await o.db.$transaction(
    async (tx) => {
      for (const r of await tx.repository.findMany()) {
        let keys: TenantKeys;
        try {
          keys = unwrapTenantKeys(r.wrappedKeys, o.oldKey);
        } catch (err) {
          if (!(err instanceof WrongKeyError)) throw err;
          keys = unwrapTenantKeys(r.wrappedKeys, o.newKey); // rotated by an interrupted run already
          opened.set(r.tenantId, { keys, wrapped: r.wrappedKeys });
          continue;
        }
        const wrapped = wrapTenantKeys(keys, o.newKey);
        await tx.repository.update({ where: { tenantId: r.tenantId }, data: { wrappedKeys: wrapped, keyId: newId } });
        opened.set(r.tenantId, { keys, wrapped });
      }
      for (const c of await tx.cluster.findMany({ select: { id: true, components: true } })) {
        let changed = false;
        const components = (c.components as { config?: Record<string, unknown> }[]).map((comp) => {
          const cfg = { ...(comp.config ?? {}) };
          for (const [k, v] of Object.entries(cfg)) {
            if (!k.endsWith('_encrypted') || typeof v !== 'string') continue;
            let plain: string;
            try {
              plain = oldBox.decrypt(v);
            } catch {
              newBox.decrypt(v); // already under the new key, or it throws: stop
              continue;
            }
            cfg[k] = newBox.encrypt(plain);
            changed = true;
            secrets++;
          }
          return { ...comp, config: cfg };
        });
        if (changed) await tx.cluster.update({ where: { id: c.id }, data: { components: components as never } });
      }
      // The signing secrets of webhooks and of clusters' hooks are kept encrypted the same way.
      const reencrypt = (v: string): string | null => {
        let plain: string;
        try {
          plain = oldBox.decrypt(v);
        } catch {
          newBox.decrypt(v); // already under the new key, or it throws: stop
          return null;
        }
        secrets++;
        return newBox.encrypt(plain);
      };
      for (const w of await tx.webhook.findMany({ select: { id: true, secretEnc: true } })) {
        const v = reencrypt(w.secretEnc);
        if (v) await tx.webhook.update({ where: { id: w.id }, data: { secretEnc: v } });
      }
      for (const c of await tx.cluster.findMany({ where: { hooksSecretEnc: { not: null } }, select: { id: true, hooksSecretEnc: true } })) {
        const v = reencrypt(c.hooksSecretEnc!);
        if (v) await tx.cluster.update({ where: { id: c.id }, data: { hooksSecretEnc: v } });
      }
      await tx.serviceSetting.upsert({ where: { name: 'encryption_key_fingerprint' }, create: { name: 'encryption_key_fingerprint', value: keyFingerprint(o.newKey) }, update: { value: keyFingerprint(o.newKey) } });
    },
    { timeout: 600_000 },
  );
  for (const [tenantId, { keys, wrapped }] of opened) {
    const t = await o.db.tenant.findUniqueOrThrow({ where: { id: tenantId } });
    const config = buildRepoConfig({ id: t.id, name: t.name, data_dir: t.dataDir, created_at: t.createdAt.toISOString() }, wrapped, newId, keys);
    for (const s of o.stores) await writeRepoConfig(s, config);
    log(`re-wrapped the keys of tenant ${t.name}`);
  }
  return { repositories: opened.size, secrets };
}
