/** Creates the database if missing and applies pending migrations (what `npm start` does first). */
import { loadConfig } from '../src/config.js';
import { ensureDatabase, migrate } from '../src/db/migrate.js';

const config = loadConfig();
await ensureDatabase(config.databaseUrl);
const applied = await migrate(config.databaseUrl);
console.log(applied.length ? `applied: ${applied.join(', ')}` : 'database is up to date');
