import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { readdirSync } from 'node:fs';
import net from 'node:net';

const run = promisify(execFile);

export interface Service {
  proc: ChildProcess;
  port: number;
  logs(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** The real program (src/main.ts) as its own node process, so kill -9 hits the service itself. */
export function startService(env: Record<string, string>, port = 0): Service {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    env: { ...process.env, LOG_LEVEL: 'info', ...env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (c) => (out += c));
  proc.stderr!.on('data', (c) => (out += c));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  return { proc, port, logs: () => out, exited };
}

export async function waitUntil<T>(fn: () => Promise<T | null | undefined | false>, timeoutMs: number, what: string): Promise<T> {
  const start = Date.now();
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch {
      // not yet
    }
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export async function http(port: number, method: string, path: string, token?: string, body?: unknown) {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, {
    method,
    headers: { ...(token && { authorization: `Bearer ${token}` }), ...(body !== undefined && { 'content-type': 'application/json' }) },
    ...(body !== undefined && { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, body: json, text };
}

// The machine's own commands (DEVELOPERS.md) for stopping and starting the shared services.
const PG_VERSION = () => readdirSync('/etc/postgresql')[0]!;

export async function stopPostgres() {
  await run('pg_ctlcluster', ['--skip-systemctl-redirect', PG_VERSION(), 'main', 'stop', '-m', 'fast']);
}
export async function startPostgres() {
  await run('pg_ctlcluster', ['--skip-systemctl-redirect', PG_VERSION(), 'main', 'start']);
  await waitUntil(async () => (await run('pg_isready', ['-h', '127.0.0.1', '-p', '5432'])).stdout.includes('accepting'), 30_000, 'PostgreSQL');
}
export async function redisCli(...args: string[]) {
  return (await run('redis-cli', ['-h', '127.0.0.1', '-p', '6379', ...args])).stdout.trim();
}
export async function stopRedis() {
  await redisCli('shutdown', 'nosave').catch(() => {}); // the connection drops as it exits
  await waitUntil(async () => (await redisCli('ping').catch(() => 'down')) !== 'PONG', 10_000, 'Redis to stop');
}
export async function startRedis() {
  await run('redis-server', ['--daemonize', 'yes', '--bind', '127.0.0.1', '--port', '6379', '--save', '', '--appendonly', 'no']);
  await waitUntil(async () => (await redisCli('ping')) === 'PONG', 10_000, 'Redis');
  await redisCli('config', 'set', 'maxmemory-policy', 'noeviction');
}

export function report(what: string, ms: number) {
  console.log(`[fault] ${what}: recovered in ${(ms / 1000).toFixed(1)} s`);
}
