import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { dbnameArgument, type PostgresConnection } from './postgres-connection.js';
import { describePostgresFailure } from './postgres-errors.js';
import { childEnv, StderrTail } from './process.js';
import { ComponentError } from './types.js';

/**
 * An exported snapshot (SPEC section 11, "the shortest pause"): a psql session, over the same
 * libpq connection settings pg_dump uses (pinned addresses, TLS, password), opens a REPEATABLE
 * READ transaction and exports its snapshot with `pg_export_snapshot()`. From that moment the
 * component's data is fixed: `pg_dump --snapshot=<id>` dumps exactly what the snapshot saw,
 * however long the dump takes and whatever is written meanwhile. The transaction must stay open
 * until pg_dump has imported the snapshot; it is held until `release()`, which commits it (it
 * wrote nothing) and ends psql.
 */
export interface ExportedSnapshot {
  id: string;
  release(): Promise<void>;
}

const SNAPSHOT_ID = /^[0-9A-F]+-[0-9A-F]+(-[0-9A-F]+)?$/i;
const TIMEOUT_MS = 60_000;

export async function exportSnapshot(conn: PostgresConnection, opts: { signal?: AbortSignal; log?: { debug(obj: object, msg: string): void } } = {}): Promise<ExportedSnapshot> {
  opts.signal?.throwIfAborted();
  const child = spawn('psql', ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '--no-password', dbnameArgument(conn.database)], {
    env: childEnv(conn.env),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const stderr = new StderrTail();
  child.stderr.on('data', (b: Buffer) => stderr.push(b));
  child.stdin.on('error', () => {}); // psql gone: the exit below says why
  const exited = new Promise<number | null>((resolve) => {
    child.once('error', () => resolve(null));
    child.once('close', (code) => resolve(code));
  });
  const failure = async (what: string) => {
    child.kill('SIGTERM');
    const code = await exited;
    const raw = conn.redact(stderr.text());
    opts.log?.debug({ tool: 'psql', code, stderr: raw }, 'exporting a snapshot failed');
    return new ComponentError(`postgres: ${what}: ${describePostgresFailure(raw)}`, { detail: raw });
  };
  const lines = createInterface({ input: child.stdout });
  const first = new Promise<string | null>((resolve) => {
    lines.once('line', (l) => resolve(l.trim()));
    lines.once('close', () => resolve(null));
  });
  child.stdin.write('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\nSELECT pg_export_snapshot();\n');
  let timer: NodeJS.Timeout | undefined;
  const onAbort = () => child.kill('SIGTERM');
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const id = await Promise.race([first, new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), TIMEOUT_MS)))]);
    if (opts.signal?.aborted) throw opts.signal.reason;
    if (id === 'timeout') throw await failure('no snapshot within 60 s');
    if (!id || !SNAPSHOT_ID.test(id)) throw await failure('could not export a snapshot');
    let released: Promise<void> | undefined;
    return {
      id,
      release() {
        released ??= (async () => {
          opts.signal?.removeEventListener('abort', onAbort);
          child.stdin.end('COMMIT;\n');
          const code = await Promise.race([exited, new Promise<'late'>((resolve) => setTimeout(() => resolve('late'), 10_000).unref())]);
          if (code === 'late') child.kill('SIGKILL');
          lines.close();
        })();
        return released;
      },
    };
  } catch (err) {
    opts.signal?.removeEventListener('abort', onAbort);
    child.kill('SIGTERM');
    lines.close();
    throw err;
  } finally {
    clearTimeout(timer);
  }
}
