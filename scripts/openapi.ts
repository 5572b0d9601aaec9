/**
 * Writes openapi/openapi.json from the zod route schemas, or with --check fails when the
 * committed document differs from what the code generates. Touches no database or Redis.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { loadConfig } from '../src/config.js';
import { createRuntime } from '../src/runtime.js';
import { createApiApp } from '../src/roles/api.js';

const target = fileURLToPath(new URL('../openapi/openapi.json', import.meta.url));

export async function generateOpenApi(): Promise<string> {
  const config = loadConfig({ ENCRYPTION_KEY: randomBytes(32).toString('base64'), STORAGE_URL: 'file:///tmp/openapi-unused', REDIS_URL: 'redis://127.0.0.1:1' }, '/tmp');
  const rt = createRuntime(config, pino({ level: 'silent' }));
  rt.redis.disconnect();
  const app = await createApiApp(rt, { logger: false });
  await app.ready();
  const doc = JSON.stringify(app.swagger(), null, 2) + '\n';
  await app.close();
  await rt.close();
  return doc;
}

async function main() {
  const doc = await generateOpenApi();
  if (process.argv.includes('--check')) {
    const committed = await readFile(target, 'utf8').catch(() => '');
    if (committed !== doc) {
      console.error('openapi/openapi.json is stale: run `npm run openapi` and commit the result');
      process.exit(1);
    }
    console.log('openapi/openapi.json is up to date');
  } else {
    await writeFile(target, doc);
    console.log(`wrote ${target}`);
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
