/**
 * Disaster recovery: rebuilds tenants, repositories, clusters, policies and completed backups in
 * PostgreSQL from the primary store and ENCRYPTION_KEY (docs/repository.md). Run against an
 * empty database (it is created and migrated if missing); rows that exist are left alone, so it
 * can be run again. Prints one new admin API key per recovered tenant.
 */
import { loadConfig } from '../src/config.js';
import { createDb } from '../src/db/client.js';
import { ensureDatabase, migrate } from '../src/db/migrate.js';
import { recoverFromStore } from '../src/repo/recover.js';
import { sharedSealPool } from '../src/repo/seal-pool.js';
import { WrongKeyError } from '../src/repo/types.js';
import { createStore } from '../src/storage/index.js';

const config = loadConfig();
await ensureDatabase(config.databaseUrl);
await migrate(config.databaseUrl);
const db = createDb(config.databaseUrl, { poolSize: 4, connectTimeoutMs: config.dbConnectTimeoutMs });
const seal = sharedSealPool();
try {
  const report = await recoverFromStore({ db, store: createStore(config.storageUrl), masterKey: config.encryptionKey, seal, log: (m) => console.error(`recovering ${m}`) });
  console.log(JSON.stringify(report, null, 2));
} catch (err) {
  console.error(err instanceof WrongKeyError ? `recover: ENCRYPTION_KEY does not unwrap the keys in the store (${err.message})` : `recover failed: ${(err as Error).message}`);
  process.exitCode = 1;
} finally {
  await seal.close();
  await db.$disconnect();
}
