#!/usr/bin/env node
/**
 * `npm run build:service` (and `npm start`'s prestart): the service's TypeScript as plain
 * JavaScript under dist/, file for file (esbuild, no bundling: every module keeps its path, so
 * src/repo/seal-pool.ts becomes dist/src/repo/seal-pool.js next to a copy of seal-worker.mjs).
 * The service then runs under plain `node`, without tsx's module hooks: those run on a thread of
 * their own with its own V8 heap, about 36 MB of resident memory for the life of the process
 * (bench:backup (f)), and transpile every module at each start.
 *
 * Plain JavaScript itself, so that it needs nothing but esbuild (which tsx brings). Skips the
 * build when dist/ is newer than every input; otherwise builds into a fresh directory and swaps
 * it in, so a running service never reads a half-written module.
 *
 *   node scripts/build-service.mjs [--force] [dir ...]   (dirs default to src)
 */
import { build } from 'esbuild';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const OUT = path.join(ROOT, 'dist');

/** The sources to build under `dir`: TypeScript (not tests or declarations) and plain .mjs modules. */
function sources(dir) {
  const out = [];
  for (const e of readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
    const rel = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== 'fixtures' && e.name !== 'node_modules') out.push(...sources(rel));
    } else if (/\.(ts|mjs)$/.test(e.name) && !/\.d\.m?ts$/.test(e.name) && !/\.test\.ts$/.test(e.name) && !/\.test-helper\.ts$/.test(e.name)) {
      out.push(rel);
    }
  }
  return out;
}

const stampOf = (dir) => path.join(OUT, dir, '.built');

function fresh(dir, files) {
  const stamp = stampOf(dir);
  if (!existsSync(stamp)) return false;
  const built = statSync(stamp).mtimeMs;
  // a deleted source leaves the directory newer than the stamp
  const dirs = new Set(files.map((f) => path.dirname(f)));
  return [...files, ...dirs].every((f) => statSync(path.join(ROOT, f)).mtimeMs <= built);
}

/** Builds `dirs` (relative to the repository) into dist/<dir>; returns the directories rebuilt. */
export async function buildService({ dirs = ['src'], force = false } = {}) {
  const rebuilt = [];
  for (const dir of dirs) {
    const files = sources(dir);
    if (!force && fresh(dir, files)) continue;
    const target = path.join(OUT, dir);
    const staging = path.join(OUT, `.${dir.replaceAll('/', '_')}-${process.pid}-${Date.now()}`);
    rmSync(staging, { recursive: true, force: true });
    await build({
      entryPoints: files.map((f) => path.join(ROOT, f)),
      outdir: staging,
      outbase: path.join(ROOT, dir),
      bundle: false,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      loader: { '.mjs': 'copy' },
      logLevel: 'warning',
    });
    writeFileSync(path.join(staging, '.built'), `${new Date().toISOString()}\n`);
    mkdirSync(path.dirname(target), { recursive: true });
    const old = `${staging}.old`;
    if (existsSync(target)) renameSync(target, old);
    renameSync(staging, target);
    rmSync(old, { recursive: true, force: true });
    rebuilt.push(dir);
  }
  return rebuilt;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const dirs = args.filter((a) => !a.startsWith('--'));
  await buildService({ dirs: dirs.length ? dirs : undefined, force: args.includes('--force') });
}
