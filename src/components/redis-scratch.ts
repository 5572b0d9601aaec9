import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { abortError, childEnv, StderrTail } from './process.js';
import { MAX_SCRATCH_BULK, RedisReplyError, RespConnection } from './redis-wire.js';
import { ComponentError } from './types.js';

/**
 * A private `redis-server` (from PATH) that loads a snapshot's RDB file so that a restore can
 * read it key by key (`DUMP`): no TCP port (`--port 0`), only a unix socket in the restore's own
 * temp dir (mode 700), no persistence of its own. It is killed by `stop()`, and by an abort.
 */
export interface ScratchRedis {
  /** Connections to it, over its socket. */
  connect(): Promise<RespConnection>;
  /** Its version (`INFO server` redis_version), for messages. */
  version: string;
  stop(): Promise<void>;
}

/** How often the loading server is asked whether it is ready. */
const POLL_MS = 50;

/**
 * Starts the server on `dir/dump.rdb` and resolves once the file is loaded. A file it cannot
 * load (a format newer than it reads, a module type, more databases than `databases`, a bad
 * checksum) rejects with a ComponentError saying so.
 */
export async function startScratchRedis(dir: string, opts: { databases: number; signal?: AbortSignal }): Promise<ScratchRedis> {
  const socketPath = path.join(dir, 's.sock');
  const args = [
    '--port', '0', '--unixsocket', socketPath, '--unixsocketperm', '700', '--dir', dir, '--dbfilename', 'dump.rdb',
    '--save', '', '--appendonly', 'no', '--databases', String(opts.databases), '--daemonize', 'no', '--logfile', '',
    '--protected-mode', 'yes', '--maxmemory', '0', '--loglevel', 'notice',
    // the file is tenant data: every encoded value is validated deeply as it is loaded
    '--sanitize-dump-payload', 'yes',
  ];
  const child = spawn('redis-server', args, { env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  const tail = new StderrTail();
  child.stdout?.on('data', (b: Buffer) => tail.push(b));
  child.stderr?.on('data', (b: Buffer) => tail.push(b));
  let exited: Error | undefined;
  const exit = new Promise<void>((resolve) => {
    child.once('error', (err) => {
      exited = new ComponentError(`could not start redis-server for the restore: ${(err as NodeJS.ErrnoException).code ?? err.message}`);
      resolve();
    });
    child.once('exit', () => {
      exited ??= loadFailure(tail.text(), opts.databases);
      resolve();
    });
  });
  const stop = async () => {
    kill(child);
    await exit;
  };
  const onAbort = () => void stop();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for (;;) {
      opts.signal?.throwIfAborted();
      if (exited) throw exited;
      const c = await connectUnix(socketPath).catch(() => null);
      if (c) {
        try {
          // INFO answers while the file is loading; `loading:0` says it is done
          const info = String(await c.call('INFO', 'server')) + String(await c.call('INFO', 'persistence'));
          if (!/^loading:0/m.test(info)) throw new RedisReplyError('LOADING');
          const version = /redis_version:([^\r\n]+)/.exec(info)?.[1] ?? 'unknown';
          return { version, connect: () => connectUnix(socketPath), stop: async () => { opts.signal?.removeEventListener('abort', onAbort); await stop(); } };
        } catch (err) {
          if (!(err instanceof RedisReplyError && err.code === 'LOADING') && !(err instanceof ComponentError)) throw err;
        } finally {
          c.close();
        }
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  } catch (err) {
    opts.signal?.removeEventListener('abort', onAbort);
    await stop();
    if (opts.signal?.aborted) throw abortError(opts.signal);
    throw exited ?? err;
  }
}

function kill(child: ChildProcess): void {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

function connectUnix(socketPath: string): Promise<RespConnection> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ path: socketPath });
    s.once('error', reject);
    s.once('connect', () => {
      s.off('error', reject);
      resolve(new RespConnection(s, { idleTimeoutMs: 24 * 3600_000, maxBulkBytes: MAX_SCRATCH_BULK }));
    });
  });
}

/** Why redis-server would not load the snapshot, from its log. */
function loadFailure(log: string, databases: number): ComponentError {
  const detail = log.slice(-2000);
  const version = /Can't handle RDB format version (\d+)/.exec(log);
  if (version) {
    return new ComponentError(
      `the snapshot is in RDB format version ${version[1]}, newer than the restore's redis-server can read: restoring needs a redis-server at least as new as the server the backup was taken from`,
      { detail },
    );
  }
  if (/more than \d+ databases/.test(log)) {
    return new ComponentError(`the snapshot has keys in a database the target server does not have (it has ${databases})`, { detail });
  }
  if (/module/i.test(log) && /can't load|not loaded|no matching module/i.test(log)) {
    return new ComponentError('the snapshot holds data of a Redis module, which the restore cannot load', { detail });
  }
  if (/checksum|Short read|Bad file format|Unexpected EOF|Internal error in RDB/i.test(log)) {
    return new ComponentError('the snapshot is not a valid RDB file (redis-server refused to load it)', { detail });
  }
  return new ComponentError('redis-server could not load the snapshot', { detail });
}
