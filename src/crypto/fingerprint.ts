import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Db } from '../db/client.js';
import { createSecretBox } from './secrets.js';

const SETTING = 'encryption_key_fingerprint';
// An HMAC of a fixed label under the key: it identifies the key without revealing it, and is
// useless for anything else (no ciphertext of ours is an HMAC).
const LABEL = 'backup-service/encryption-key-fingerprint/v1';

export class KeyMismatch extends Error {}

export function keyFingerprint(key: Buffer): string {
  return 'hmac-sha256:' + createHmac('sha256', key).update(LABEL).digest('hex');
}

/**
 * Refuses a key other than the one the deployment's secrets were stored under. The first start
 * records the key's fingerprint; every later start (of any role, on any machine) compares. Before
 * anything is recorded (an upgrade), a stored secret, if any, must decrypt with the key.
 */
export async function checkKeyFingerprint(db: Db, key: Buffer): Promise<'recorded' | 'matched'> {
  const mine = keyFingerprint(key);
  const existing = await db.serviceSetting.findUnique({ where: { name: SETTING } });
  if (!existing) {
    await assertDecryptsStoredSecret(db, key);
    // Two first starts at once: one insert wins, and the other compares against it below.
    await db.serviceSetting.createMany({ data: [{ name: SETTING, value: mine }], skipDuplicates: true });
  }
  const recorded = existing ?? (await db.serviceSetting.findUniqueOrThrow({ where: { name: SETTING } }));
  if (!sameText(recorded.value, mine))
    throw new KeyMismatch('ENCRYPTION_KEY is not the key this deployment stored its secrets with (its fingerprint differs from the one recorded in service_settings); give every process the same key');
  return existing ? 'matched' : 'recorded';
}

function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

async function assertDecryptsStoredSecret(db: Db, key: Buffer): Promise<void> {
  const rows = await db.$queryRaw<{ secret: string }[]>`
    SELECT c->'config'->>'url_encrypted' AS secret
    FROM clusters, jsonb_array_elements(components::jsonb) AS c
    WHERE c->'config' ? 'url_encrypted'
    LIMIT 1`;
  const secret = rows[0]?.secret;
  if (!secret) return;
  try {
    createSecretBox(key).decrypt(secret);
  } catch {
    throw new KeyMismatch('ENCRYPTION_KEY does not decrypt the secrets already stored in the database; start with the key they were stored under');
  }
}
