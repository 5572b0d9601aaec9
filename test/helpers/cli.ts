import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildCli } from '../../src/cli/build.js';
import { DOCUMENT_PATH, documentAjv } from './openapi.js';
import type { Stack } from './stack.js';

/** The single bundled file, built once per test file into a temp directory (what a cron host runs). */
export async function buildCliOnce(): Promise<{ file: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'bk-cli-'));
  const file = await buildCli(path.join(dir, 'backupctl.mjs'));
  return { file, remove: () => rm(dir, { recursive: true, force: true }) };
}

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/**
 * Runs the built file with node, no TTY (pipes), and an environment holding only what is given
 * plus PATH (so nothing of the test runner's BACKUP_* leaks in). `onStderr` sees stderr as it comes.
 */
export function runCli(file: string, args: string[], env: Record<string, string>, opts: { onStderr?: (soFar: string) => void; timeoutMs?: number } = {}): Promise<CliRun> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [file, ...args], {
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      opts.onStderr?.(stderr);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    });
  });
}

/** The API on a real port, as the CLI reaches it. */
export async function listenOn(s: Stack): Promise<string> {
  return s.app.listen({ port: 0, host: '127.0.0.1' });
}

/** A loopback port nothing listens on. */
export async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/**
 * A TCP proxy to `target` that drops the first connection carrying a POST at the worst moment:
 * the request has reached the server and its answer has begun to come back, but the client gets
 * a reset instead of the answer. Every other connection is relayed as it is.
 */
export async function droppingProxy(target: string): Promise<{ url: string; resets(): number; close(): Promise<void> }> {
  const t = new URL(target);
  let dropped = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(t.port), t.hostname);
    sockets.add(client).add(upstream);
    let victim = false;
    client.on('data', (d: Buffer) => {
      if (dropped === 0 && !victim && d.subarray(0, 5).toString() === 'POST ') victim = true;
      upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => {
      if (victim) {
        dropped++;
        victim = false;
        client.resetAndDestroy();
        upstream.destroy();
        return;
      }
      client.write(d);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    resets: () => dropped,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** Terminal control: escape sequences or carriage returns (a progress bar redrawn in place). */
export const CONTROL_CHARS = /\x1b|\r/;

type Doc = { paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: object }> }> }>>; components: object };

/**
 * Checks a JSON value against the response schema the OpenAPI document declares for an
 * operation (its $refs resolved against the document's components). Answers the errors, or null.
 */
export async function responseChecker(): Promise<(method: string, route: string, status: number, value: unknown) => string | null> {
  const doc = JSON.parse(await readFile(DOCUMENT_PATH, 'utf8')) as Doc;
  const ajv = documentAjv({ logger: false });
  const cache = new Map<string, ReturnType<typeof ajv.compile>>();
  return (method, route, status, value) => {
    const key = `${method} ${route} ${status}`;
    let validate = cache.get(key);
    if (!validate) {
      const content = doc.paths[route]?.[method.toLowerCase()]?.responses[String(status)]?.content;
      const schema = content?.['application/json']?.schema;
      if (!schema) throw new Error(`the document declares no JSON answer for ${key}`);
      validate = ajv.compile({ ...schema, components: doc.components });
      cache.set(key, validate);
    }
    return validate(value) ? null : ajv.errorsText(validate.errors);
  };
}
