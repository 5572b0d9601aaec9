import net from 'node:net';

/** Read buffers of a SocketPieces, and how many: a socket read returns at most one buffer's worth. */
const BUFFER_BYTES = 256 * 1024;
const BUFFERS = 6;

/**
 * A socket read into a few buffers reused from read to read (net's `onread`), its data handed out
 * one piece at a time by `next()`: a piece is a view of one of those buffers and stays valid only
 * until `next()` is called again. A consumer that copies each piece before asking for the next
 * (the repository writer copies into its block at once) then reads any amount of data without
 * making garbage. (A plain socket or pipe allocates a fresh buffer per read; on the main heap that
 * much external memory churning through drives a full collection every ~64 MB: seconds per GB.)
 *
 * Reading pauses while every buffer but one is queued or held (the one left is the next read's),
 * so a slow consumer pushes back on the peer as a paused socket does.
 */
export class SocketPieces {
  readonly socket: net.Socket;
  readonly #free: Buffer[];
  /** Pieces read and not handed out yet, each a view of its own buffer. */
  readonly #queue: Buffer[] = [];
  /** The buffer of the piece handed out last: free again at the next `next()`. */
  #held: Buffer | null = null;
  #ended = false;
  #error: Error | null = null;
  #wake: (() => void) | null = null;

  /** `net.connect` with `opts` (a TCP or a Unix socket), read this way. */
  static connect(opts: net.NetConnectOpts): SocketPieces {
    return new SocketPieces(opts);
  }

  private constructor(opts: net.NetConnectOpts) {
    this.#free = Array.from({ length: BUFFERS }, () => Buffer.allocUnsafeSlow(BUFFER_BYTES));
    this.socket = net.connect({
      ...opts,
      onread: {
        // Node asks for the next read's buffer after each read (and once at the start). A read
        // that leaves at most one free buffer pauses reading, so there always is one.
        buffer: () => this.#free.pop() ?? Buffer.allocUnsafeSlow(BUFFER_BYTES),
        callback: (n: number, buf: Uint8Array) => {
          this.#queue.push(Buffer.from(buf.buffer, buf.byteOffset, n));
          this.#notify();
          return this.#free.length > 1;
        },
      },
    } as net.NetConnectOpts);
    this.socket.on('error', (err) => {
      this.#error ??= err;
      this.#notify();
    });
    this.socket.once('end', () => {
      this.#ended = true;
      this.#notify();
    });
    this.socket.once('close', () => {
      this.#ended = true;
      this.#notify();
    });
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  /** The next piece, or null once the peer ended the connection; the socket's error, if it failed. The previous piece is invalid from now on. */
  async next(): Promise<Buffer | null> {
    if (this.#held) {
      this.#free.push(this.#held);
      this.#held = null;
      this.socket.resume(); // restarts reading if a read paused it
    }
    for (;;) {
      const piece = this.#queue.shift();
      if (piece) {
        this.#held = Buffer.from(piece.buffer, piece.byteOffset, BUFFER_BYTES);
        return piece;
      }
      if (this.#error) throw this.#error;
      if (this.#ended) return null;
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
  }

  /** Wakes a pending `next()` with `err` (an abort). */
  fail(err: Error): void {
    this.#error ??= err;
    this.#notify();
  }

  destroy(): void {
    this.socket.destroy();
  }
}
