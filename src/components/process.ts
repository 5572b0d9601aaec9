import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough, Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { SocketPieces } from '../lib/socket-pieces.js';
import { ComponentError } from './types.js';

const STDERR_TAIL_BYTES = 4096;
const KILL_GRACE_MS = 5_000;

/** Variables a child tool may inherit; everything else (DATABASE_URL, tokens, PG* of the service itself) stays out. */
const INHERITED_ENV = ['PATH', 'HOME', 'TMPDIR', 'TZ'];

export function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { LC_ALL: 'C' };
  for (const name of INHERITED_ENV) {
    const value = process.env[name];
    if (value !== undefined) env[name] = value;
  }
  return { ...env, ...extra };
}

/** Keeps only the last few KB of a child's stderr: enough to explain a failure, bounded in memory. */
export class StderrTail {
  #chunks: Buffer[] = [];
  #length = 0;

  push(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#length += chunk.length;
    while (this.#length - (this.#chunks[0]?.length ?? 0) >= STDERR_TAIL_BYTES) {
      this.#length -= this.#chunks.shift()?.length ?? 0;
    }
  }

  text(): string {
    const all = Buffer.concat(this.#chunks);
    return all.subarray(Math.max(0, all.length - STDERR_TAIL_BYTES)).toString('utf8').trim();
  }
}

export interface ChildOptions {
  /** Tool name used in messages, e.g. 'pg_dump'. */
  label: string;
  env: NodeJS.ProcessEnv;
  signal?: AbortSignal;
  /** Applied to stderr before it becomes part of an error message. */
  redact?: (text: string) => string;
  /**
   * Turns the (redacted) stderr into the reason the tenant sees, for tools whose raw complaints
   * name addresses and ports (libpq). The raw text is then kept only in `ComponentError.detail`
   * and the debug log.
   */
  describe?: (stderr: string) => string;
  /** Where a failed tool's raw (redacted) stderr is logged at debug. */
  log?: ToolLog;
}

export interface GatedInputOptions extends ChildOptions {
  /**
   * Called once every byte of the input has been handed to the tool (or the tool stopped
   * reading). Resolving writes one line, `commit`, to the tool's fd 3, which the tool reads before
   * its point of no return; rejecting closes fd 3 unwritten, stops the tool and rejects the run
   * with that error. Without a gate the tool has no fd 3.
   */
  gate?: () => Promise<void>;
}

export interface ToolLog {
  debug(obj: Record<string, unknown>, msg: string): void;
}

export function abortError(signal: AbortSignal): Error {
  if (signal.reason instanceof Error) return signal.reason;
  return Object.assign(new Error('the operation was aborted'), { name: 'AbortError', cause: signal.reason });
}

function failureOf(label: string, code: number | null, signal: NodeJS.Signals | null, stderr: string, describe?: (stderr: string) => string): ComponentError {
  if (stderr && describe) return new ComponentError(`${label} failed: ${describe(stderr)}`, { detail: stderr });
  if (stderr) return new ComponentError(`${label} failed: ${stderr}`);
  if (signal) return new ComponentError(`${label} was killed by ${signal}`);
  return new ComponentError(`${label} exited with code ${code}`);
}

/** SIGTERM, then SIGKILL if the tool ignores it. */
function terminate(child: ChildProcess): void {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }, KILL_GRACE_MS);
  timer.unref();
  child.once('exit', () => clearTimeout(timer));
}

function spawnTool(cmd: string, args: string[], opts: ChildOptions, mode: 'read-stdout' | 'write-stdin' | net.Socket, gateFd = false) {
  const stdio = mode === 'read-stdout' ? (['ignore', 'pipe', 'pipe'] as const) : mode === 'write-stdin' ? (['pipe', 'ignore', 'pipe'] as const) : (['ignore', mode, 'pipe'] as const);
  const child = spawn(cmd, args, { env: opts.env, stdio: gateFd ? [...stdio, 'pipe'] : [...stdio] });
  const tail = new StderrTail();
  child.stderr?.on('data', (chunk: Buffer) => tail.push(chunk));
  const redact = opts.redact ?? ((s: string) => s);
  const exited = new Promise<void>((resolve, reject) => {
    child.once('error', (err) => reject(new ComponentError(`could not start ${opts.label}: ${(err as NodeJS.ErrnoException).code ?? err.message}`)));
    child.once('close', (code, signal) => {
      if (code === 0) return resolve();
      const stderr = redact(tail.text());
      opts.log?.debug({ tool: opts.label, code, signal, stderr }, 'tool failed');
      reject(failureOf(opts.label, code, signal, stderr, opts.describe));
    });
  });
  exited.catch(() => {}); // observed by the callers; never an unhandled rejection
  return { child, exited };
}

/**
 * stdout of a tool as a stream that ends only after the tool exited 0, and errors with a
 * ComponentError (carrying the stderr tail) otherwise. Destroying the stream kills the tool.
 */
export function spawnOutput(cmd: string, args: string[], opts: ChildOptions): Readable {
  const { child, exited } = spawnTool(cmd, args, opts, 'read-stdout');
  const out = new PassThrough({ highWaterMark: 1 << 20 });
  child.stdout?.pipe(out, { end: false });
  exited.then(
    () => out.end(),
    (err: Error) => out.destroy(err),
  );
  out.once('close', () => terminate(child));
  return out;
}

/**
 * stdout of a tool as pieces, for a consumer that is done with each piece when it asks for the
 * next (the repository writer copies it into its block at once): the pieces are views of a few
 * buffers reused from read to read (SocketPieces), so a dump of any size makes no garbage. A
 * pipe's reads each allocate a fresh buffer, so stdout is instead one end of a Unix stream
 * socket, made by a listener in a private directory (0700: only this user can connect) that
 * accepts exactly one connection, ours, and is gone before the tool starts.
 *
 * Nothing is spawned before the first piece is asked for. The pieces end only once the tool
 * exited 0; any other exit throws a ComponentError carrying the stderr tail, as spawnOutput.
 * Returning early, an error of the consumer, or an abort of `opts.signal` kills the tool.
 */
export async function* spawnChunks(cmd: string, args: string[], opts: ChildOptions): AsyncGenerator<Buffer> {
  opts.signal?.throwIfAborted();
  let ours: SocketPieces | undefined;
  let child: ChildProcess | undefined;
  const onAbort = () => ours?.fail(abortError(opts.signal as AbortSignal));
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  const dir = await mkdtemp(path.join(tmpdir(), 'bk-out-'));
  try {
    const socketPath = path.join(dir, 'out');
    const server = net.createServer({ pauseOnConnect: true });
    const theirs = await new Promise<net.Socket>((resolve, reject) => {
      server.once('error', reject);
      server.once('connection', (sock) => {
        server.close();
        resolve(sock);
      });
      server.listen(socketPath, () => {
        ours = SocketPieces.connect({ path: socketPath });
        ours.socket.once('error', (err) => {
          server.close();
          reject(err); // never accepted: nothing to wait for
        });
      });
    });
    await rm(dir, { recursive: true, force: true });
    opts.signal?.throwIfAborted();
    const spawned = spawnTool(cmd, args, opts, theirs);
    child = spawned.child;
    theirs.destroy(); // the tool has its own copy; ours must close for the tool's exit to end the stream
    const pieces = ours!;
    spawned.exited.catch((err: Error) => pieces.fail(err));
    for (;;) {
      const piece = await pieces.next();
      if (!piece) break;
      yield piece;
    }
    await spawned.exited;
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    ours?.destroy();
    if (child) terminate(child);
    await rm(dir, { recursive: true, force: true }).catch(() => {});
  }
}

/**
 * Feeds `input` to a tool's stdin and resolves once it exited 0. An error of `input` (or of the
 * gate, see `GatedInputOptions`) wins over the tool's complaint about truncated input.
 */
export async function runWithInput(cmd: string, args: string[], input: Readable, opts: GatedInputOptions): Promise<void> {
  opts.signal?.throwIfAborted();
  const { child, exited } = spawnTool(cmd, args, opts, 'write-stdin', opts.gate !== undefined);
  let inputError: Error | undefined;
  const onInputError = (err: Error) => {
    inputError ??= err;
    terminate(child);
  };
  input.once('error', onInputError);
  // On abort, answer at once rather than when the tool has finished dying.
  let onAbort = () => {};
  const aborted = new Promise<never>((_resolve, reject) => {
    onAbort = () => {
      const err = abortError(opts.signal as AbortSignal);
      onInputError(err);
      input.destroy();
      reject(err);
    };
  });
  aborted.catch(() => {});
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  const stdin = child.stdin;
  if (!stdin) throw new Error('child has no stdin');
  // EPIPE when the tool exits early is expected; its exit status tells the story.
  const piping = pipeline(input, stdin).catch(() => {});
  if (opts.gate) {
    const gateFd = child.stdio[3] as Writable;
    gateFd.on('error', () => {}); // EPIPE once the tool is gone: its exit status tells
    const gate = opts.gate;
    piping
      .then(async () => {
        if (inputError) throw inputError;
        await gate();
        // Nothing goes through after an abort or an input error, even one during the gate.
        if (inputError) throw inputError;
        gateFd.end('commit\n');
      })
      .catch((err: unknown) => {
        gateFd.destroy();
        onInputError(err instanceof Error ? err : new Error(String(err)));
      });
  }
  try {
    await Promise.race([
      aborted,
      exited.catch((err: unknown) => {
        throw inputError ?? err;
      }),
    ]);
    await Promise.race([aborted, piping]);
    if (inputError) throw inputError;
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    input.off('error', onInputError);
    terminate(child);
  }
}
