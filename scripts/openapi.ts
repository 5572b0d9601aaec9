/**
 * Writes openapi/openapi.json from the zod route schemas and src/client/schema.d.ts (the typed
 * client's types, by openapi-typescript) from that document; with --check fails when either
 * committed file differs from what the code generates. Touches no database or Redis.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import openapiTS, { astToString } from 'openapi-typescript';
import { loadConfig } from '../src/config.js';
import { createRuntime } from '../src/runtime.js';
import { createApiApp } from '../src/roles/api.js';

const documentPath = fileURLToPath(new URL('../openapi/openapi.json', import.meta.url));
const typesPath = fileURLToPath(new URL('../src/client/schema.d.ts', import.meta.url));

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

/** The TypeScript types of the document (paths, components, operations) for openapi-fetch. */
export async function generateClientTypes(doc: string): Promise<string> {
  const ast = await openapiTS(JSON.parse(doc) as Parameters<typeof openapiTS>[0], { silent: true });
  return '// Generated from openapi/openapi.json by `npm run openapi` (openapi-typescript); do not edit.\n' + astToString(ast);
}

async function main() {
  const doc = await generateOpenApi();
  const types = await generateClientTypes(doc);
  const outputs = [
    { path: documentPath, text: doc, name: 'openapi/openapi.json' },
    { path: typesPath, text: types, name: 'src/client/schema.d.ts' },
  ];
  if (process.argv.includes('--check')) {
    let stale = false;
    for (const o of outputs) {
      const committed = await readFile(o.path, 'utf8').catch(() => '');
      if (committed !== o.text) {
        console.error(`${o.name} is stale: run \`npm run openapi\` and commit the result`);
        stale = true;
      }
    }
    if (stale) process.exit(1);
    console.log('openapi/openapi.json and src/client/schema.d.ts are up to date');
  } else {
    for (const o of outputs) {
      await writeFile(o.path, o.text);
      console.log(`wrote ${o.path}`);
    }
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
