/**
 * The console's only way to the API: the typed client of src/client (openapi-fetch over the
 * generated schema), same origin. The credential (an API key, or an API client's id and secret
 * with its current access token) lives in sessionStorage only (gone with the tab), is sent as
 * `Authorization: Bearer` and never put in a URL, a log or the page.
 */
import { createApiClient, type ApiClient, type Problem, type Schemas } from '../../src/client/index.ts';

export type { Schemas, Problem };
export type Backup = Schemas['Backup'];
export type Cluster = Schemas['Cluster'];
export type Policy = Schemas['Policy'];
export type Retention = Schemas['Retention'];
// The server's own list of event types (a runtime list, which the generated types cannot give).
export { EVENT_TYPES, type EventType } from '../../src/modules/events/event-types.ts';

const KEY = 'backups-console.credential';

/**
 * What the tab signed in with: an API key, or an API client whose secret is exchanged at
 * POST /oauth/token for short-lived access tokens (renewed shortly before they expire).
 */
export type Credential =
  | { kind: 'key'; token: string }
  | { kind: 'client'; clientId: string; clientSecret: string; accessToken: string; renewAt: number };

function read(): Credential | null {
  try {
    const raw = sessionStorage.getItem(KEY);
    return raw ? (JSON.parse(raw) as Credential) : null;
  } catch {
    return null;
  }
}

export const session = {
  signedIn: (): boolean => read() !== null,
  signIn: (c: Credential) => sessionStorage.setItem(KEY, JSON.stringify(c)),
  signOut: () => sessionStorage.removeItem(KEY),
  /** The bearer token to send now (an API client's is renewed when due, once for all requests waiting). */
  async token(): Promise<string> {
    const c = read();
    if (!c) return '';
    if (c.kind === 'key') return c.token;
    if (Date.now() < c.renewAt) return c.accessToken;
    renewing ??= exchange(c.clientId, c.clientSecret).finally(() => (renewing = null));
    const renewed = await renewing;
    // Kept only if the tab is still signed in as that client: a sign-out during the renewal stands.
    const now = read();
    if (now?.kind === 'client' && now.clientId === c.clientId) session.signIn(renewed);
    return renewed.accessToken;
  },
};
/** The renewal under way, shared by the requests that found the token due. */
let renewing: Promise<Extract<Credential, { kind: 'client' }>> | null = null;

/** Called when the API answers 401 to a signed-in console (the key was revoked or expired). */
let onUnauthorized: () => void = () => {};
export function whenUnauthorized(fn: () => void) {
  onUnauthorized = fn;
}

/**
 * Every request without ambient credentials: the console never relies on cookies or the browser's
 * HTTP auth cache, and a 401 with `WWW-Authenticate: Basic` (the token endpoint's answer to a
 * wrong secret) must come back to the page instead of opening the browser's login dialog.
 */
const send = (req: Request) => fetch(req, { credentials: 'omit' });

export const api: ApiClient = createApiClient({
  baseUrl: window.location.origin,
  token: () => session.token(),
  fetch: async (req) => {
    const res = await send(req);
    if (res.status === 401 && session.signedIn()) onUnauthorized();
    return res;
  },
});

/** A client for a key that is not signed in yet (the sign-in form checks it first). */
export function clientFor(token: string): ApiClient {
  return createApiClient({ baseUrl: window.location.origin, token, fetch: send });
}

/** client_credentials at POST /oauth/token (the secret in the form body, never in a URL). */
export async function exchange(clientId: string, clientSecret: string): Promise<Extract<Credential, { kind: 'client' }>> {
  const r = await createApiClient({ baseUrl: window.location.origin, fetch: send }).POST('/oauth/token', {
    body: { grant_type: 'client_credentials', client_id: clientId, client_secret: clientSecret },
    bodySerializer: (b) => new URLSearchParams(b as Record<string, string>).toString(),
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
  });
  if (!r.response.ok) {
    const e = r.error as { error_description?: string; detail?: string } | undefined;
    throw new Error(e?.error_description ?? e?.detail ?? `the service answered ${r.response.status}`);
  }
  const t = r.data!;
  const ttl = t.expires_in > 0 ? t.expires_in : 300;
  return { kind: 'client', clientId, clientSecret, accessToken: t.access_token, renewAt: Date.now() + Math.max(1, ttl - Math.min(30, ttl / 2)) * 1000 };
}

/** An API error as the console shows it: the problem's detail, and each field's message by path. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly problem: Problem | null,
  ) {
    super(problem?.detail ?? `the service answered ${status}`);
  }
  get fields(): { path: string; message: string }[] {
    return this.problem?.errors ?? [];
  }
}

/** The data of an openapi-fetch answer, or an ApiError carrying its problem+json body. */
export function ok<T>(r: { data?: T; error?: unknown; response: Response }): T {
  if (r.response.ok) return r.data as T;
  const e = r.error as Problem | undefined;
  throw new ApiError(r.response.status, e && typeof e === 'object' && 'status' in e ? e : null);
}

export function message(err: unknown): string {
  if (err instanceof ApiError) {
    const fields = err.fields.map((f) => `${f.path}: ${f.message}`).join('; ');
    return fields ? `${err.message} (${fields})` : err.message;
  }
  return err instanceof Error ? err.message : String(err);
}

/**
 * Downloads a component's portable copy through fetch (the key goes in the Authorization header,
 * never in a link) and hands the bytes to the browser as a file.
 */
export async function downloadComponent(clusterId: string, backupId: string, component: string): Promise<{ name: string; bytes: number }> {
  const r = await api.GET('/v1/clusters/{id}/backups/{backup_id}/components/{name}/archive', {
    params: { path: { id: clusterId, backup_id: backupId, name: component } },
    parseAs: 'blob',
  });
  const blob = ok(r) as unknown as Blob;
  const disposition = r.response.headers.get('content-disposition') ?? '';
  const name = /filename="([^"]+)"/.exec(disposition)?.[1] ?? `${component}.tar`;
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return { name, bytes: blob.size };
}

/** The retention plan the draft policy would make for a cluster (POST .../retention/preview). */
export async function previewRetention(clusterId: string, policy: PolicyDraft): Promise<Retention> {
  return ok(await api.POST('/v1/clusters/{id}/retention/preview', { params: { path: { id: clusterId } }, body: { policy } }));
}

export type PolicyDraft = {
  timezone: string;
  schedule: { interval: string; count: number }[];
  max_backups: number;
  manual_count: number;
  manual_rate_limit: string | null;
  failed_count: number;
  scheduled_live: boolean;
};
