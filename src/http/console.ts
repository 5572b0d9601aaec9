/**
 * Serves the console (SPEC section 14) at /console from its bundled build, dist/console (made by
 * `npm run build:console`, which `npm install` runs). Outside the API: no credential is needed to
 * fetch the page; the page itself asks for an API key and sends it on every API call.
 *
 * Invariants:
 * - Every answer under /console carries a strict Content-Security-Policy (no inline script or
 *   style, no eval, connections to this origin only), X-Frame-Options: DENY, nosniff and
 *   no-referrer, so an injected string cannot run and the page cannot be framed.
 * - Only files inside the build folder are sent; any other path under /console that does not look
 *   like a file gets index.html (the console routes in the browser), one that does gets 404.
 * - When the build is missing (a clone started without `npm install`'s scripts), it is made once,
 *   on start (onListen) or on the first request, into a temporary folder renamed into place, so
 *   two processes building at once never serve half a build. If the build fails, the console
 *   answers 503 with a page telling the operator to run `npm run build:console`.
 * - Not part of the API's document: every route is hidden from OpenAPI.
 */
import { randomBytes } from 'node:crypto';
import { access, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { PROJECT_ROOT } from '../lib/project-root.js';

export const CONSOLE_BUILD_DIR = path.join(PROJECT_ROOT, 'dist', 'console');
const VITE_CONFIG = path.join(PROJECT_ROOT, 'web', 'vite.config.ts');

export const CONSOLE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'self'",
].join('; ');

const SECURITY_HEADERS = {
  'content-security-policy': CONSOLE_CSP,
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

/** A path under /console that names a file (has an extension) rather than a page of the console. */
const FILE_LIKE = /\.[A-Za-z0-9]{1,8}$/;

export interface ConsoleOptions {
  /** The build folder; default dist/console of this checkout. */
  root?: string;
  /** Build the console when the folder has no index.html; default true. */
  buildIfMissing?: boolean;
}

const exists = (p: string) => access(p).then(
  () => true,
  () => false,
);

/** Builds the console into `root` with vite (web/vite.config.ts), through a temporary sibling folder. */
async function buildInto(root: string): Promise<void> {
  const tmp = `${root}.build-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    const { build } = await import('vite');
    await build({ configFile: VITE_CONFIG, logLevel: 'warn', build: { outDir: tmp, emptyOutDir: true } });
    await rm(root, { recursive: true, force: true }).catch(() => {});
    await rename(tmp, root).catch(async (err: NodeJS.ErrnoException) => {
      // Another process put its build in place first: use that one.
      if (!(await exists(path.join(root, 'index.html')))) throw err;
    });
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

const UNAVAILABLE_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Console not built</title></head>
<body><main><h1>The console is not built</h1>
<p>The service could not build its console. On the server, run <code>npm run build:console</code> and reload this page.</p>
</main></body></html>
`;

export async function consolePlugin(app: FastifyInstance, opts: ConsoleOptions = {}) {
  const root = opts.root ?? CONSOLE_BUILD_DIR;
  const buildIfMissing = opts.buildIfMissing ?? true;
  let building: Promise<boolean> | null = null;
  let failedAt = 0;

  /** True once root holds a build; builds it at most once at a time (again a minute after a failure). */
  async function ready(): Promise<boolean> {
    if (await exists(path.join(root, 'index.html'))) return true;
    if (!buildIfMissing || Date.now() - failedAt < 60_000) return false;
    building ??= (async () => {
      app.log.info({ root }, 'console: no build found, building it (npm run build:console)');
      try {
        await buildInto(root);
        app.log.info('console: built');
        return true;
      } catch (err) {
        failedAt = Date.now();
        app.log.error({ err }, 'console: build failed; run `npm run build:console`');
        return false;
      } finally {
        building = null;
      }
    })();
    return building;
  }

  // serve: false: the routes below decide what is sent; the plugin only streams files (with
  // ETag, ranges and path containment).
  await app.register(fastifyStatic, { root, serve: false, suppressWarning: true, index: false });

  app.addHook('onListen', async () => {
    if (buildIfMissing) void ready();
  });
  app.addHook('onSend', async (_req, reply) => {
    void reply.headers(SECURITY_HEADERS);
  });

  // The page must be revalidated (it names the current assets); vite names every asset by its
  // content hash, so an asset never changes under its name.
  const FOREVER = { maxAge: 365 * 24 * 3600 * 1000, immutable: true };
  const sendIndex = (reply: FastifyReply) => reply.header('cache-control', 'no-cache').type('text/html; charset=utf-8').sendFile('index.html', root, { cacheControl: false });

  async function serve(rel: string, reply: FastifyReply) {
    if (!(await ready())) return reply.code(503).header('retry-after', '30').type('text/html; charset=utf-8').send(UNAVAILABLE_PAGE);
    const file = path.resolve(root, rel);
    if (rel && file.startsWith(root + path.sep)) {
      const st = await stat(file).catch(() => null);
      if (st?.isFile()) {
        if (rel.startsWith('assets/')) return reply.sendFile(rel, root, FOREVER);
        return reply.header('cache-control', 'no-cache').sendFile(rel, root, { cacheControl: false });
      }
    }
    if (FILE_LIKE.test(rel)) return reply.code(404).type('text/plain; charset=utf-8').send('not found');
    return sendIndex(reply);
  }

  app.get('/console', { schema: { hide: true } }, async (_req, reply) => serve('', reply));
  app.get<{ Params: { '*': string } }>('/console/*', { schema: { hide: true } }, async (req, reply) => serve(req.params['*'] ?? '', reply));
}
