import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

/**
 * A scratch redis-server for tests and benchmarks: a random free port on 127.0.0.1, its own temp
 * dir, no persistence (`--save '' --appendonly no`), diskless replication without the default
 * 5 s wait for more replicas (`repl-diskless-sync-delay 0`) unless `args` say otherwise. Never the
 * service's own Redis. `stop()` kills it and removes the dir.
 */
export interface ScratchRedisServer {
  url: string;
  port: number;
  dir: string;
  /** The server's process id (its fork for a snapshot is a child of it). */
  pid: number;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

async function pingable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let got = '';
    s.once('error', () => resolve(false));
    s.once('connect', () => s.write('PING\r\n'));
    s.on('data', (b) => {
      got += b.toString();
      if (got.includes('\r\n')) {
        s.destroy();
        resolve(got.startsWith('+PONG') || got.startsWith('-NOAUTH'));
      }
    });
  });
}

export async function startRedisServer(opts: { args?: string[] } = {}): Promise<ScratchRedisServer> {
  for (let attempt = 0; ; attempt++) {
    const dir = await mkdtemp(path.join(tmpdir(), 'bk-test-redis-'));
    const port = await freePort();
    const child: ChildProcess = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--repl-diskless-sync-delay', '0', '--daemonize', 'no', ...(opts.args ?? [])],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let log = '';
    child.stdout?.on('data', (b: Buffer) => (log = (log + b.toString()).slice(-4000)));
    child.stderr?.on('data', (b: Buffer) => (log = (log + b.toString()).slice(-4000)));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const stop = async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
      await rm(dir, { recursive: true, force: true });
    };
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && child.exitCode === null) {
      if (await pingable(port)) return { url: `redis://127.0.0.1:${port}`, port, dir, pid: child.pid!, stop };
      await new Promise((r) => setTimeout(r, 30));
    }
    await stop();
    if (attempt >= 3) throw new Error(`redis-server did not start: ${log}`);
  }
}
