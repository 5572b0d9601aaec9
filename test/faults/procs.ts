import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { readdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';

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

/** Stops a process (kill -9 unless told otherwise) if it is still running; resolves with how it ended. */
export async function kill(s: { proc: ChildProcess; exited: Service['exited'] }, signal: NodeJS.Signals = 'SIGKILL') {
  if (s.proc.exitCode === null && s.proc.signalCode === null) s.proc.kill(signal);
  return s.exited;
}

/**
 * The environment every fault file's services share: its own database, data and store folders
 * under `base`, a queue prefix of its own, and short leases and reconcile intervals so that
 * recovery is seen within seconds.
 */
export function faultEnv(o: { databaseUrl: string; redisUrl: string; adminToken: string; base: string; queuePrefix: string }): Record<string, string> {
  return {
    DATABASE_URL: o.databaseUrl,
    REDIS_URL: o.redisUrl,
    ADMIN_TOKEN: o.adminToken,
    DATA_ROOT: path.join(o.base, 'sources'),
    STORAGE_URL: pathToFileURL(path.join(o.base, 'artifacts')).href,
    ENCRYPTION_KEY: randomBytes(32).toString('base64'),
    QUEUE_PREFIX: `${o.queuePrefix}-${randomBytes(4).toString('hex')}`,
    WORKER_LEASE_MS: '4000',
    RECONCILE_INTERVAL_MS: '1000',
    SHUTDOWN_GRACE_MS: '2000',
    DB_CONNECT_TIMEOUT_MS: '2000',
  };
}

/** The service processes one fault file starts, each with the file's environment (`env()`), to kill at the end. */
export function serviceSet(env: () => Record<string, string>) {
  const all: Service[] = [];
  return {
    all,
    start(extra: Record<string, string>, port = 0): Service {
      const s = startService({ ...env(), ...extra }, port);
      all.push(s);
      return s;
    },
    async killAll() {
      for (const s of all) await kill(s);
    },
  };
}
