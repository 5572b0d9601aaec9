/**
 * A real S3-compatible HTTP server for tests: s3rver (pure JS, filesystem-backed) in a child
 * process on 127.0.0.1 and a free port. Test-only: s3rver is a devDependency.
 *
 * Two gaps of s3rver 3.7 are covered here:
 * - it answers neither AbortMultipartUpload (405) nor ListMultipartUploads (501): a middleware adds
 *   both over s3rver's own on-disk upload directories, so tests can prove that a failed put leaves
 *   no multipart upload behind;
 * - it signs ListObjectsV2 continuation tokens with DES, which OpenSSL 3 only has in its legacy
 *   provider: hence a child process started with --openssl-legacy-provider, not an in-process server.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const S3_TEST_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const;

/** Path of the test-only endpoint that returns (GET) or clears (DELETE) the request log. */
const REQUEST_LOG_PATH = '/__test__/requests';
const CHILD_FLAG = 'S3_TEST_SERVER_CHILD';

export interface S3TestServer {
  endpoint: string;
  /** One line per S3 request since the last reset, `METHOD /path?query-names`, to assert which operations were sent. */
  requests(): Promise<string[]>;
  resetRequests(): Promise<void>;
  close(): Promise<void>;
}

/** Starts s3rver with `buckets` created; credentials are S3_TEST_CREDENTIALS. */
export async function startS3TestServer(buckets: string[]): Promise<S3TestServer> {
  const here = fileURLToPath(import.meta.url);
  const child = spawn(process.execPath, ['--openssl-legacy-provider', '--import', 'tsx', here], {
    cwd: path.dirname(here), // so that 'tsx' resolves from this repository's node_modules
    env: { ...process.env, [CHILD_FLAG]: JSON.stringify(buckets) },
    // stdin is the child's lifeline: it exits when the pipe closes, even if this process dies.
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const endpoint = await readEndpoint(child);
  const control = new URL(REQUEST_LOG_PATH, endpoint).href;
  return {
    endpoint,
    async requests() {
      const res = await fetch(control);
      if (!res.ok) throw new Error(`s3 test server request log: HTTP ${res.status}`);
      return (await res.json()) as string[];
    },
    async resetRequests() {
      const res = await fetch(control, { method: 'DELETE' });
      if (!res.ok) throw new Error(`s3 test server request log: HTTP ${res.status}`);
    },
    async close() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.stdin?.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

function readEndpoint(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error('s3 test server did not start within 20 s'));
    }, 20_000);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`s3 test server exited before listening (code ${code}, signal ${signal})`));
    });
    if (!child.stdout) return reject(new Error('s3 test server has no stdout'));
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      const match = /^LISTENING (\d+)$/.exec(line);
      if (!match) return;
      clearTimeout(timer);
      child.removeAllListeners('exit');
      resolve(`http://127.0.0.1:${match[1]}`);
    });
  });
}

// ---- the child process --------------------------------------------------------------------

/** The slice of koa's context the middleware uses. */
interface KoaContext {
  method: string;
  path: string;
  query: Record<string, string | string[] | undefined>;
  status: number;
  type: string;
  body: unknown;
}
type Middleware = (ctx: KoaContext, next: () => Promise<void>) => Promise<void>;

interface S3rverInstance {
  middleware: Middleware[];
  store: { getResourcePath(bucket: string, key: string | undefined, resource: string): string };
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
}
type S3rverConstructor = new (options: Record<string, unknown>) => S3rverInstance;

function xmlEscape(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

function errorXml(ctx: KoaContext, status: number, code: string, message: string): void {
  ctx.status = status;
  ctx.type = 'application/xml';
  ctx.body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${xmlEscape(message)}</Message></Error>`;
}

function testMiddleware(server: S3rverInstance): Middleware {
  const uploadsDir = (bucket: string) => server.store.getResourcePath(bucket, undefined, 'uploads');
  let requests: string[] = [];

  return async (ctx, next) => {
    if (ctx.path === REQUEST_LOG_PATH) {
      if (ctx.method === 'DELETE') requests = [];
      ctx.status = 200;
      ctx.type = 'application/json';
      ctx.body = JSON.stringify(requests);
      return;
    }
    requests.push(`${ctx.method} ${ctx.path}?${Object.keys(ctx.query).sort().join('&')}`);
    const [bucket = '', ...keyParts] = ctx.path.split('/').filter((segment) => segment !== '');
    const uploadId = ctx.query.uploadId;

    if (ctx.method === 'DELETE' && keyParts.length > 0 && typeof uploadId === 'string') {
      // Upload ids are hex; anything else cannot name a directory of ours.
      const dir = /^[0-9a-f]+$/.test(uploadId) ? path.join(uploadsDir(bucket), uploadId) : undefined;
      const entries = dir ? await readdir(dir).catch(() => undefined) : undefined;
      if (!dir || !entries) return errorXml(ctx, 404, 'NoSuchUpload', 'The specified upload does not exist.');
      await rm(dir, { recursive: true, force: true });
      ctx.status = 204;
      ctx.body = null;
      return;
    }

    if (ctx.method === 'GET' && keyParts.length === 0 && 'uploads' in ctx.query) {
      const prefix = typeof ctx.query.prefix === 'string' ? ctx.query.prefix : '';
      const ids = await readdir(uploadsDir(bucket)).catch(() => [] as string[]);
      const uploads: string[] = [];
      for (const id of ids.sort()) {
        // A directory without its key file is a part written after an abort: report it, it is a leak.
        const key = await readFile(path.join(uploadsDir(bucket), id, 'key'), 'utf8').catch(() => '');
        if (key !== '' && !key.startsWith(prefix)) continue;
        uploads.push(`<Upload><Key>${xmlEscape(key)}</Key><UploadId>${id}</UploadId><Initiated>${new Date().toISOString()}</Initiated></Upload>`);
      }
      ctx.status = 200;
      ctx.type = 'application/xml';
      ctx.body =
        `<?xml version="1.0" encoding="UTF-8"?>\n<ListMultipartUploadsResult><Bucket>${xmlEscape(bucket)}</Bucket>` +
        `<Prefix>${xmlEscape(prefix)}</Prefix><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>${uploads.join('')}</ListMultipartUploadsResult>`;
      return;
    }

    await next();
  };
}

async function serveUntilStdinCloses(buckets: string[]): Promise<void> {
  const S3rver = createRequire(import.meta.url)('s3rver') as S3rverConstructor;
  const directory = await mkdtemp(path.join(tmpdir(), 's3rver-'));
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: process.env.S3RVER_DEBUG !== '1',
    directory,
    configureBuckets: buckets.map((name) => ({ name })),
  });
  // Koa composes its middleware array when the server starts, so this one can go first.
  server.middleware.unshift(testMiddleware(server));
  const { port } = await server.run();
  process.stdout.write(`LISTENING ${port}\n`);

  const shutdown = async () => {
    await server.close().catch(() => {});
    await rm(directory, { recursive: true, force: true });
    process.exit(0);
  };
  process.stdin.on('end', () => void shutdown());
  process.stdin.on('error', () => void shutdown());
  process.on('SIGTERM', () => void shutdown());
  process.stdin.resume();
}

const childBuckets = process.env[CHILD_FLAG];
if (childBuckets !== undefined && process.argv[1] === fileURLToPath(import.meta.url)) {
  await serveUntilStdinCloses(JSON.parse(childBuckets) as string[]);
}
