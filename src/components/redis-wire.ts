import net from 'node:net';
import tls from 'node:tls';
import { SocketPieces } from '../lib/socket-pieces.js';
import { abortError } from './process.js';
import type { RedisConnection } from './redis-url.js';
import type { TargetPolicy } from './postgres-targets.js';
import { ComponentError } from './types.js';

/**
 * A minimal RESP2 client over one net/tls socket: what the replication handshake needs (it speaks
 * to the server as a replica, which no client library does) and what the restore writes. Its
 * one connect path pins the connection to the addresses the operator's target policy checked
 * (in order, the first that answers), names the URL's host for TLS, and turns every failure into
 * a ComponentError fit for tenants: categories, never an address, a port or the password.
 */

/** How long one address may take to accept the connection (and finish TLS) before the next is tried. */
export const REDIS_CONNECT_TIMEOUT_MS = 10_000;

/**
 * How long a read may wait for the server's next byte. A master preparing a snapshot sends a
 * newline every second, so silence this long means the link or the server is gone.
 */
export const REDIS_IDLE_TIMEOUT_MS = 120_000;

/** Longest status/error line or bulk header accepted: a hostile server cannot make us buffer without end. */
const MAX_LINE = 64 * 1024;

export interface WireOptions {
  connectTimeoutMs?: number;
  idleTimeoutMs?: number;
  signal?: AbortSignal;
  /** The longest bulk string a reply may announce (default MAX_TENANT_BULK). */
  maxBulkBytes?: number;
  /**
   * For a snapshot: the socket is read ahead of the consumer, as far as its buffers go, into
   * buffers reused from read to read (SocketPieces; a TLS socket reads into fresh ones, up to
   * 8 MiB ahead): a snapshot's consumer works in bursts, and while the socket is not read the
   * master waits (measured: with Node's default 16 KiB our backup waited on the master 9.5 s of
   * 13.5 s, redis-cli took 6.2 s in all). The reader's pieces then stay valid only until it
   * reads again, and `stream`/`streamUntil` hand them out so: their consumer copies each before
   * asking for the next (the repository writer does).
   */
  snapshot?: boolean;
}

/**
 * Replies of a tenant's server are small (OK, INFO, error lines): a server that announces more
 * is not believed, so a hostile one cannot make the API or a worker buffer gigabytes. Only the
 * worker's own scratch server (redis-restore's DUMP of large values) is allowed Redis's own limit
 * (proto-max-bulk-len, 512 MiB). The snapshot itself is streamed, never read as a reply.
 */
export const MAX_TENANT_BULK = 1024 * 1024;
export const MAX_SCRATCH_BULK = 512 * 1024 * 1024;
/** The most items an array reply may announce (SCAN pages and pipelines stay far below). */
const MAX_ARRAY_ITEMS = 1_000_000;

/** An error reply (`-ERR ...`, `-NOPERM ...`): `code` is its first word. */
export class RedisReplyError extends Error {
  override name = 'RedisReplyError';
  readonly code: string;
  constructor(message: string) {
    super(message);
    this.code = /^[A-Z]+/.exec(message)?.[0] ?? 'ERR';
  }
}

export type Reply = string | number | Buffer | null | RedisReplyError | Reply[];

/** The connection ended (or failed) under a read; `reason` is fit for tenants. */
export class ConnectionLost extends ComponentError {
  override name = 'ConnectionLost';
}

const CRLF = Buffer.from('\r\n');

/** Pulls bytes from a socket on demand: the socket is read only as fast as the caller asks (backpressure). */
export class RespReader {
  #it: AsyncIterator<Buffer>;
  #buf: Buffer = Buffer.alloc(0);
  #idleMs: number;
  #signal: AbortSignal | undefined;
  #maxBulk: number;
  /** Reads into reused buffers (WireOptions.snapshot): what is kept across a read is copied first. */
  readonly #transient: boolean;

  constructor(socket: net.Socket | SocketPieces, idleMs: number, signal?: AbortSignal, maxBulk = MAX_TENANT_BULK) {
    if (socket instanceof SocketPieces) {
      this.#transient = true;
      this.#it = {
        next: async () => {
          const piece = await socket.next();
          return piece ? { value: piece, done: false } : { value: undefined, done: true };
        },
      };
    } else {
      this.#transient = false;
      this.#it = socket[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    }
    this.#idleMs = idleMs;
    this.#signal = signal;
    this.#maxBulk = maxBulk;
  }

  /** `b` if it stays valid across reads, else a copy. */
  #kept(b: Buffer): Buffer {
    return this.#transient && b.length > 0 ? Buffer.from(b) : b;
  }

  /** Reads the next piece from the socket (appended to what is buffered); throws ConnectionLost at the end. */
  async #more(): Promise<void> {
    const before = this.#kept(this.#buf);
    const next = await this.#next();
    this.#buf = before.length > 0 ? Buffer.concat([before, next]) : next;
  }

  async #next(): Promise<Buffer> {
    let timer: NodeJS.Timeout | undefined;
    const idle = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new ConnectionLost(`the server sent nothing for ${Math.round(this.#idleMs / 1000)} s`)), this.#idleMs);
    });
    try {
      const r = await Promise.race([this.#it.next(), idle]);
      if (r.done) throw new ConnectionLost('the server closed the connection');
      return r.value;
    } catch (err) {
      if (this.#signal?.aborted) throw abortError(this.#signal);
      if (err instanceof ComponentError) throw err;
      const code = (err as NodeJS.ErrnoException).code;
      throw new ConnectionLost(`the connection failed (${code ?? 'error'})`, { detail: (err as Error).message });
    } finally {
      clearTimeout(timer);
    }
  }

  /** One line without its terminator. Ends at `\n` (a bare newline is a replication keepalive), a preceding `\r` dropped. */
  async line(): Promise<string> {
    for (;;) {
      const i = this.#buf.indexOf(10);
      if (i >= 0) {
        const end = i > 0 && this.#buf[i - 1] === 13 ? i - 1 : i;
        const text = this.#buf.subarray(0, end).toString('latin1');
        this.#buf = this.#buf.subarray(i + 1);
        return text;
      }
      if (this.#buf.length > MAX_LINE) throw new ConnectionLost('the server sent a line too long for the protocol');
      await this.#more();
    }
  }

  /** Exactly `n` bytes. */
  async bytes(n: number): Promise<Buffer> {
    if (this.#buf.length >= n) {
      const out = this.#kept(this.#buf.subarray(0, n));
      this.#buf = this.#buf.subarray(n);
      return out;
    }
    const parts = [this.#kept(this.#buf)];
    let have = this.#buf.length;
    this.#buf = Buffer.alloc(0);
    while (have < n) {
      const next = this.#kept(await this.#next());
      parts.push(next);
      have += next.length;
    }
    const all = Buffer.concat(parts, have);
    this.#buf = all.subarray(n);
    return all.subarray(0, n);
  }

  /** The next `n` bytes, piece by piece as they arrive; what follows them stays buffered. */
  async *stream(n: number): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (this.#buf.length === 0) this.#buf = await this.#next();
      const piece = this.#buf.length <= left ? this.#buf : this.#buf.subarray(0, left);
      this.#buf = this.#buf.subarray(piece.length);
      left -= piece.length;
      yield piece;
    }
  }

  /**
   * Bytes up to (not including) `mark`, piece by piece: the diskless form of a replication
   * payload, which ends with a 40-byte random mark instead of announcing its length. The last
   * `mark.length - 1` bytes seen are held back (copied: they are few) until the next piece tells
   * whether they start the mark; the pieces themselves are passed on as views, never joined.
   */
  async *streamUntil(mark: Buffer): AsyncGenerator<Buffer> {
    const keep = mark.length - 1;
    const none = Buffer.alloc(0);
    let piece = this.#buf;
    this.#buf = none;
    let held = none;
    for (;;) {
      if (held.length > 0) {
        // a mark starting in the held bytes ends within the piece's first `keep` bytes
        const joint = Buffer.concat([held, piece.subarray(0, keep)]);
        const at = joint.indexOf(mark);
        if (at >= 0) {
          if (at > 0) yield joint.subarray(0, at);
          this.#buf = piece.subarray(at + mark.length - held.length);
          return;
        }
        if (piece.length >= keep) yield held; // no mark starts in them
        else piece = joint; // too few bytes to tell: they go on together
        held = none;
      }
      const at = piece.indexOf(mark);
      if (at >= 0) {
        if (at > 0) yield piece.subarray(0, at);
        this.#buf = piece.subarray(at + mark.length);
        return;
      }
      const ready = Math.max(0, piece.length - keep);
      if (ready > 0) yield piece.subarray(0, ready);
      held = Buffer.from(piece.subarray(ready));
      piece = await this.#next();
    }
  }

  /** One RESP2 reply; an error reply is returned as a RedisReplyError, not thrown. */
  async reply(): Promise<Reply> {
    const head = await this.line();
    const kind = head[0];
    const rest = head.slice(1);
    switch (kind) {
      case '+':
        return rest;
      case '-':
        return new RedisReplyError(rest);
      case ':':
        return Number(rest);
      case '$': {
        const n = Number(rest);
        if (n === -1) return null;
        if (!Number.isInteger(n) || n < 0) throw new ConnectionLost('the server sent a malformed reply');
        if (n > this.#maxBulk) throw new ConnectionLost('the server sent a reply larger than a Redis server would');
        const data = await this.bytes(n + 2);
        return data.subarray(0, n);
      }
      case '*': {
        const n = Number(rest);
        if (n === -1) return null;
        if (!Number.isInteger(n) || n < 0) throw new ConnectionLost('the server sent a malformed reply');
        if (n > MAX_ARRAY_ITEMS) throw new ConnectionLost('the server sent a reply larger than a Redis server would');
        const items: Reply[] = [];
        for (let i = 0; i < n; i++) items.push(await this.reply());
        return items;
      }
      default:
        throw new ConnectionLost('the server sent a malformed reply (is it a Redis server?)');
    }
  }
}

/** One command in RESP: the header and each argument as separate buffers (a 50 MB payload is not copied). */
function encode(args: (string | Buffer)[]): Buffer[] {
  const out: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = typeof a === 'string' ? Buffer.from(a) : a;
    out.push(Buffer.from(`$${b.length}\r\n`), b, CRLF);
  }
  return out;
}

export class RespConnection {
  readonly reader: RespReader;
  readonly #socket: net.Socket;
  #onAbort: (() => void) | undefined;
  #signal: AbortSignal | undefined;

  constructor(socket: net.Socket | SocketPieces, opts: WireOptions) {
    const sock = socket instanceof SocketPieces ? socket.socket : socket;
    this.#socket = sock;
    sock.on('error', () => {}); // surfaces through the reader; never an unhandled 'error'
    this.reader = new RespReader(socket, opts.idleTimeoutMs ?? REDIS_IDLE_TIMEOUT_MS, opts.signal, opts.maxBulkBytes);
    if (opts.signal) {
      const signal = opts.signal;
      this.#signal = signal;
      this.#onAbort = () => sock.destroy(abortError(signal));
      signal.addEventListener('abort', this.#onAbort, { once: true });
    }
  }

  /** Writes the commands, waiting for the socket to drain when it asks (memory stays bounded). */
  async send(commands: (string | Buffer)[][]): Promise<void> {
    for (const cmd of commands) {
      for (const b of encode(cmd)) {
        if (!this.#socket.write(b)) await this.#drained();
      }
    }
  }

  #drained(): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.#socket.destroyed) return reject(new ConnectionLost('the connection closed'));
      const done = () => {
        this.#socket.off('drain', done);
        this.#socket.off('close', done);
        if (this.#socket.destroyed && this.#socket.writableNeedDrain) reject(new ConnectionLost('the connection closed'));
        else resolve();
      };
      this.#socket.once('drain', done);
      this.#socket.once('close', done);
    });
  }

  /** One command and its reply; an error reply is thrown as RedisReplyError. */
  async call(...args: (string | Buffer)[]): Promise<Reply> {
    const [reply] = await this.pipeline([args]);
    if (reply instanceof RedisReplyError) throw reply;
    return reply as Reply;
  }

  /**
   * Sends every command, then reads one reply per command in order; error replies are returned
   * in place. Replies are read while the commands are still being written, so a long pipeline
   * cannot deadlock on full socket buffers.
   */
  async pipeline(commands: (string | Buffer)[][]): Promise<Reply[]> {
    const reading = (async () => {
      const out: Reply[] = [];
      for (let i = 0; i < commands.length; i++) out.push(await this.reader.reply());
      return out;
    })();
    reading.catch(() => {});
    await Promise.all([this.send(commands), reading]);
    return reading;
  }

  close(): void {
    if (this.#onAbort) this.#signal?.removeEventListener('abort', this.#onAbort);
    this.#socket.destroy();
  }
}

/** Where to connect: the URL's host (what TLS names) and the addresses to try, in order. */
export interface RedisEndpoint {
  conn: RedisConnection;
  addresses: string[];
}

/**
 * The addresses a component may connect to: with a target policy, exactly those it returned
 * (a refusal is a ComponentError `redis target refused: ...`); without one (tools, tests) the
 * URL's host as written, resolved by the socket.
 */
export async function endpointFor(conn: RedisConnection, targets: TargetPolicy | undefined): Promise<RedisEndpoint> {
  if (!targets) return { conn, addresses: [conn.host] };
  const verdict = await targets.checkServer({ host: conn.host, port: conn.port });
  if ('problem' in verdict) throw new ComponentError(`redis target refused: ${verdict.problem}`);
  return { conn, addresses: verdict.addresses };
}

/** Why one connection attempt failed, in words fit for tenants. */
function connectReason(err: NodeJS.ErrnoException, timeoutMs: number): string {
  switch (err.code) {
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'ETIMEDOUT':
      return `no answer within ${timeoutMs >= 1000 ? `${Math.round(timeoutMs / 1000)} s` : `${timeoutMs} ms`}`;
    case 'EHOSTUNREACH':
    case 'EHOSTDOWN':
      return 'host unreachable';
    case 'ENETUNREACH':
      return 'network unreachable';
    case 'ECONNRESET':
    case 'EPIPE':
      return 'connection reset';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_NONAME':
      return 'host name does not resolve';
    default:
      if (err.code && /CERT|SSL|TLS|SELF_SIGNED|HOSTNAME|ERR_TLS/.test(err.code)) return `TLS handshake failed: ${err.code}`;
      return err.code ? `connection failed: ${err.code}` : 'connection failed';
  }
}

/** A TLS snapshot socket's read-ahead (its readable highWaterMark; Node's default is 16 KiB). */
const TLS_SNAPSHOT_READ_AHEAD = 8 * 1024 * 1024;

function connectOne(address: string, endpoint: RedisEndpoint, timeoutMs: number, signal?: AbortSignal, snapshot = false): Promise<net.Socket | SocketPieces> {
  return new Promise((resolve, reject) => {
    const { conn } = endpoint;
    const pieces = snapshot && !conn.tls ? SocketPieces.connect({ host: address, port: conn.port }) : null;
    const hwm = snapshot ? { readableHighWaterMark: TLS_SNAPSHOT_READ_AHEAD } : {};
    const socket =
      pieces?.socket ??
      (conn.tls ? tls.connect({ host: address, port: conn.port, ...hwm, ...(net.isIP(conn.host) ? {} : { servername: conn.host }) }) : net.connect({ host: address, port: conn.port }));
    const ready = conn.tls ? 'secureConnect' : 'connect';
    const finish = (err?: Error) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.off('error', finish);
      socket.off(ready, onReady);
      if (err) {
        socket.destroy();
        reject(err);
      }
    };
    const onReady = () => {
      finish();
      socket.setNoDelay(true);
      socket.setKeepAlive(true, 30_000);
      resolve(pieces ?? socket);
    };
    const onAbort = () => finish(abortError(signal as AbortSignal));
    const timer = setTimeout(() => finish(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' })), timeoutMs);
    socket.once('error', finish);
    socket.once(ready, onReady);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * A socket to the first of the endpoint's addresses that accepts within the connect timeout.
 * All failing: ComponentError `server unreachable (<reason of the last>)`.
 */
export async function openSocket(endpoint: RedisEndpoint, opts: WireOptions): Promise<net.Socket | SocketPieces> {
  const timeoutMs = opts.connectTimeoutMs ?? REDIS_CONNECT_TIMEOUT_MS;
  let last: NodeJS.ErrnoException | undefined;
  for (const address of endpoint.addresses) {
    opts.signal?.throwIfAborted();
    try {
      return await connectOne(address, endpoint, timeoutMs, opts.signal, opts.snapshot);
    } catch (err) {
      if ((err as Error).name === 'AbortError' || opts.signal?.aborted) throw err;
      last = err as NodeJS.ErrnoException;
    }
  }
  throw new ComponentError(`server unreachable (${connectReason(last ?? new Error('no address'), timeoutMs)})`, { detail: last?.message });
}

/** The server's words with the password taken out, bounded: for `detail` and for the rare message we pass on. */
export function redactReply(message: string, conn: RedisConnection): string {
  let text = message.length > 300 ? `${message.slice(0, 300)}...` : message;
  if (conn.password) text = text.split(conn.password).join('***');
  return text;
}

export function isAuthFailure(err: RedisReplyError): boolean {
  return (
    err.code === 'WRONGPASS' ||
    err.code === 'NOAUTH' ||
    /invalid (username-)?password|called without any password configured|no password is set/i.test(err.message)
  );
}

/**
 * An error reply as the tenant sees it: authentication problems as `authentication failed`,
 * a server still loading its data, else the server's own (redacted) words after `what`.
 */
export function replyFailure(err: RedisReplyError, conn: RedisConnection, what: string): ComponentError {
  const detail = redactReply(err.message, conn);
  if (isAuthFailure(err)) return new ComponentError('authentication failed', { detail });
  if (err.code === 'LOADING') return new ComponentError('the server is loading its data set; try again once it has', { detail });
  // Only the reply's code reaches the tenant: the save-time check must not turn the service into
  // a reader of banners of whatever answers on an address the operator allows.
  return new ComponentError(`${what} (${err.code})`, { detail });
}

/**
 * Connects, authenticates (`AUTH user password`, or `AUTH password` for the default user) and
 * selects the URL's database, which must exist. Failures are ComponentErrors: `server unreachable
 * (...)`, `authentication failed`, `database <n> does not exist on the server`.
 */
export async function openRedis(endpoint: RedisEndpoint, opts: WireOptions): Promise<RespConnection> {
  const { conn } = endpoint;
  const c = new RespConnection(await openSocket(endpoint, opts), opts);
  try {
    const commands: string[][] = [];
    if (conn.password !== undefined) commands.push(conn.username !== undefined ? ['AUTH', conn.username, conn.password] : ['AUTH', conn.password]);
    if (conn.db !== 0) commands.push(['SELECT', String(conn.db)]);
    commands.push(['PING']);
    const replies = await c.pipeline(commands);
    for (const [i, reply] of replies.entries()) {
      if (!(reply instanceof RedisReplyError)) continue;
      if (isAuthFailure(reply)) throw replyFailure(reply, conn, 'authentication failed');
      if (commands[i]?.[0] === 'SELECT' && /out of range|invalid db|DB index/i.test(reply.message)) {
        throw new ComponentError(`database ${conn.db} does not exist on the server`, { detail: reply.message });
      }
      if (commands[i]?.[0] === 'AUTH' && reply.code === 'ERR' && /unknown command/i.test(reply.message)) {
        throw new ComponentError('authentication failed (the server does not support AUTH)', { detail: redactReply(reply.message, conn) });
      }
      if (commands[i]?.[0] === 'AUTH' && conn.username !== undefined && /wrong number of arguments/i.test(reply.message)) {
        // Redis < 6 knows no users
        throw new ComponentError('authentication failed (the server has no ACL users: give only a password, redis://:password@host)', { detail: redactReply(reply.message, conn) });
      }
      throw replyFailure(reply, conn, 'the server refused the connection');
    }
    return c;
  } catch (err) {
    c.close();
    throw err;
  }
}
