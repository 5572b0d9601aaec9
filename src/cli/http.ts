import { createApiClient, type ApiClient } from '../client/index.js';
import type { Credentials, Settings } from './config.js';
import { CliError, EXIT, type ExitCode } from './exit.js';
import { humanSeconds } from './format.js';

/** How hard the CLI tries before it gives up with exit 6. */
export interface RetryPolicy {
  /** Attempts in all, the first included. */
  attempts: number;
  /** Delay before the second attempt; doubled before each further one (with jitter). */
  firstDelayMs: number;
  /** Longest wait for the answer's headers of one attempt. */
  headersTimeoutMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 4, firstDelayMs: 500, headersTimeoutMs: 30_000 };

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** "ECONNREFUSED", "ECONNRESET", "timed out"...: the reason a fetch threw, for one line of output. */
function networkReason(err: unknown): string {
  let e: unknown = err;
  let message = err instanceof Error ? err.message : String(err);
  for (let depth = 0; depth < 4 && e instanceof Error; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && code !== 'ABORT_ERR') return code;
    if (e.name === 'AbortError' || e.name === 'TimeoutError') return 'no answer in time';
    message = e.message;
    e = (e as { cause?: unknown }).cause;
  }
  return message;
}

/**
 * A fetch that sends the same request again on a connection error or a 5xx, a few times with
 * a growing delay. The request is cloned for each attempt, so it goes again byte for byte, its
 * Idempotency-Key included: a POST whose answer was lost in a dropped connection is replayed by
 * the service instead of creating a second backup. After the last attempt: a 5xx answer is
 * returned (the caller maps it to exit 6), a connection error becomes a CliError(6).
 */
export function retryingFetch(policy: RetryPolicy, note: (line: string) => void, base: typeof fetch = fetch): (req: Request) => Promise<Response> {
  return async (req) => {
    for (let attempt = 1; ; attempt++) {
      const last = attempt >= policy.attempts;
      const ac = new AbortController();
      const timer = setTimeout(() => ac.abort(), policy.headersTimeoutMs);
      let res: Response;
      try {
        // Only the wait for the headers is bounded: a download may stream for hours.
        res = await base(new Request(req.clone(), { signal: ac.signal }));
      } catch (err) {
        const reason = networkReason(err);
        if (last) throw new CliError(EXIT.unavailable, `cannot reach the service at ${new URL(req.url).origin} (${reason}) after ${policy.attempts} attempts`);
        const delay = backoff(policy, attempt);
        note(`${req.method} ${new URL(req.url).pathname}: ${reason}; trying again in ${humanSeconds(delay / 1000)} (attempt ${attempt + 1} of ${policy.attempts})`);
        await sleep(delay);
        continue;
      } finally {
        clearTimeout(timer);
      }
      if (res.status < 500 || last || (await isIntegrityProblem(res))) return res;
      await res.body?.cancel().catch(() => {});
      const hinted = retryAfterSeconds(res);
      const delay = hinted !== null && hinted <= 10 ? hinted * 1000 : backoff(policy, attempt);
      note(`${req.method} ${new URL(req.url).pathname}: the service answered ${res.status}; trying again in ${humanSeconds(delay / 1000)} (attempt ${attempt + 1} of ${policy.attempts})`);
      await sleep(delay);
    }
  };
}

function backoff(policy: RetryPolicy, attempt: number): number {
  const d = policy.firstDelayMs * 2 ** (attempt - 1);
  return Math.round(d * (0.8 + Math.random() * 0.4));
}

/** A damaged backup answers 500 with this problem type: sending the request again changes nothing. */
async function isIntegrityProblem(res: Response): Promise<boolean> {
  if (res.status !== 500 || !(res.headers.get('content-type') ?? '').includes('problem+json')) return false;
  const body = (await res.clone().json().catch(() => null)) as { type?: unknown } | null;
  return body?.type === '/problems/integrity-error';
}

/** Retry-After in seconds (delta-seconds or an HTTP date), or null. */
export function retryAfterSeconds(res: Response): number | null {
  const v = res.headers.get('retry-after');
  if (!v) return null;
  if (/^\d+$/.test(v.trim())) return Number(v.trim());
  const at = Date.parse(v);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

/** An answer that is not a success, as the CliError its status means (SPEC 9 exit codes). */
export class ApiError extends CliError {
  constructor(
    code: ExitCode,
    message: string,
    readonly status: number,
    /** Seconds the service asked to wait (429). */
    readonly retryAfter: number | null,
  ) {
    super(code, message);
  }
}

function exitCodeOf(status: number): ExitCode {
  if (status === 401 || status === 403) return EXIT.auth;
  if (status === 404) return EXIT.notFound;
  if (status === 409 || status === 429) return EXIT.refused;
  if (status >= 500) return EXIT.unavailable;
  return EXIT.usage;
}

/** The problem's detail (and its field errors), or the body's text. */
function describeProblem(body: unknown): string {
  if (body && typeof body === 'object') {
    const p = body as { detail?: unknown; title?: unknown; errors?: unknown; error?: unknown; error_description?: unknown };
    if (typeof p.error === 'string') return typeof p.error_description === 'string' ? `${p.error}: ${p.error_description}` : p.error;
    const head = typeof p.detail === 'string' && p.detail ? p.detail : typeof p.title === 'string' ? p.title : JSON.stringify(body);
    const fields = Array.isArray(p.errors) ? (p.errors as { path?: unknown; message?: unknown }[]).map((e) => `${String(e.path)}: ${String(e.message)}`) : [];
    return fields.length ? `${head} (${fields.join('; ')})` : head;
  }
  return typeof body === 'string' && body ? body.slice(0, 500) : '(no details)';
}

export function apiError(res: Response, body: unknown, what: string): ApiError {
  const status = res.status;
  const code = exitCodeOf(status);
  const detail = describeProblem(body);
  const retryAfter = status === 429 ? retryAfterSeconds(res) : null;
  let message = `${what}: ${status} ${detail}`;
  if (status === 429) {
    message +=
      retryAfter !== null
        ? `; retry after ${humanSeconds(retryAfter)} (at ${new Date(Date.now() + retryAfter * 1000).toISOString()})`
        : '; retry later';
  } else if (status === 409) {
    message += '; retry once the work in progress has ended';
  }
  return new ApiError(code, message, status, retryAfter);
}

/** The data of a successful openapi-fetch answer, or the ApiError its status means. */
export async function ok<D, E>(p: Promise<{ data?: D; error?: E; response: Response }>, what: string): Promise<{ data: D; response: Response }> {
  const r = await p;
  if (!r.response.ok) throw apiError(r.response, r.error, what);
  return { data: r.data as D, response: r.response };
}

/**
 * The bearer credential: the token itself, or an access token from POST /oauth/token
 * (client_credentials, the client authenticating by HTTP Basic as RFC 6749 2.3.1 prefers),
 * kept until shortly before it expires so that a long --wait renews it.
 */
export function tokenSource(url: string, creds: Credentials, fetcher: (req: Request) => Promise<Response>): () => Promise<string> {
  if (creds.kind === 'token') return async () => creds.token;
  let cached: { token: string; renewAt: number } | null = null;
  return async () => {
    if (cached && Date.now() < cached.renewAt) return cached.token;
    const basic = Buffer.from(`${encodeURIComponent(creds.clientId)}:${encodeURIComponent(creds.clientSecret)}`).toString('base64');
    const res = await fetcher(
      new Request(`${url}/oauth/token`, {
        method: 'POST',
        headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: new URLSearchParams({ grant_type: 'client_credentials' }).toString(),
      }),
    );
    const text = await res.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON: described as text
    }
    if (!res.ok) {
      const err = apiError(res, body, 'POST /oauth/token');
      // The token endpoint answers a refused client with 400/401 (RFC 6749 5.2): authentication either way.
      if (res.status === 400 || res.status === 401) throw new ApiError(EXIT.auth, err.message, res.status, null);
      throw err;
    }
    const t = body as { access_token?: unknown; expires_in?: unknown };
    if (typeof t.access_token !== 'string') throw new CliError(EXIT.unavailable, 'POST /oauth/token answered without an access_token');
    const ttl = typeof t.expires_in === 'number' && t.expires_in > 0 ? t.expires_in : 300;
    cached = { token: t.access_token, renewAt: Date.now() + Math.max(1, ttl - Math.min(30, ttl / 2)) * 1000 };
    return cached.token;
  };
}

export interface Api {
  client: ApiClient;
  settings: Settings;
  /** Progress and retry notes go to stderr; results to stdout. */
  note(line: string): void;
}

export function connect(settings: Settings, note: (line: string) => void, policy: RetryPolicy = DEFAULT_RETRY): Api {
  const fetcher = retryingFetch(policy, note);
  const client = createApiClient({
    baseUrl: settings.url,
    token: tokenSource(settings.url, settings.credentials, fetcher),
    fetch: fetcher,
    headers: { 'user-agent': 'backupctl' },
  });
  return { client, settings, note };
}
