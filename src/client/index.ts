/**
 * The typed client of the API: openapi-fetch over the types openapi-typescript generates from
 * openapi/openapi.json (src/client/schema.d.ts, kept in step by `npm run openapi`). Used by the
 * CLI and the tests; every call is checked against the document at compile time.
 */
import createClient, { type Client, type Middleware } from 'openapi-fetch';
import type { components, operations, paths } from './schema.js';

export type { components, operations, paths } from './schema.js';
/** The document's named schemas, e.g. `Schemas['Backup']`. */
export type Schemas = components['schemas'];
export type ApiClient = Client<paths>;

export interface ApiClientOptions {
  /** The service's root, e.g. `https://backups.example.com` (the paths already start with /v1). */
  baseUrl: string;
  /**
   * The bearer credential: an API key, the platform token, or an OAuth2 access token. A function
   * is asked before every request (so a caller can renew a short-lived token); omitted: no
   * Authorization header (the probes need none).
   */
  token?: string | (() => string | Promise<string>);
  /** Replaces globalThis.fetch (tests, proxies). */
  fetch?: (input: Request) => Promise<Response>;
  /** Extra headers sent with every request. */
  headers?: Record<string, string>;
}

export function createApiClient(opts: ApiClientOptions): ApiClient {
  const client = createClient<paths>({
    baseUrl: opts.baseUrl.replace(/\/+$/, ''),
    ...(opts.headers && { headers: opts.headers }),
    ...(opts.fetch && { fetch: opts.fetch }),
  });
  const { token } = opts;
  if (token !== undefined) {
    const auth: Middleware = {
      async onRequest({ request }) {
        const value = typeof token === 'function' ? await token() : token;
        request.headers.set('authorization', `Bearer ${value}`);
        return request;
      },
    };
    client.use(auth);
  }
  return client;
}

/** The problem+json body every error answer carries (RFC 9457). */
export type Problem = Schemas['Problem'];
/** Operation ids of the document, e.g. `'createBackup'`. */
export type OperationId = keyof operations;
