/**
 * `npm run build:cli`: bundles the CLI and every dependency into one ES module,
 * dist/backupctl.mjs, that needs only Node.js 20+ (for cron hosts without a checkout).
 * esbuild is the one tsx already brings. Also used by the CLI tests, which run the built file.
 */
import { build } from 'esbuild';
import { chmod } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export async function buildCli(outfile = path.join(root, 'dist', 'backupctl.mjs')): Promise<string> {
  await build({
    entryPoints: [path.join(root, 'src', 'cli', 'main.ts')],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    // commander and cli-progress are CommonJS and call require() for Node's built-ins, which an
    // ES module only has through createRequire.
    banner: { js: "#!/usr/bin/env node\nimport { createRequire as __createRequire } from 'node:module';\nconst require = __createRequire(import.meta.url);" },
    legalComments: 'none',
    logLevel: 'warning',
  });
  await chmod(outfile, 0o755);
  return outfile;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const out = await buildCli(process.argv[2] ? path.resolve(process.argv[2]) : undefined);
  process.stdout.write(`wrote ${path.relative(process.cwd(), out)}\n`);
}
