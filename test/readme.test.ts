/**
 * The README's walkthrough, run as a newcomer would paste it: every ```sh walkthrough block, in
 * order, in one bash, against a started service configured the way the README's
 * ```sh walkthrough-service line starts it. Each block must end with status 0, and the restored
 * data must equal what the walkthrough made. It also checks that the configuration table names
 * every variable the service reads, and that no document points outside the repository.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES } from '../src/config.js';
import { adminUrl } from './helpers/db.js';
import { startStack, type Stack } from './helpers/stack.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');

/** The fenced blocks of a section whose info string is exactly `sh <tag>`. */
function blocks(markdown: string, tag: string): string[] {
  return [...markdown.matchAll(/^```sh ([\w-]+)\n([\s\S]*?)^```$/gm)].filter((m) => m[1] === tag).map((m) => m[2] as string);
}

const walkthrough = readme.slice(readme.indexOf('\n## Walkthrough\n'), readme.indexOf('\n## Configuration\n'));
const steps = blocks(walkthrough, 'walkthrough');
const serviceLine = blocks(walkthrough, 'walkthrough-service');

/** `A=1 B=two npm start` -> {A: '1', B: 'two'}: the settings the README starts the service with. */
function serviceEnv(line: string): Record<string, string> {
  const words = line.trim().split(/\s+/);
  const start = words.indexOf('npm');
  expect(words.slice(start)).toEqual(['npm', 'start']);
  return Object.fromEntries(
    words.slice(0, start).map((w) => {
      const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(w);
      if (!m) throw new Error(`not an assignment in the README's service line: ${w}`);
      return [m[1] as string, m[2] as string];
    }),
  );
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function bash(script: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', script], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('README', () => {
  it('has the walkthrough blocks the test runs', () => {
    expect(serviceLine).toHaveLength(1);
    expect(steps.length).toBeGreaterThanOrEqual(10);
    expect(steps.some((s) => /npx backupctl backup create/.test(s))).toBe(true);
  });

  it('describes every configuration variable in its table', () => {
    const table = readme.slice(readme.indexOf('\n## Configuration\n'), readme.indexOf('\n## Development\n'));
    const described = new Set([...table.matchAll(/^\| (.*?) \|/gm)].flatMap((m) => [...(m[1] as string).matchAll(/`([A-Z0-9_]+)`/g)].map((n) => n[1])));
    expect(CONFIG_VARIABLES.filter((v) => !described.has(v))).toEqual([]);
  });

  it('and docs/ stay inside the repository (no ../shared)', async () => {
    const docs = (await readdir(path.join(ROOT, 'docs'))).filter((f) => f.endsWith('.md'));
    expect(docs).toEqual(expect.arrayContaining(['api.md', 'rules.md', 'cli.md', 'operations.md']));
    for (const file of ['README.md', ...docs.map((f) => `docs/${f}`)]) {
      const text = await readFile(path.join(ROOT, file), 'utf8');
      expect(text, file).not.toMatch(/\.\.\/shared|shared\/SPEC/);
      // Every relative link points at a file of the repository.
      for (const [, target] of text.matchAll(/\]\(((?!https?:|#)[^)#\s]+)(#[^)]*)?\)/g)) {
        await expect(readFile(path.resolve(ROOT, path.dirname(file), target as string)), `${file} -> ${target}`).resolves.toBeDefined();
      }
    }
  });
});

describe('README walkthrough, pasted into bash', () => {
  let stack: Stack;
  let baseUrl: string;
  const sourceDb = `bk_readme_${randomBytes(4).toString('hex')}`;
  const server = new URL(adminUrl());
  server.pathname = '';
  const sourcePg = server.href.replace(/\/$/, '');
  const env = serviceEnv(serviceLine[0] ?? '');

  beforeAll(async () => {
    // The stack's own default (loopback allowed) gives way to the service's: the README's line
    // must itself say what a fresh service needs.
    stack = await startStack({ env: { TARGET_ALLOWED_HOSTS: 'public', ...env } });
    await stack.app.listen({ port: 0, host: '127.0.0.1' });
    const address = stack.app.server.address();
    if (!address || typeof address === 'string') throw new Error('no port');
    baseUrl = `http://127.0.0.1:${address.port}`;
  });

  afterAll(async () => {
    const c = new pg.Client({ connectionString: adminUrl() });
    await c.connect();
    await c.query(`DROP DATABASE IF EXISTS ${sourceDb} WITH (FORCE)`);
    await c.end();
    await stack?.close();
  });

  it('runs every step with status 0, from tenant creation to a restore that gives back the data', async () => {
    // One bash, as a shell a user pastes into; after each block its status is checked, and
    // set -e stops at the first failing command inside one.
    // The variables the blocks set are printed on exit, so the checks below (and the cleanup of
    // the copy made in step 5) can find them, whatever happened.
    const script = [
      'set -euo pipefail',
      `trap 'echo "::vars FOLDER=\${FOLDER:--} ORIGINAL=\${ORIGINAL:--} CLUSTER=\${CLUSTER:--}"' EXIT`,
      ...steps.map((s, i) => `echo "::block ${i + 1}" >&2\n${s}\nrc=$?; if [ "$rc" != 0 ]; then echo "::failed block ${i + 1}: status $rc" >&2; exit "$rc"; fi`),
    ].join('\n');
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^BACKUP_|^SOURCE_|^DATA_ROOT$|^ADMIN_TOKEN$/.test(k)));
    const run = await bash(script, { ...clean, ...env, BACKUP_URL: baseUrl, DATA_ROOT: stack.dataRoot, SOURCE_PG: sourcePg, SOURCE_DB: sourceDb }, 150_000);
    const transcript = `exit ${run.code}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;
    const vars = /^::vars FOLDER=(\S+) ORIGINAL=(\S+) CLUSTER=(\S+)$/m.exec(run.stdout);
    const [, folder, original, cluster] = (vars ?? []) as unknown as [string, string, string, string];
    try {
      expect(run.code, transcript).toBe(0);
      expect(run.stderr.match(/^::block \d+$/gm), transcript).toHaveLength(steps.length);
      expect(vars, transcript).not.toBeNull();
      // The restored tree is the one made in step 5, byte for byte.
      const restored = path.resolve(ROOT, folder, 'my-app');
      expect(path.resolve(ROOT, folder).startsWith(stack.dataRoot)).toBe(true);
      expect(await readFile(path.join(restored, 'index.html'), 'utf8')).toBe('<h1>hello</h1>\n');
      expect((await readFile(path.join(restored, 'assets/logo.bin'))).equals(await readFile(path.join(original, 'assets/logo.bin')))).toBe(true);
      expect((await readFile(path.join(restored, 'assets/logo.bin'))).length).toBe(300_000);
      // And so is the database.
      const c = new pg.Client({ connectionString: `${sourcePg}/${sourceDb}` });
      await c.connect();
      try {
        expect((await c.query('SELECT count(*)::int AS n, max(item) AS last FROM orders')).rows[0]).toEqual({ n: 1000, last: 'item 999' });
      } finally {
        await c.end();
      }
      // Two backups (curl, then backupctl), both completed; two restores, both completed.
      const backups = await stack.rt.db.backup.findMany({ where: { clusterId: cluster }, select: { status: true } });
      expect(backups.map((b) => b.status)).toEqual(['completed', 'completed']);
      const restores = await stack.rt.db.restore.findMany({ where: { clusterId: cluster }, select: { status: true } });
      expect(restores.map((r) => r.status)).toEqual(['completed', 'completed']);
    } finally {
      if (original && original !== '-' && original.startsWith(tmpdir())) await rm(original, { recursive: true, force: true });
    }
  }, 180_000);
});
