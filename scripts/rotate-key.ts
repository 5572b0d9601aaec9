/**
 * `npm run rotate-key`: re-wraps every tenant's repository keys (and re-encrypts the components'
 * secrets) under NEW_ENCRYPTION_KEY; ENCRYPTION_KEY is the current key. No backup data is
 * rewritten. Stop the service first, then start it with the new key as ENCRYPTION_KEY.
 */
import { loadConfig } from '../src/config.js';
import { createDb } from '../src/db/client.js';
import { rotateKey } from '../src/repo/rotate.js';
import { createStore } from '../src/storage/index.js';

const config = loadConfig();
const raw = process.env.NEW_ENCRYPTION_KEY ?? '';
const newKey = Buffer.from(raw, 'base64');
if (newKey.length !== 32) {
  console.error('rotate-key: NEW_ENCRYPTION_KEY must be 32 bytes, base64-encoded (e.g. `openssl rand -base64 32`)');
  process.exit(2);
}
if (newKey.equals(config.encryptionKey)) {
  console.error('rotate-key: NEW_ENCRYPTION_KEY is the current ENCRYPTION_KEY');
  process.exit(2);
}
const db = createDb(config.databaseUrl, { poolSize: 2, connectTimeoutMs: config.dbConnectTimeoutMs });
try {
  const stores = [createStore(config.storageUrl), ...(config.storageSecondaryUrl ? [createStore(config.storageSecondaryUrl)] : [])];
  const r = await rotateKey({ db, stores, oldKey: config.encryptionKey, newKey, log: (m) => console.error(m) });
  console.log(`rotated: ${r.repositories} repositories re-wrapped, ${r.secrets} secrets re-encrypted; start the service with ENCRYPTION_KEY=<the new key>`);
} catch (err) {
  console.error(`rotate-key failed: ${(err as Error).message}`);
  process.exitCode = 1;
} finally {
  await db.$disconnect();
}
